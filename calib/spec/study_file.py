"""The study file's models (``studies/*.yaml``): what every study has, whatever its stage.

Each stage adds its own settings sections (``calib.stages``: ``slurry``, ``viscosity``,
``drying``, ``calendering``, ``characterise``); ``calib.study.load.study_spec_model`` joins
them to ``StudyBase`` into the model a study file is validated against.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from objectives.dataset import Provenance, SizeClassSpec
from sim_backends.lammps.forcefield import LJ_STYLES, NAMED_PARAMETER_SETS, TABLE_S1_KEYS

from calib.core import backend_registry as backends
from calib.spec.fidelity import BUILTIN_FIDELITIES, Fidelity

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Names that become folder or file names (studies, fidelities): no ``/``, no leading dot."""

STUDY_SCALARISATIONS = ("weighted_sum", "chebyshev", "parego")
"""Scalarisations a study can choose (``objectives.scalarise``)."""


class SpecModel(BaseModel):
    """Base of every study-file model: unknown keys are refused, values are frozen, and a
    number must be finite (YAML's .nan and .inf are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Bound(SpecModel):
    """Search range of one free parameter; ``log`` searches log(value) uniformly."""

    low: float
    """Lowest value searched."""
    high: float
    """Highest value searched (above ``low``)."""
    log: bool = False
    """Search log(value) uniformly (needs ``low`` > 0)."""

    @model_validator(mode="after")
    def _check(self) -> "Bound":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled bound needs low > 0")
        return self


class ParametersSpec(SpecModel):
    """Free parameters (Table S1 keys with bounds) and the fixed rest: a named base set
    (``table-s1-slurry`` or ``table-s1-dried``) overridden by ``fixed``."""

    base: str = "table-s1-slurry"
    """The named Table S1 column every key not free starts from: ``table-s1-slurry`` or
    ``table-s1-dried``."""
    free: dict[str, Bound]
    """Table S1 keys to calibrate, each with its search range (at least one)."""
    fixed: dict[str, float] = Field(default_factory=dict)
    """Table S1 keys held at a value other than the base column's."""

    @model_validator(mode="after")
    def _check(self) -> "ParametersSpec":
        if self.base not in NAMED_PARAMETER_SETS:
            raise ValueError(f"base must be one of {sorted(NAMED_PARAMETER_SETS)}, got {self.base!r}")
        for group in ("free", "fixed"):
            for key in getattr(self, group):
                if key not in TABLE_S1_KEYS:
                    raise ValueError(f"{group}.{key}: unknown parameter key (Table S1 keys: {', '.join(TABLE_S1_KEYS)})")
        for key, b in self.free.items():
            if key == "xu" and b.low < 0:
                raise ValueError(f"free.{key}: low must not be negative (friction coefficient)")
            if key != "xu" and b.low <= 0:
                raise ValueError(f"free.{key}: low must be positive (eps, sigma, rc, kn and gamma_n are > 0)")
        for key, v in self.fixed.items():
            if (key == "xu" and v < 0) or (key != "xu" and v <= 0):
                raise ValueError(f"fixed.{key}: must be positive (xu: not negative), got {v:g}")
        both = set(self.free) & set(self.fixed)
        if both:
            raise ValueError(f"keys both free and fixed: {sorted(both)}")
        if not self.free:
            raise ValueError("free: at least one parameter must be free")
        return self

    def ordered_free(self) -> list[str]:
        """Free keys in Table S1 order (the order of the unit-cube axes)."""
        return [k for k in TABLE_S1_KEYS if k in self.free]


class ObjectiveSpec(SpecModel):
    """Targets to score with their weights, and the scalarisation."""

    targets: dict[str, PositiveFloat]
    """Target name (one the stage produces and the dataset holds) -> its weight."""
    scalarisation: str = "weighted_sum"
    """How the targets' errors combine into one objective: ``weighted_sum`` (sum of w e^2),
    ``chebyshev`` (max of w abs(e)) or ``parego`` (augmented Chebyshev with random weights per
    proposal)."""

    @model_validator(mode="after")
    def _check(self) -> "ObjectiveSpec":
        if not self.targets:
            raise ValueError("targets: at least one target is needed")
        if self.scalarisation not in STUDY_SCALARISATIONS:
            raise ValueError(f"scalarisation must be one of {STUDY_SCALARISATIONS}")
        return self


SAMPLERS = ("composite", "scalar", "sobol", "random", "tpe", "gp", "cmaes", "swarm")
"""``optimizer.sampler`` values (``calib.optimize.sampler_registry``)."""


class MultiFidelitySpec(SpecModel):
    """A multi-fidelity study (``calib.optimize.fidelity_ladder.MF_NOTE``): the fidelities its
    trials may run at and what one trial at each costs.

    ladder: fidelity names, cheapest first; the last is the study's target fidelity
    (``fidelity``), at which its answer is judged. costs_core_s: measured core-seconds of
    one trial at each ladder fidelity (LAMMPS wall time x ranks x threads; run a copy of the
    study without ``multi_fidelity`` for two trials per fidelity, ``calib optimize --study
    copy.yaml --fidelity NAME --trials 2 --json``, and read ``core_s`` in
    ``trials_by_fidelity``); finite, and rising along the ladder.
    """

    ladder: list[str] = Field(min_length=2)
    costs_core_s: dict[str, PositiveFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "MultiFidelitySpec":
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError("ladder: a fidelity appears twice")
        for name in self.ladder:
            if name not in self.costs_core_s:
                raise ValueError(f"costs_core_s: no cost for fidelity {name!r}: a multi-fidelity study needs the "
                                 "measured core-seconds of one trial at every ladder fidelity")
        extra = sorted(set(self.costs_core_s) - set(self.ladder))
        if extra:
            raise ValueError(f"costs_core_s: {extra[0]!r} is not on the ladder ({', '.join(self.ladder)})")
        costs = [self.costs_core_s[n] for n in self.ladder]
        if not all(math.isfinite(c) for c in costs):
            raise ValueError("costs_core_s: costs must be finite numbers of core-seconds")
        if any(b <= a for a, b in zip(costs, costs[1:])):
            raise ValueError("costs_core_s: costs must rise along the ladder (cheapest fidelity first)")
        return self


class PosteriorSpec(SpecModel):
    """The posterior of the free keys after a study (``calib.optimize.posterior``), shown in
    ``calib report`` and logged on the MLflow parent run.

    samples: draws kept (after the burn-in). assumed_rel_uncertainty: the 1-sigma
    uncertainty of a target whose dataset gives none, relative to its value (an assumption
    the outputs name; the seed reports none for its density and porosity). enabled: false
    skips it (it costs a few seconds at the end of ``calib optimize``).
    """

    samples: PositiveInt = 4000
    assumed_rel_uncertainty: PositiveFloat = 0.02
    enabled: bool = True


class OptimizerSpec(SpecModel):
    """How trials are proposed (``calib.optimize.sampler_registry``).

    sampler: ``composite`` (one GP per observable residual, the scalarisation on their
    posterior samples, failures as a feasibility model), ``scalar`` (one GP on the log of
    the scalarised objective), ``sobol`` (scrambled Sobol throughout), ``random``, ``tpe``
    and ``gp`` (Optuna's ``TPESampler`` and ``GPSampler``), ``cmaes`` (Optuna's
    ``CmaEsSampler``), ``swarm`` (the seed's group's particle swarm, ``calib.optimize.swarm_sampler``). n_initial: Sobol trials before
    the first model-based proposal (``tpe``/``gp``: their own start-up trials). q: trials
    proposed jointly per batch (composite, scalar). feasibility: model failures
    (composite). num_restarts, raw_samples: acquisition optimisation. objective_floor: the
    scalar GP models -log(objective + floor). multi_fidelity: run trials at cheaper
    fidelities too (composite only; ``MultiFidelitySpec``). posterior: what the calibration
    leaves uncertain (``PosteriorSpec``).
    """

    sampler: str = "composite"
    n_initial: PositiveInt = 6
    q: int = Field(default=1, ge=1)
    feasibility: bool = True
    num_restarts: PositiveInt = 8
    raw_samples: PositiveInt = 256
    objective_floor: PositiveFloat = 1e-6
    multi_fidelity: MultiFidelitySpec | None = None
    posterior: PosteriorSpec = Field(default_factory=PosteriorSpec)

    @model_validator(mode="after")
    def _check(self) -> "OptimizerSpec":
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: unknown sampler {self.sampler!r} (known: {', '.join(SAMPLERS)})")
        if self.multi_fidelity is not None and self.sampler != "composite":
            raise ValueError(f"multi_fidelity: needs sampler composite (this study's is {self.sampler!r})")
        return self


class UpstreamSpec(SpecModel):
    """Where a chained stage starts: the best trial of ``study`` (a study name in the same
    storage, or ``storage``), or a state ``data_file`` (relative to the study file)."""

    study: str | None = None
    """The upstream study's name; every trial starts from the final state of its best trial."""
    storage: str | None = None
    """The upstream study's storage URL (default: this study's)."""
    data_file: str | None = None
    """A state file (LAMMPS data file, relative to the study file) instead of a study."""

    @model_validator(mode="after")
    def _check(self) -> "UpstreamSpec":
        if (self.study is None) == (self.data_file is None):
            raise ValueError("give exactly one of study and data_file")
        return self


class PhaseSizes(SpecModel):
    """Bead sizes a study supplies for a phase whose dataset gives none (with provenance)."""

    size_classes: tuple[SizeClassSpec, ...]
    slurry_diameter_factor: PositiveFloat | None = None
    dried_diameter_factor: PositiveFloat | None = None
    dried_diameter_um: PositiveFloat | None = None
    dried_density_g_cm3: PositiveFloat | None = None
    provenance: Provenance


class SlurmSpec(SpecModel):
    """What each Slurm job asks for besides its ranks and threads
    (``sim_backends.slurm.SlurmOptions``): partition, account and QOS (None: the site's
    defaults), nodes, ``--time`` in minutes (None: the trial timeout rounded up, plus a
    minute), extra ``sbatch`` options (``--mem=4G``, ``--constraint=...``), the ``srun
    --mpi`` plugin and the seconds between two reads of the queue."""

    partition: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.,-]+$")
    account: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    qos: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    nodes: PositiveInt = 1
    time_limit_min: PositiveInt | None = None
    directives: tuple[str, ...] = ()
    mpi: str = Field(default="pmi2", pattern=r"^[A-Za-z0-9_]+$")
    poll_interval_s: PositiveFloat = 5.0

    @model_validator(mode="after")
    def _check(self) -> "SlurmSpec":
        for d in self.directives:
            if not d.startswith("-") or any(c in d for c in "\n\r\0"):
                raise ValueError(f"directives: {d!r} is not one sbatch option (write e.g. --mem=4G)")
        if not math.isfinite(self.poll_interval_s):
            raise ValueError("poll_interval_s must be finite")
        return self


class ResourcesSpec(SpecModel):
    """Where and on what each run of a trial runs: the backend (``local``: subprocesses of
    the driver; ``slurm``: one batch job per run), MPI ranks (``mpirun -np`` locally, ``srun``
    on Slurm), OpenMP threads per rank, and the Slurm job settings."""

    backend: str = "local"
    """``local`` (subprocesses of the driver) or ``slurm`` (one batch job per run)."""
    ranks: PositiveInt = 1
    """MPI ranks per LAMMPS run."""
    threads: PositiveInt = 1
    """OpenMP threads per rank."""
    slurm: SlurmSpec = SlurmSpec()
    """The Slurm job settings (``backend: slurm``)."""

    @model_validator(mode="after")
    def _check_backend(self) -> "ResourcesSpec":
        if self.backend not in backends.names():
            raise ValueError(f"backend {self.backend!r} is not one of {', '.join(backends.names())}")
        return self


class StudyBase(SpecModel):
    """What every study file has; ``calib.study.load.study_spec_model`` adds the stages' sections."""

    name: str = Field(pattern=NAME_PATTERN)
    """The study's name in the ledger and MLflow, and its folder under the runs directory;
    rerunning a study of the same name resumes it."""
    stage: str
    """The stage it calibrates (``slurry``, ``drying``, ``calendering``, ``characterise``)."""
    dataset: str
    """A folder name under ``experiments_data/``, or a path to a ``dataset.yaml`` relative to the
    study file."""
    fidelity: str = "dev"
    """How big and long a trial is: ``smoke``, ``dev``, ``paper`` or one under ``fidelities``."""
    trials: PositiveInt = 20
    """Finished trials the study should have (``--trials`` overrides it)."""
    parallel: PositiveInt = 1
    """Trials run at once (running trials are pending points for the proposals)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the proposals and of every trial's bead placement."""
    common_random_numbers: bool = True
    """Every trial starts from the same bead placement and velocities (seeded by ``seed``), so
    the objective is a deterministic function of the parameters and trials differ only by
    them; a fidelity's ``replicates`` add placements seed + 1, + 2, ... False: each trial its
    own placement (the objective then carries the placement noise)."""
    trial_timeout_s: PositiveFloat = 600.0
    """Wall-clock limit of each run of a trial (the slurry run, each shear run, each characterisation job), s."""
    stop_after_start_failures: PositiveInt = 3
    """The study stops (exit status 1) when this many consecutive trials fail to start with
    the same error (no ``mpirun``, a full disk): the error is the environment's, and further
    trials would only spend the budget on it."""
    lj_style: Literal["lj/cut", "lj/smooth/linear"] = "lj/cut"
    """The LJ pair style: ``lj/cut`` (seed) or ``lj/smooth/linear`` (the public inputs' ``lj/sf``)."""
    parameters: ParametersSpec
    """Which Table S1 keys are free (with bounds) and what the others are."""
    objective: ObjectiveSpec
    """The targets scored, their weights and the scalarisation."""
    optimizer: OptimizerSpec = OptimizerSpec()
    """How trials are proposed."""
    upstream: UpstreamSpec | None = None
    """Where a chained stage (drying, calendering, characterise) starts: required for those."""
    system: dict[Literal["AM", "SE", "CBD"], PhaseSizes] = Field(default_factory=dict)
    """Bead sizes the study supplies for phases whose dataset gives none."""
    resources: ResourcesSpec = ResourcesSpec()
    """Where runs go (local or Slurm) and with how many ranks and threads."""
    fidelities: dict[str, Fidelity] = Field(default_factory=dict)
    """Fidelities of the study's own, or overrides of built-in ones' fields."""
    description: str | None = None
    """Free text for the study's readers (calib does not read it)."""

    @model_validator(mode="before")
    @classmethod
    def _merge_fidelities(cls, data: object) -> object:
        """A study's ``fidelities.<builtin>`` may give only the fields it changes."""
        if isinstance(data, dict) and isinstance(data.get("fidelities"), dict):
            merged = {}
            for name, fid in data["fidelities"].items():
                if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
                    raise ValueError(f"fidelities: {name!r} is not a usable fidelity name (letters, digits, '_', "
                                     "'.' and '-', starting with a letter or digit: it names run folders)")
                if name in BUILTIN_FIDELITIES and isinstance(fid, dict):
                    fid = {**BUILTIN_FIDELITIES[name].model_dump(), **fid}
                merged[name] = fid
            data = {**data, "fidelities": merged}
        return data

    @model_validator(mode="after")
    def _check(self) -> "StudyBase":
        self._check_stage()
        if self.fidelity not in self.all_fidelities():
            raise ValueError(f"fidelity: unknown fidelity {self.fidelity!r} (known: {', '.join(self.all_fidelities())})")
        mf = self.optimizer.multi_fidelity
        if mf is not None:
            for name in mf.ladder:
                if name not in self.all_fidelities():
                    raise ValueError(f"optimizer.multi_fidelity.ladder: unknown fidelity {name!r} "
                                     f"(known: {', '.join(self.all_fidelities())})")
            problem = ladder_problem(self.fidelity, mf.ladder)
            if problem:
                raise ValueError(f"fidelity: {problem}")
        self._check_stage_fields()
        assert self.lj_style in LJ_STYLES
        return self

    def _check_stage(self) -> None:
        """That ``stage`` names a registered stage: done by the study-file model
        (``calib.study.load.StudySpec``), which knows the stage registry; the schema does not."""

    def _check_stage_fields(self) -> None:
        """That the targets and ``upstream`` suit the stage (``calib.study.load.StudySpec``)."""

    @property
    def ladder(self) -> list[str]:
        """The fidelities this study's trials may run at (one, unless multi-fidelity)."""
        mf = self.optimizer.multi_fidelity
        return list(mf.ladder) if mf is not None else [self.fidelity]

    def all_fidelities(self) -> dict[str, Fidelity]:
        return {**BUILTIN_FIDELITIES, **self.fidelities}

    def fidelity_spec(self, name: str | None = None) -> Fidelity:
        return self.all_fidelities()[name or self.fidelity]


def ladder_problem(fidelity: str, ladder: list[str]) -> str | None:
    """Why ``fidelity`` cannot be the target of a study with this ladder, or None."""
    if fidelity not in ladder:
        return (f"{fidelity!r} is outside the study's ladder (optimizer.multi_fidelity.ladder: "
                f"{', '.join(ladder)}); the target fidelity must be the ladder's last")
    if fidelity != ladder[-1]:
        return (f"{fidelity!r} is not the last (target) fidelity of the ladder "
                f"(optimizer.multi_fidelity.ladder: {', '.join(ladder)})")
    return None


