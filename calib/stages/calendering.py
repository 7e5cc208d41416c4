"""The calendering stage (seed Sec. 3.3): a granular plane compresses the dried film by
each degree (% of its thickness), all degrees run concurrently from the same dried state,
one sub-directory ``calender_NN/`` each; scored by the porosity at each degree.

Settings: ``calendering`` (``CalenderingSettings``) and ``drying`` (voxel resolution, CBD
nanoporosity). Target: ``calendered_porosity``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pydantic import PositiveFloat, model_validator

from objectives.errors import TargetError
from objectives.porosity import CalenderedErrorResult, calendered_porosity_error
from sim_backends.lammps.calendering import (CALENDER_DECK, CALENDER_LOG, CALENDER_STATUS, CALENDERED_DATA,
                                             MAX_DEGREE_PCT, RELAX_FILE, CalenderRunSpec, read_calender_status,
                                             relaxation, write_calender_inputs)
from sim_backends.lammps.forcefield import ForceFieldParams
from sim_backends.lammps.outputs import SimulationFailed, checked_log
from sim_backends.microstructure import ElectrodeStructure

from calib.core.errors import InputError
from calib.spec.fidelity import Fidelity
from calib.stages.upstream_state import state_bead_count
from calib.core.plots import POROSITY_PLOT, PROFILE_PLOT, plot_porosity_vs_degree, plot_profiles
from calib.stages.base import Run, Score, StageBase, TrialContext, guarded_plots, named_errors, scalarised
from calib.stages.registry import register
from calib.stages.drying import DryingSettings
from calib.stages.film_structure import (DRIED_STATE, WallSettings, analyse_state, check_film_state, check_grid, nanoporosity_of,
                   profiles_dict, study_or_fidelity, wall_of)
from calib.stages.bead_systems import systems_for
from calib.stages.verdict import ConvergencePolicy, Verdict, verdict_of

if TYPE_CHECKING:
    from calib.stages.upstream_state import Lineage
    from calib.stages.base import StudyView

PIPELINE_DEGREES_PCT = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)
"""Calendering degrees of ``calib pipeline`` (seed Sec. 3.3: 0-50 %)."""


def degrees_problem(degrees) -> str | None:
    """Why a list of calendering degrees (%) cannot be simulated, or None: at least one,
    each finite in [0, 60) %, strictly increasing."""
    if not degrees:
        return "give at least one degree"
    for d in degrees:
        if not (0 <= d < MAX_DEGREE_PCT):  # NaN fails too
            return f"calendering degree {d:g} % is outside [0, {MAX_DEGREE_PCT:g}) %"
    for a, b in zip(degrees, degrees[1:]):
        if b <= a:
            return f"degrees must increase strictly ({a:g} then {b:g})"
    return None


class CalenderingSettings(ConvergencePolicy):
    """Calendering stage physics (seed Sec. 3.3; sim_backends.lammps.calendering).
    degrees_pct: degrees to simulate, each in [0, 60) % (default: the dataset's measured
    degrees; ``calib pipeline``: 0, 10, ..., 50). speed_um_per_us, timestep_us, tdamp_us:
    plane speed, integration step and ``nvt/sphere`` damping (public ``Calendering/in_cal.run``:
    0.02 um/us, 1e-4 us, 0.2 us; a fidelity may override speed and step, see
    ``Fidelity.calender_speed_um_per_us``). release:
    remove the plane after holding and let the film spring back (default: the plane stays
    at its final height while the film relaxes, as in the group's public inputs; the seed
    makes the release optional). not_converged, penalty: what a trial becomes whose film was
    still relaxing at the end of a degree (``calib.stages.verdict``; the test: the beads' mean
    height across the fidelity's density window, at the slurry's tolerance)."""

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
            problem = degrees_problem(self.degrees_pct)
            if problem:
                raise ValueError(f"degrees_pct: {problem}" + (" (or leave it out)" if not self.degrees_pct else ""))
        return self


@dataclass(frozen=True)
class DegreeResult:
    """One calendering degree: thickness before, while held and at the end (after release,
    if any), um; porosity and phase fractions at the end; the plane's held height above the
    collector (um: (1 - degree) x T0; the held top exceeds it by the beads' overlap with it)."""

    degree_pct: float
    thickness_before_um: float
    thickness_held_um: float
    thickness_um: float
    porosity: float
    fractions: dict[str, float]
    plane_um: float = math.nan
    relax_change_rel: float = math.nan
    relaxed: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


class CalenderingTrial:
    """One calendering trial: every degree from the same dried state, run concurrently."""

    def __init__(self, workdir: Path, loaded: "StudyView", fidelity: Fidelity, params: ForceFieldParams,
                 seed: int, lineage: "Lineage", degrees_pct: tuple[float, ...] | None = None,
                 keep_going: bool = False) -> None:
        self.workdir = Path(workdir)
        self.loaded, self.spec, self.fidelity, self.params, self.seed = loaded, loaded.spec, fidelity, params, seed
        self.lineage = lineage
        self.degrees = tuple(degrees_pct if degrees_pct is not None else degrees_pct_of(loaded))
        _, self.system = systems_for(loaded.dataset, state_bead_count(Path(lineage.state_file)))
        self.results: list[DegreeResult] = []
        self.structures: dict[float, ElectrodeStructure] = {}
        self.failed: dict[float, str] = {}
        self.keep_going = keep_going
        """Leave a degree whose run or state failed out (with its reason in ``failed``)."""

    def degree_dir(self, i: int) -> Path:
        return self.workdir / f"calender_{i:02d}"

    def run_spec(self, degree: float) -> CalenderRunSpec:
        c, f = self.spec.calendering, self.fidelity
        return CalenderRunSpec(degree_pct=degree, wall=wall_of(c.wall, self.params),
                               speed_um_per_us=study_or_fidelity(c, "speed_um_per_us", f.calender_speed_um_per_us),
                               hold_steps=f.calender_hold_steps, release=c.release,
                               release_steps=f.calender_release_steps, temperature_K=c.temperature_K,
                               tdamp_us=c.tdamp_us,
                               timestep_us=study_or_fidelity(c, "timestep_us", f.calender_timestep_us),
                               thermo_every=f.thermo_every, neighbor_skin_um=c.neighbor_skin_um,
                               lj_style=self.spec.lj_style, seed=self.seed, state_file=f"../{DRIED_STATE}",
                               block_steps=f.block_steps, sample_every=f.sample_every)

    def first_runs(self) -> list[Run]:
        shutil.copyfile(self.lineage.state_file, self.workdir / DRIED_STATE)
        runs = []
        for i, deg in enumerate(self.degrees):
            d = self.degree_dir(i)
            d.mkdir(exist_ok=True)
            write_calender_inputs(d, self.system, self.params, self.run_spec(deg))
            runs.append(Run(f"calender_{i:02d}", d, CALENDER_DECK, CALENDER_LOG,
                            (CALENDER_DECK, CALENDER_LOG, CALENDER_STATUS, RELAX_FILE),
                            label=f"calendering at {deg:g} % ({d.name})"))
        return runs

    def next_runs(self) -> list[Run]:
        return []

    def measure(self, skip_failed: bool = False) -> list[DegreeResult]:
        """Per-degree results; raises ``SimulationFailed`` (naming the degree) on failure, or
        with ``skip_failed`` leaves that degree out and records why in ``failed``."""
        out = []
        self.failed = {}
        for i, deg in enumerate(self.degrees):
            d = self.degree_dir(i)
            try:
                checked_log(d, CALENDER_LOG)
                st = read_calender_status(d)
                state = d / CALENDERED_DATA
                if not state.exists():
                    raise SimulationFailed("calendering ended without writing its state", d)
                s = analyse_state(state, self.system, None, self.spec.drying.resolution_um,
                                  nanoporosity_of(self.loaded), d)
            except SimulationFailed as exc:
                if skip_failed:
                    self.failed[deg] = exc.reason
                    continue
                raise SimulationFailed(f"calendering at {deg:g} %: {exc.reason}", self.workdir) from exc
            self.structures[deg] = s
            rel = relaxation(d, self.fidelity.window_steps // self.fidelity.block_steps,
                             self.spec.slurry.density_tolerance_rel)
            out.append(DegreeResult(deg, st.t0_um, st.held_um, s.thickness_um, s.porosity, s.fractions, st.piston_um,
                                    rel.change_rel, rel.converged))
        self.results = out
        return out

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        # measured already when a stage built on this one read the states (characterise)
        res = self.results if self.results else self.measure(skip_failed=self.keep_going)
        if not res:
            raise SimulationFailed("every degree failed: " + "; ".join(f"{d:g} %: {r}" for d, r in self.failed.items()),
                                   self.workdir)
        errors: list[TargetError | CalenderedErrorResult] = []
        cp = self.loaded.dataset.calendered_porosity
        if "calendered_porosity" in self.spec.objective.targets:
            assert cp is not None
            errors.append(calendered_porosity_error([r.degree_pct for r in res], [r.porosity for r in res], cp))
        verdict = calender_verdict(res, self.spec.slurry.density_tolerance_rel)
        penalty, fail_reason = verdict.outcome(self.spec.calendering)
        value = scalarised(named_errors(errors), self.spec, self.seed, None) + penalty
        obs: dict[str, float] = {}
        for r in res:
            key = f"calender/{r.degree_pct:g}_pct"
            obs.update({f"{key}/thickness_before_um": r.thickness_before_um,
                        f"{key}/thickness_held_um": r.thickness_held_um,
                        f"{key}/thickness_um": r.thickness_um, f"{key}/porosity": r.porosity,
                        f"{key}/relaxed": float(r.relaxed)})
            if math.isfinite(r.relax_change_rel):
                obs[f"{key}/relax_change_rel"] = r.relax_change_rel
        measured = [(p.degree_pct, p.porosity) for p in cp.points] if cp is not None else []
        plots = guarded_plots(lambda: (
            plot_porosity_vs_degree(self.workdir / POROSITY_PLOT, [r.degree_pct for r in res],
                                    [r.porosity for r in res], measured),
            plot_profiles(self.workdir / PROFILE_PLOT, {f"{d:g} %": st for d, st in sorted(self.structures.items())})))
        rows = [r.as_dict() for r in res]
        return Score(tuple(errors), value, obs, verdict.converged, penalty, fail_reason,
                     summary="porosity " + ", ".join(f"{r.degree_pct:g}%: {100 * r.porosity:.1f}" for r in res) + " %"
                     + ("" if verdict.converged else " (not relaxed)"),
                     attrs={"calendering": rows, "calendering_convergence": verdict.note(),
                            "profiles_by_degree": {f"{d:g}": profiles_dict(st) for d, st in sorted(self.structures.items())},
                            **({"failed_degrees": {f"{d:g}": r for d, r in self.failed.items()}}
                                                   if self.failed else {})},
                     report={"calendering": rows, "calendering_convergence": verdict.note()},
                     lines=tuple(f"calendered {r.degree_pct:g} %: thickness {r.thickness_um:.1f} um (held "
                                 f"{r.thickness_held_um:.1f} of {r.thickness_before_um:.1f}), porosity "
                                 f"{100 * r.porosity:.2f} %" for r in res) + (f"calendering: {verdict.note()}",),
                     plots=plots)

    def partial_observables(self) -> dict[str, float]:
        return {}

    @property
    def state_file(self) -> Path | None:
        return None  # one state per degree: ``degree_dir(i) / CALENDERED_DATA``


def calender_protocol_label(run: CalenderRunSpec) -> str:
    """The calendering protocol a degree was read under, in words."""
    return (f"plane at {run.speed_um_per_us:g} um/us with a {run.timestep_us:g} us step, held {run.hold_steps:,} "
            f"steps, relaxed {run.release_steps:,}{' without the plane' if run.release else ''} (public in_cal.run: "
            f"0.02 um/us at 1e-4 us)")


def calender_verdict(results: Sequence[DegreeResult], tolerance_rel: float) -> Verdict:
    """Every degree's film had stopped relaxing (``sim_backends.lammps.calendering.relaxation``)."""
    return verdict_of(*((r.relaxed, f"the film at {r.degree_pct:g} % was still relaxing at the end "
                                    f"({r.relax_change_rel:+.2%} mean bead height across the last window, tolerance "
                                    f"{tolerance_rel:.2%}; lengthen the fidelity's calender_release_steps)")
                        for r in results))


def degrees_pct_of(loaded: "StudyView") -> tuple[float, ...]:
    """Calendering degrees to simulate (%): the study's, else the dataset's measured ones,
    else the pipeline's 0-50 %."""
    c = loaded.spec.calendering
    if c.degrees_pct is not None:
        return tuple(c.degrees_pct)
    if loaded.dataset.calendered_porosity is not None:
        return tuple(p.degree_pct for p in loaded.dataset.calendered_porosity.points)
    return PIPELINE_DEGREES_PCT


def check_measured_degrees(loaded: "StudyView", series: str, degrees) -> None:
    """A dataset series scored against degree needs every measured degree simulated
    (``InputError`` on ``calendering.degrees_pct`` otherwise)."""
    sim = loaded.spec.calendering.degrees_pct
    if sim is None:
        return
    missing = [d for d in degrees if d not in sim]
    if missing:
        raise InputError(str(loaded.path), "calendering.degrees_pct",
                         f"must include the measured degrees {', '.join(f'{d:g}' for d in missing)} % of {series}")


class CalenderingStage(StageBase):
    name = "calendering"
    upstream = "drying"
    targets = ("calendered_porosity",)
    sections = {"drying": DryingSettings, "calendering": CalenderingSettings}
    column = "dried"
    column_title = "dried electrode"
    pipeline_key = "degrees"
    fidelity_reads = ("thermo_every", "calender_hold_steps", "calender_release_steps", "calender_speed_um_per_us",
                      "calender_timestep_us", "block_steps", "sample_every", "averaging_steps", "density_window_steps")

    def identity_extra(self, loaded: "StudyView") -> dict:
        # the relaxation's plateau test uses the slurry's tolerance
        return {"degrees_pct": list(degrees_pct_of(loaded)),
                "density_tolerance_rel": loaded.spec.slurry.density_tolerance_rel}

    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView":
        if "calendered_porosity" in loaded.spec.objective.targets:
            cp = loaded.dataset.calendered_porosity
            if cp is None:
                raise InputError(str(loaded.path), "objective.targets.calendered_porosity",
                                 f"dataset {loaded.spec.dataset} has no calendered_porosity points")
            check_measured_degrees(loaded, "calendered_porosity", [p.degree_pct for p in cp.points])
        return loaded

    def check_box(self, loaded: "StudyView", edges_um, what: str) -> None:
        """The voxel grid of the porosity analysis fits (``drying.resolution_um``)."""
        check_grid(loaded, edges_um, what)

    def check_upstream(self, loaded: "StudyView", lineage: "Lineage") -> None:
        """The upstream state holds this dataset's dried beads; the voxel grid fits."""
        check_film_state(loaded, lineage, "dried")

    def make_trial(self, ctx: TrialContext) -> CalenderingTrial:
        assert ctx.lineage is not None
        return CalenderingTrial(ctx.workdir, ctx.loaded, ctx.fidelity, ctx.params, ctx.seed, ctx.lineage,
                                keep_going=bool(ctx.options.get("keep_going")))

    def pipeline_record(self, trial, score: Score) -> list[dict]:
        """One row per degree that ran: thicknesses, plane height, porosity, fractions."""
        return [{"degree_pct": r.degree_pct, "protocol": calender_protocol_label(trial.run_spec(r.degree_pct)),
                 "relaxed": r.relaxed, "thickness_um": r.thickness_um,
                 "thickness_before_um": r.thickness_before_um, "thickness_held_um": r.thickness_held_um,
                 "plane_um": r.plane_um, "porosity": r.porosity, **{f"fraction_{k}": v for k, v in r.fractions.items()}}
                for r in trial.results]


STAGE = register(CalenderingStage())
