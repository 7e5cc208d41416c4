"""Study files (``studies/*.yaml``): what to calibrate, against what, at which fidelity.

Loading validates everything a run needs (stage, dataset and its targets, fidelity,
parameter keys and bounds) before anything is written; any problem is an ``InputError``
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from objectives.dataset import Dataset, DatasetError, PhaseSpec, Provenance, SizeClassSpec, load_dataset
from objectives.rheology import CurveError, ViscosityCurve, load_rheometer_csv
from sim_backends.lammps.forcefield import LJ_STYLES, NAMED_PARAMETER_SETS, TABLE_S1_KEYS

from .errors import InputError
from .fidelity import BUILTIN_FIDELITIES, Fidelity

STAGES = ("slurry", "drying", "calendering")
"""Stages this version can calibrate."""

STUDY_SCALARISATIONS = ("weighted_sum", "chebyshev", "parego")
"""Scalarisations a study can choose (``objectives.scalarise``)."""

STAGE_TARGETS: dict[str, tuple[str, ...]] = {"slurry": ("slurry_density", "viscosity_curve"),
                                             "drying": ("dried_porosity",),
                                             "calendering": ("calendered_porosity",)}
"""Observables each stage produces that a dataset target (or curve) can score."""

CURVE_TARGETS = ("viscosity_curve", "calendered_porosity")
"""Targets that are not single ``dataset.targets`` entries."""

PIPELINE_DEGREES_PCT = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)
"""Calendering degrees of ``calib pipeline`` (seed Sec. 3.3: 0-50 %)."""

UPSTREAM_STAGE = {"drying": "slurry", "calendering": "drying"}
"""The stage whose state each chained stage starts from."""

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = REPO_ROOT / "experiments_data"
DEFAULT_STUDY = REPO_ROOT / "studies" / "ssb_slurry.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bound(_Model):
    """Search range of one free parameter; ``log`` searches log(value) uniformly."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "Bound":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled bound needs low > 0")
        return self


class ParametersSpec(_Model):
    """Free parameters (Table S1 keys with bounds) and the fixed rest: a named base set
    (``table-s1-slurry`` or ``table-s1-dried``) overridden by ``fixed``."""

    base: str = "table-s1-slurry"
    free: dict[str, Bound]
    fixed: dict[str, float] = Field(default_factory=dict)

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


class ObjectiveSpec(_Model):
    """Targets to score with their weights, and the scalarisation."""

    targets: dict[str, PositiveFloat]
    scalarisation: str = "weighted_sum"

    @model_validator(mode="after")
    def _check(self) -> "ObjectiveSpec":
        if not self.targets:
            raise ValueError("targets: at least one target is needed")
        if self.scalarisation not in STUDY_SCALARISATIONS:
            raise ValueError(f"scalarisation must be one of {STUDY_SCALARISATIONS}")
        return self


SAMPLERS = ("composite", "scalar", "sobol", "random", "tpe", "gp")
"""``optimizer.sampler`` values (``calib.samplers``)."""


class MultiFidelitySpec(_Model):
    """A multi-fidelity study (``calib.composite.MF_NOTE``): the fidelities its trials may
    run at and what one trial at each costs.

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


class OptimizerSpec(_Model):
    """How trials are proposed (``calib.samplers``).

    sampler: ``composite`` (one GP per observable residual, the scalarisation on their
    posterior samples, failures as a feasibility model), ``scalar`` (one GP on the log of
    the scalarised objective), ``sobol`` (scrambled Sobol throughout), ``random``, ``tpe``
    and ``gp`` (Optuna's ``TPESampler`` and ``GPSampler``). n_initial: Sobol trials before
    the first model-based proposal (``tpe``/``gp``: their own start-up trials). q: trials
    proposed jointly per batch (composite, scalar). feasibility: model failures
    (composite). num_restarts, raw_samples: acquisition optimisation. objective_floor: the
    scalar GP models -log(objective + floor). multi_fidelity: run trials at cheaper
    fidelities too (composite only; ``MultiFidelitySpec``).
    """

    sampler: str = "composite"
    n_initial: PositiveInt = 6
    q: int = Field(default=1, ge=1)
    feasibility: bool = True
    num_restarts: PositiveInt = 8
    raw_samples: PositiveInt = 256
    objective_floor: PositiveFloat = 1e-6
    multi_fidelity: MultiFidelitySpec | None = None

    @model_validator(mode="after")
    def _check(self) -> "OptimizerSpec":
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: unknown sampler {self.sampler!r} (known: {', '.join(SAMPLERS)})")
        if self.multi_fidelity is not None and self.sampler != "composite":
            raise ValueError(f"multi_fidelity: needs sampler composite (this study's is {self.sampler!r})")
        return self


class SlurrySettings(_Model):
    """Physics settings of the slurry stage (seed: 300 K, 1 atm; thermostat, barostat and
    ramp as the group's public ``Slurry/in_slurry.run``: ``npt/sphere temp 300 300 0.2 iso 0
    100 1000``).

    pressure_start_atm: start of the pressure ramp (public: 0). tdamp_us, pdamp_us:
    Nose-Hoover thermostat and barostat damping (public: 0.2 and 1000 us).
    density_tolerance_rel: the plateau test's tolerance on the density's relative change
    across the fidelity's window. early_stop: end the run at the first passing window.
    not_converged: ``penalty`` keeps a trial whose density never converged and adds
    ``penalty`` to its scalarised objective (0: flag it only); ``fail`` makes it FAIL with
    the reason.
    """

    temperature_K: PositiveFloat = 300.0
    pressure_atm: PositiveFloat = 1.0
    pressure_start_atm: float = Field(default=0.0, ge=0)
    tdamp_us: PositiveFloat = 0.2
    pdamp_us: PositiveFloat = 1000.0
    neighbor_skin_um: PositiveFloat = 1.0
    density_tolerance_rel: PositiveFloat = 0.01
    early_stop: bool = True
    not_converged: Literal["penalty", "fail"] = "penalty"
    penalty: float = Field(default=1.0, ge=0, allow_inf_nan=False)


class ViscositySettings(_Model):
    """How the slurry's viscosity curve is simulated (seed Sec. 3.2; docs/model.md).

    shear_rates_per_s: the experimental shear rates (1/s) at which to simulate, strictly
    increasing; default: the rates of the measured curve. rate_scale: the mapping from
    experimental to simulated rates, simulated = rate_scale x experimental (default 1:
    physical rates). The simulated viscosity -P_xy / simulated rate is compared, in Pa s,
    at the experimental rate it maps to. A run is cut into segments of at least
    ``segment_strain``; the steady-state window is the last ``window_segments`` segment
    means, and may start only after ``min_strain``; it passes when its two halves agree
    within ``z`` standard errors and its mean is known to ``precision`` (relative standard
    error). early_stop: end each run at the first passing window; otherwise, and at the
    latest, runs end at ``max_strain`` (or the fidelity's ``shear_max_steps``), and a run
    that never passed has not converged.
    not_converged: ``penalty`` keeps the trial and adds penalty x (fraction of rates not
    converged) to its scalarised objective; ``fail`` makes such a trial FAIL. tdamp_us:
    SLLOD thermostat damping time. csv (+ units): a rheometer CSV, relative to the study
    file, that replaces the dataset's curve (``--viscosity-csv`` overrides it); csv_kind:
    its provenance kind (``synthetic`` for model-generated data), recorded with the study.
    """

    shear_rates_per_s: tuple[PositiveFloat, ...] | None = None
    rate_scale: PositiveFloat = 1.0
    min_strain: float = Field(default=1.0, ge=0)
    max_strain: PositiveFloat = 10.0
    segment_strain: PositiveFloat = 0.5
    window_segments: int = Field(default=6, ge=4)
    precision: PositiveFloat = 0.05
    early_stop: bool = True
    z: PositiveFloat = 2.0
    not_converged: Literal["penalty", "fail"] = "penalty"
    penalty: PositiveFloat = 1.0
    tdamp_us: PositiveFloat = 1.0
    csv: str | None = None
    csv_shear_rate_unit: str | None = None
    csv_viscosity_unit: str | None = None
    csv_kind: Literal["measured", "synthetic"] = "measured"

    @model_validator(mode="after")
    def _check(self) -> "ViscositySettings":
        rates = self.shear_rates_per_s
        if rates is not None:
            if not rates:
                raise ValueError("shear_rates_per_s: give at least one rate (or leave it out)")
            if any(b <= a for a, b in zip(rates, rates[1:])):
                raise ValueError("shear_rates_per_s: rates must increase strictly")
        if self.min_strain > self.max_strain:
            raise ValueError("min_strain: must not exceed max_strain")
        if self.window_segments % 2:
            raise ValueError("window_segments: must be even (the test compares the window's two halves)")
        return self


class WallSettings(_Model):
    """Contact law of the granular walls (current collector, lid, calendering plane).
    Unset fields take the trial's own Table S1 contact values, as the seed describes
    ("the same parameters described in Table S1")."""

    kn: PositiveFloat | None = None
    gamma_n: PositiveFloat | None = None
    xu: float | None = Field(default=None, ge=0)


class DryingSettings(_Model):
    """Drying stage physics (seed Sec. 3.3; sim_backends.lammps.drying). The z barostat is the
    public ``Drying_homogeneous/in_evap_hom.run``'s ``npt/sphere temp 300 300 0.2 z 40 100
    1000``: a ramp from ``pressure_start_atm`` (40 kPa) to ``pressure_atm``, thermostat and
    barostat damping ``tdamp_us`` and ``pdamp_us``. mount_damp_us: Langevin damping while the
    film settles on the collector; resolution_um: voxel edge of the porosity analysis;
    cbd_nanoporosity: overrides the dataset's CBD nanoporosity."""

    temperature_K: PositiveFloat = 300.0
    pressure_atm: PositiveFloat = 1.0
    pressure_start_atm: float = Field(default=40.0 / 101.325, ge=0)
    tdamp_us: PositiveFloat = 0.2
    pdamp_us: PositiveFloat = 1000.0
    mount_damp_us: PositiveFloat = 0.1
    neighbor_skin_um: PositiveFloat = 1.0
    resolution_um: PositiveFloat = 0.5
    cbd_nanoporosity: float | None = Field(default=None, ge=0, lt=1)
    wall: WallSettings = WallSettings()


class CalenderingSettings(_Model):
    """Calendering stage physics (seed Sec. 3.3; sim_backends.lammps.calendering).
    degrees_pct: degrees to simulate, each in [0, 60) % (default: the dataset's measured
    degrees; ``calib pipeline``: 0, 10, ..., 50). speed_um_per_us, timestep_us, tdamp_us:
    plane speed, integration step and ``nvt/sphere`` damping (public ``Calendering/in_cal.run``:
    0.02 um/us, 1e-4 us, 0.2 us; a fidelity may override speed and step, see
    ``Fidelity.calender_speed_um_per_us``). release:
    remove the plane after holding and let the film spring back (default: the plane stays
    at its final height while the film relaxes, as in the group's public inputs; the seed
    makes the release optional)."""

    degrees_pct: tuple[float, ...] | None = None
    speed_um_per_us: PositiveFloat = 0.02
    timestep_us: PositiveFloat = 1e-4
    release: bool = False
    temperature_K: PositiveFloat = 300.0
    tdamp_us: PositiveFloat = 0.2
    neighbor_skin_um: PositiveFloat = 1.0
    wall: WallSettings = WallSettings()

    @model_validator(mode="after")
    def _check(self) -> "CalenderingSettings":
        if self.degrees_pct is not None:
            if not self.degrees_pct:
                raise ValueError("degrees_pct: give at least one degree (or leave it out)")
            for d in self.degrees_pct:
                if not (0 <= d < 60):
                    raise ValueError(f"degrees_pct: {d:g} is outside [0, 60) %")
            if any(b <= a for a, b in zip(self.degrees_pct, self.degrees_pct[1:])):
                raise ValueError("degrees_pct: degrees must increase strictly")
        return self


class UpstreamSpec(_Model):
    """Where a chained stage starts: the best trial of ``study`` (a study name in the same
    storage, or ``storage``), or a state ``data_file`` (relative to the study file)."""

    study: str | None = None
    storage: str | None = None
    data_file: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "UpstreamSpec":
        if (self.study is None) == (self.data_file is None):
            raise ValueError("give exactly one of study and data_file")
        return self


class PhaseSizes(_Model):
    """Bead sizes a study supplies for a phase whose dataset gives none (with provenance)."""

    size_classes: tuple[SizeClassSpec, ...]
    slurry_diameter_factor: PositiveFloat | None = None
    dried_diameter_factor: PositiveFloat | None = None
    dried_diameter_um: PositiveFloat | None = None
    dried_density_g_cm3: PositiveFloat | None = None
    provenance: Provenance


class ResourcesSpec(_Model):
    """Per-trial resources: MPI ranks (``mpirun -np``) and OpenMP threads per rank."""

    ranks: PositiveInt = 1
    threads: PositiveInt = 1


class StudySpec(_Model):
    """A validated study file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    stage: str
    dataset: str
    fidelity: str = "dev"
    trials: PositiveInt = 20
    parallel: PositiveInt = 1
    seed: int = Field(default=0, ge=0)
    trial_timeout_s: PositiveFloat = 600.0
    """Wall-clock limit of each LAMMPS run of a trial (the slurry run, each shear run), s."""
    lj_style: Literal["lj/cut", "lj/smooth/linear"] = "lj/cut"
    parameters: ParametersSpec
    objective: ObjectiveSpec
    optimizer: OptimizerSpec = OptimizerSpec()
    slurry: SlurrySettings = SlurrySettings()
    viscosity: ViscositySettings = ViscositySettings()
    drying: DryingSettings = DryingSettings()
    calendering: CalenderingSettings = CalenderingSettings()
    upstream: UpstreamSpec | None = None
    system: dict[Literal["AM", "SE", "CBD"], PhaseSizes] = Field(default_factory=dict)
    resources: ResourcesSpec = ResourcesSpec()
    fidelities: dict[str, Fidelity] = Field(default_factory=dict)
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _merge_fidelities(cls, data: object) -> object:
        """A study's ``fidelities.<builtin>`` may give only the fields it changes."""
        if isinstance(data, dict) and isinstance(data.get("fidelities"), dict):
            merged = {}
            for name, fid in data["fidelities"].items():
                if name in BUILTIN_FIDELITIES and isinstance(fid, dict):
                    fid = {**BUILTIN_FIDELITIES[name].model_dump(), **fid}
                merged[name] = fid
            data = {**data, "fidelities": merged}
        return data

    @model_validator(mode="after")
    def _check(self) -> "StudySpec":
        if self.stage not in STAGES:
            raise ValueError(f"stage: unknown stage {self.stage!r} (known: {', '.join(STAGES)})")
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
        for t in self.objective.targets:
            if t not in STAGE_TARGETS[self.stage]:
                raise ValueError(f"objective.targets.{t}: stage {self.stage} does not produce it "
                                 f"(it produces {', '.join(STAGE_TARGETS[self.stage])})")
        assert self.lj_style in LJ_STYLES
        if self.stage in UPSTREAM_STAGE and self.upstream is None:
            raise ValueError(f"upstream: stage {self.stage} starts from a {UPSTREAM_STAGE[self.stage]} state: "
                             "name the upstream study (upstream.study) or a data file (upstream.data_file)")
        return self

    @property
    def ladder(self) -> list[str]:
        """The fidelities this study's trials may run at (one, unless multi-fidelity)."""
        mf = self.optimizer.multi_fidelity
        return list(mf.ladder) if mf is not None else [self.fidelity]

    @property
    def uses_viscosity(self) -> bool:
        return "viscosity_curve" in self.objective.targets

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


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    # model-level validators report "free.eps_XX: ..." inside the message: lift the field
    if ": " in msg and not loc.endswith(msg.split(": ", 1)[0]):
        head, rest = msg.split(": ", 1)
        if " " not in head:
            loc = f"{loc}.{head}" if loc else head
            msg = rest
    return loc or "(top level)", msg


def dataset_path(dataset: str, study_dir: Path, data_root: Path = DEFAULT_DATA_ROOT) -> Path:
    """A dataset named ``X`` is ``<data_root>/X/dataset.yaml``; a value ending in ``.yaml``
    is a path (relative to the study file's folder)."""
    if dataset.endswith((".yaml", ".yml")):
        p = Path(dataset)
        return p if p.is_absolute() else (Path(study_dir) / p)
    return Path(data_root) / dataset / "dataset.yaml"


def load_study(path: Path, fidelity: str | None = None, data_root: Path = DEFAULT_DATA_ROOT,
               viscosity_csv: Path | None = None) -> "LoadedStudy":
    """Read and validate a study file and its dataset; ``fidelity`` overrides the file's;
    ``viscosity_csv`` replaces the dataset's (or the study's) viscosity curve."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "(file)", "study file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(where, "(file)", f"malformed YAML ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise InputError(where, "(top level)", "expected a mapping of study settings")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise InputError(where, field, msg) from exc
    if fidelity is not None:
        if fidelity not in spec.all_fidelities():
            known = ", ".join(spec.all_fidelities())
            raise InputError("--fidelity", "fidelity", f"unknown fidelity {fidelity!r} (known: {known})")
        if spec.optimizer.multi_fidelity is not None:
            problem = ladder_problem(fidelity, spec.optimizer.multi_fidelity.ladder)
            if problem:
                raise InputError("--fidelity", "fidelity", problem)
        spec = spec.model_copy(update={"fidelity": fidelity})
    dpath = dataset_path(spec.dataset, path.parent, data_root)
    if not dpath.is_file():
        raise InputError(where, "dataset", f"no dataset {spec.dataset!r} (expected {dpath})")
    try:
        dataset = load_dataset(dpath)
    except DatasetError as exc:
        raise InputError(str(exc.path), exc.field, exc.message) from exc
    dataset = _with_study_sizes(dataset, spec, where)
    curve: ViscosityCurve | None = None
    curve_source = None
    for t in spec.objective.targets:
        if t in CURVE_TARGETS:
            continue
        if t not in dataset.targets:
            raise InputError(where, f"objective.targets.{t}", f"dataset {spec.dataset} has no target {t!r}")
    if "calendered_porosity" in spec.objective.targets:
        if dataset.calendered_porosity is None:
            raise InputError(where, "objective.targets.calendered_porosity",
                             f"dataset {spec.dataset} has no calendered_porosity points")
        sim = spec.calendering.degrees_pct
        if sim is not None:
            missing = [p.degree_pct for p in dataset.calendered_porosity.points if p.degree_pct not in sim]
            if missing:
                raise InputError(where, "calendering.degrees_pct",
                                 f"must include the measured degrees {', '.join(f'{d:g}' for d in missing)} %")
    if spec.uses_viscosity:
        v = spec.viscosity
        csv = Path(viscosity_csv) if viscosity_csv is not None else (path.parent / v.csv if v.csv else None)
        if csv is not None:
            try:
                curve = load_rheometer_csv(csv, v.csv_shear_rate_unit, v.csv_viscosity_unit)
            except CurveError as exc:
                raise InputError(exc.where, f"row {exc.row}" if exc.row else "(file)", exc.message) from exc
            digest = hashlib.sha256(csv.read_bytes()).hexdigest()
            curve_source = f"{csv.resolve()} (kind {v.csv_kind}, sha256 {digest})"
        elif "viscosity_curve" in dataset.curves:
            curve = dataset.curve("viscosity_curve")
            curve_source = (f"{dpath}: curves.viscosity_curve "
                            f"(kind {dataset.curves['viscosity_curve'].provenance.kind}: "
                            f"{dataset.curves['viscosity_curve'].provenance.source})")
        else:
            raise InputError(where, "objective.targets.viscosity_curve",
                             f"dataset {spec.dataset} has no viscosity curve: supply a rheometer CSV "
                             "(--viscosity-csv FILE or viscosity.csv in the study)")
    elif viscosity_csv is not None:
        raise InputError("--viscosity-csv", "(option)", "the study does not score viscosity_curve "
                                                        "(add it to objective.targets)")
    if dataset.system is None:
        raise InputError(str(dpath), "system", "the dataset describes no particle system")
    check_bead_convention(dataset, dpath)
    return LoadedStudy(spec=spec, dataset=dataset, path=path, dataset_path=dpath, curve=curve,
                       curve_source=curve_source)


def check_bead_convention(dataset: Dataset, dpath: Path) -> None:
    """Every value the bead-counting convention needs (``sim_backends.lammps.beads``): size
    classes for every phase, the solvent-shell factor of AM and SE, the solid CBD bead
    (diameter and density). ``InputError`` naming the dataset file and field otherwise."""
    assert dataset.system is not None
    hint = "(or give system.{name}.{field} in the study)"
    for name, phase in dataset.system.phases.items():
        need = ["size_classes"]
        if name in ("AM", "SE"):
            need.append("slurry_diameter_factor")
        if name == "CBD":
            need += ["dried_diameter_um", "dried_density_g_cm3"]
        for f in need:
            if getattr(phase, f) is None:
                what = {"size_classes": "bead sizes", "slurry_diameter_factor": "the solvent-shell factor of the slurry bead",
                        "dried_diameter_um": "the solid (dried) CBD bead diameter, which counts the CBD beads",
                        "dried_density_g_cm3": "the solid CBD density (bulk x (1 - nanoporosity)), which counts the CBD beads"}[f]
                raise InputError(str(dpath), f"system.phases.{name}.{f}",
                                 f"{what} is needed to build the beads but not given " + hint.format(name=name, field=f))
        if phase.dried_diameter_um is not None and phase.size_classes is not None:
            wet = min(c.diameter_um for c in phase.size_classes)
            m_wet = phase.density_g_cm3 * wet**3
            m_solid = (phase.dried_density_g_cm3 or 0.0) * phase.dried_diameter_um**3
            if m_wet < m_solid:
                raise InputError(str(dpath), f"system.phases.{name}.dried_density_g_cm3",
                                 f"the solid bead ({phase.dried_diameter_um:g} um) is heavier than the slurry bead "
                                 f"({wet:g} um at {phase.density_g_cm3:g} g/cm^3): the solvent mass would be negative")


def _with_study_sizes(dataset: Dataset, spec: StudySpec, where: str) -> Dataset:
    """The dataset with the bead sizes the study supplies (``system.<phase>``)."""
    if not spec.system:
        return dataset
    if dataset.system is None:
        raise InputError(where, "system", f"dataset {spec.dataset} describes no particle system to size")
    phases: dict[str, PhaseSpec] = dict(dataset.system.phases)
    for name, sizes in spec.system.items():
        if name not in phases:
            raise InputError(where, f"system.{name}", f"dataset {spec.dataset} has no phase {name}")
        try:
            update: dict = {"size_classes": sizes.size_classes}
            for key in ("slurry_diameter_factor", "dried_diameter_factor", "dried_diameter_um", "dried_density_g_cm3"):
                if getattr(sizes, key) is not None:
                    update[key] = getattr(sizes, key)
            phases[name] = PhaseSpec.model_validate({**phases[name].model_dump(), **update})
        except ValidationError as exc:
            raise InputError(where, f"system.{name}.size_classes",
                             exc.errors()[0]["msg"].removeprefix("Value error, ")) from exc
    system = dataset.system.model_copy(update={"phases": phases})
    out = dataset.model_copy(update={"system": system})
    out._curves = dataset._curves
    return out


class LoadedStudy(BaseModel):
    """A study spec with its dataset and where both came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: StudySpec
    dataset: Dataset
    path: Path
    dataset_path: Path
    curve: ViscosityCurve | None = None
    curve_source: str | None = None

    def calender_degrees_pct(self) -> tuple[float, ...]:
        """Calendering degrees to simulate (%): the study's, else the dataset's measured ones."""
        c = self.spec.calendering
        if c.degrees_pct is not None:
            return tuple(c.degrees_pct)
        if self.dataset.calendered_porosity is not None:
            return tuple(p.degree_pct for p in self.dataset.calendered_porosity.points)
        return PIPELINE_DEGREES_PCT

    def simulated_rates_per_s(self) -> tuple[float, ...]:
        """Experimental-scale shear rates to simulate (1/s): the study's, else the curve's."""
        v = self.spec.viscosity
        if v.shear_rates_per_s is not None:
            return tuple(v.shear_rates_per_s)
        assert self.curve is not None
        return self.curve.shear_rate_per_s
