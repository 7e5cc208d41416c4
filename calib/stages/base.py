"""What a stage is: the ``Stage`` protocol, the trial it makes (``StageTrial``), the runs a
trial asks for (``Run``) and what a finished trial reports (``Score``).

A stage is one module in ``calib/stages/`` with one registration (``calib.stages``). It
declares its name, the settings sections it owns (pydantic models, added to the study
file), the targets it can score, the stage whose state it starts from, the fidelity fields
and settings sections it reads (a study's identity keeps exactly those) and a trial
factory. Everything else (the loop, the pipeline, the report, the CLI) looks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Protocol, Sequence

from pydantic import BaseModel

from objectives.scalarise import parego_weights, scalarise
from sim_backends.lammps.forcefield import ForceFieldParams

from calib.spec.fidelity import Fidelity
from calib.ledger import STOPPED_ATTR

if TYPE_CHECKING:
    from objectives.dataset import Dataset
    from objectives.rheology import ViscosityCurve

    from calib.spec.study_file import StudyBase
    from calib.stages.upstream_state import Lineage


class StudyView(Protocol):
    """What a stage reads of a loaded study (``calib.study.load.LoadedStudy``): its spec, its
    dataset, where both came from, and the viscosity curve it scores. The loader sits above
    the stages (it composes their settings sections into the study file), so the stages name
    the shape they read instead of importing it."""

    @property
    def spec(self) -> "StudyBase": ...
    @property
    def dataset(self) -> "Dataset": ...
    @property
    def path(self) -> Path: ...
    @property
    def dataset_path(self) -> Path: ...
    @property
    def curve(self) -> "ViscosityCurve | None": ...
    @property
    def curve_source(self) -> str | None: ...
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any: ...

COMMON_FIDELITY_FIELDS: tuple[str, ...] = ("timestep_us", "minimize_max_iter", "thermo_every", "block_steps",
                                           "sample_every")
"""Fidelity fields every LAMMPS stage reads (step, minimisation, output and sampling)."""


@dataclass(frozen=True)
class Run:
    """One job of a trial: its key (``slurry``, ``shear_<i>``, ``calender_<i>``), directory,
    log file and files worth keeping; a LAMMPS run of ``deck`` unless ``argv`` gives the
    command (a Python job, e.g. a characterisation)."""

    key: str
    workdir: Path
    deck: str
    log: str
    artifacts: tuple[str, ...]
    label: str | None = None
    """How a failure names the run (None: the reason stands alone, the trial's main run)."""
    argv: tuple[str, ...] | None = None
    """The command (run in ``workdir``), instead of LAMMPS on ``deck``."""


class ObjectiveResult(Protocol):
    """An objective's comparison with its data (``objectives``): a name, the scored error,
    its residual components, and what to record: metrics, a JSON-able record, entries of
    the study report and a line for people."""

    name: str

    @property
    def error(self) -> float: ...
    @property
    def residuals(self) -> tuple[float, ...]: ...
    @property
    def residual_sd(self) -> tuple[float | None, ...]: ...
    def metrics(self) -> dict[str, float]: ...
    def as_dict(self) -> dict: ...
    def report(self) -> dict: ...
    def line(self) -> str | None: ...


@dataclass(frozen=True)
class Score:
    """A scored trial: per-objective results, the scalarised value (penalty included), the
    stage's observables (MLflow metrics) and everything else it wants stored. The loop,
    MLflow tracking and the JSON report store these as they are.

    equilibrated: the stage's observables converged. fail_reason: the study's policy makes
    the trial a FAIL (e.g. an unconverged curve). summary: one progress line. attrs:
    JSON-able trial attributes (strings and booleans are MLflow tags too). report: entries
    of the report's ``best_observables``. lines: what the CLI prints for the best trial.
    plots: files the trial made (logged with its MLflow run). stopped: why the trial stopped
    before its protocol ended, its observables bounding the protocol's from one side
    (``ledger.STOPPED_ATTR``: data for the proposer, never the study's answer); None: it
    ran the whole protocol."""

    errors: tuple[ObjectiveResult, ...]
    value: float
    observables: dict[str, float]
    equilibrated: bool
    penalty: float = 0.0
    fail_reason: str | None = None
    summary: str = ""
    attrs: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    plots: tuple[Path, ...] = ()
    stopped: str | None = None

    @property
    def objective_errors(self) -> dict[str, float]:
        """Signed error of every objective (what scalarisations and the Pareto front use)."""
        return named_errors(self.errors)

    @property
    def residuals(self) -> dict[str, list[float]]:
        """Objective name -> its signed residual components (what the composite optimiser
        models: one per target, per shear rate, per calendering degree)."""
        return {e.name: [float(r) for r in e.residuals] for e in self.errors}

    @property
    def residual_sd(self) -> dict[str, list[float | None]]:
        """Objective name -> the measured standard deviation of each residual (None: not measured)."""
        return {e.name: [None if v is None else float(v) for v in e.residual_sd] for e in self.errors}

    @property
    def metrics(self) -> dict[str, float]:
        """Every MLflow metric of the trial: observables, each objective's, penalty, flags."""
        out = dict(self.observables)
        for e in self.errors:
            out.update(e.metrics())
        out["penalty"] = self.penalty
        out["equilibrated"] = float(self.equilibrated)
        return out

    def ledger_attrs(self) -> dict:
        """The trial attributes the ledger keeps (names are part of the ledger format)."""
        report = {}
        for e in self.errors:
            report.update(e.report())
        report.update(self.report)
        report["equilibrated"] = self.equilibrated
        return {"observables": self.observables, "errors": {e.name: e.as_dict() for e in self.errors},
                "objective_errors": self.objective_errors, "residuals": self.residuals,
                "residual_sd": self.residual_sd, "penalty": self.penalty, "equilibrated": self.equilibrated,
                "report": report, "summary_lines": [ln for ln in (*(e.line() for e in self.errors), *self.lines) if ln],
                **({STOPPED_ATTR: self.stopped} if self.stopped else {}), **self.attrs}


class StageTrial(Protocol):
    """One trial of a stage: the runs it starts with, the runs that follow finished ones
    (``[]``: the trial is over) and its score. ``next_runs`` and ``score`` raise
    ``SimulationFailed`` on unusable outputs. ``partial_observables``: what a trial that
    failed part-way measured (kept on the FAIL trial). ``state_file``: the state a
    downstream stage starts from (None: none, or several)."""

    workdir: Path

    def first_runs(self) -> list[Run]: ...
    def next_runs(self) -> list[Run]: ...
    def score(self, wall_s: Mapping[str, float] | None = None) -> Score: ...
    def partial_observables(self) -> dict[str, float]: ...
    @property
    def state_file(self) -> Path | None: ...


@dataclass(frozen=True)
class TrialContext:
    """Everything a stage's trial factory gets: the trial directory (exists, empty), the
    study, the fidelity it runs at, its full Table S1, its LAMMPS seed and, for a chained
    stage, the upstream state (``Lineage``)."""

    workdir: Path
    loaded: "StudyView"
    fidelity: Fidelity
    params: ForceFieldParams
    seed: int
    lineage: "Lineage | None" = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Run options (``keep_going``: leave a part of a trial whose outputs fail their checks,
    e.g. one calendering degree with a bead through the plane, out with its reason instead of
    failing the trial; ``calib pipeline``)."""


class Stage(Protocol):
    """A stage plug-in (see the module docstring)."""

    name: str
    upstream: str | None
    """The stage whose state this one starts from (None: it starts from nothing)."""
    targets: tuple[str, ...]
    """Dataset targets (or curves) it can score."""
    sections: Mapping[str, type[BaseModel]]
    """Study-file sections it reads: name -> settings model (shared sections: same model)."""
    column: str
    """The Table S1 column its parameters act on: ``slurry`` or ``dried``."""
    column_title: str
    """The column's title in an exported Table S1."""
    pipeline_key: str
    """Where ``calib pipeline`` stores this stage's record in its JSON summary."""
    default_study: str | None
    """The study file ``calib optimize --stage NAME`` uses without ``--study`` (in ``studies/``)."""

    def fidelity_fields(self, spec: "StudyBase") -> tuple[str, ...]: ...
    def identity_sections(self, spec: "StudyBase") -> tuple[str, ...]: ...
    def identity_extra(self, loaded: "StudyView") -> dict: ...
    def dataset_identity(self, loaded: "StudyView") -> dict: ...
    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView": ...
    def check_upstream(self, loaded: "StudyView", lineage: "Lineage") -> None: ...
    def check_box(self, loaded: "StudyView", edges_um: Sequence[float], what: str) -> None: ...
    def warnings(self, loaded: "StudyView") -> list[str]: ...
    def fidelity_problem(self, loaded: "StudyView", fidelity: Fidelity) -> str | None: ...
    def study_attrs(self, loaded: "StudyView") -> dict[str, str]: ...
    def make_trial(self, ctx: TrialContext) -> StageTrial: ...
    def pipeline_record(self, trial: StageTrial, score: Score) -> Any: ...


class StageBase:
    """Defaults of the optional parts of ``Stage``: no upstream, every section in the
    identity, nothing extra, no warnings."""

    name: ClassVar[str]
    upstream: ClassVar[str | None] = None
    targets: ClassVar[tuple[str, ...]] = ()
    sections: ClassVar[Mapping[str, type[BaseModel]]] = {}
    column: ClassVar[str] = "dried"
    column_title: ClassVar[str] = "dried electrode"
    pipeline_key: ClassVar[str] = ""
    default_study: ClassVar[str | None] = None
    fidelity_reads: ClassVar[tuple[str, ...]] = COMMON_FIDELITY_FIELDS
    """The fidelity fields ``fidelity_fields`` returns by default."""

    def fidelity_fields(self, spec: "StudyBase") -> tuple[str, ...]:
        return self.fidelity_reads

    def identity_sections(self, spec: "StudyBase") -> tuple[str, ...]:
        return tuple(self.sections)

    def identity_extra(self, loaded: "StudyView") -> dict:
        return {}

    def dataset_identity(self, loaded: "StudyView") -> dict:
        """What the study uses from its dataset: the particle system and the targets it
        scores (``dataset.targets`` entries and the data named like a target)."""
        d, spec = loaded.dataset, loaded.spec
        used: dict = {"name": d.name, "targets": {k: d.targets[k].model_dump() for k in sorted(spec.objective.targets)
                                                 if k in d.targets}}
        if d.system is not None:
            used["system"] = {name: p.model_dump() for name, p in sorted(d.system.phases.items())}
        for k in sorted(spec.objective.targets):
            if k in d.curves:
                used[k] = d.curves[k].model_dump()
            elif getattr(d, k, None) is not None:
                used[k] = getattr(d, k).model_dump()
        return used

    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView":
        """Check the study against its dataset before anything is written (default: every
        scored target is a ``dataset.targets`` entry)."""
        require_dataset_targets(loaded, loaded.spec.objective.targets)
        return loaded

    def check_upstream(self, loaded: "StudyView", lineage: "Lineage") -> None:
        return None

    def check_box(self, loaded: "StudyView", edges_um: Sequence[float], what: str) -> None:
        """Whatever the stage allocates for a film within a box of ``edges_um`` fits
        (``InputError`` otherwise; default: nothing)."""
        return None

    def warnings(self, loaded: "StudyView") -> list[str]:
        return []

    def fidelity_problem(self, loaded: "StudyView", fidelity: Fidelity) -> str | None:
        """Why this stage cannot run ``fidelity`` under the study's settings (e.g. a
        compression the protocol's steps do not allow), or None."""
        return None

    def study_attrs(self, loaded: "StudyView") -> dict[str, str]:
        return {}

    def pipeline_record(self, trial: StageTrial, score: Score) -> Any:
        return score.observables


def require_dataset_targets(loaded: "StudyView", names: Iterable[str]) -> None:
    """Each of ``names`` is a ``targets`` entry of the study's dataset (``InputError``)."""
    from calib.core.errors import InputError

    for t in names:
        if t not in loaded.dataset.targets:
            raise InputError(str(loaded.path), f"objective.targets.{t}", f"dataset {loaded.spec.dataset} has no target {t!r}")


def named_errors(errors: Iterable[ObjectiveResult]) -> dict[str, float]:
    return {e.name: float(e.error) for e in errors}


def scalarised(errors: Mapping[str, float], spec: "StudyBase", seed: int, proposal: int | None) -> float:
    """The study's scalarisation of named errors. ParEGO uses the weights of ``proposal``
    (a trial number); without one (ranking trials) it falls back to the weighted sum."""
    items = [_Named(k, v) for k, v in errors.items()]
    if not items:  # a trial scoring nothing (calib pipeline): nothing to scalarise
        return 0.0
    o = spec.objective
    if o.scalarisation == "parego":
        if proposal is None:
            return scalarise(items, "weighted_sum", o.targets)
        return scalarise(items, "parego", parego_weights(sorted(o.targets), seed, proposal))
    return scalarise(items, o.scalarisation, o.targets)


@dataclass(frozen=True)
class _Named:
    name: str
    error: float


def guarded_plots(make: Callable[[], Sequence[Path]]) -> tuple[Path, ...]:
    """Plots are a convenience: one that fails is left out, never a failed trial."""
    try:
        return tuple(make())
    except Exception:
        return ()

