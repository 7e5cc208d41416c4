"""Stage glue: from a study's dataset and fidelity to bead systems, trial inputs and scored
observables. The one place where ``calib`` joins ``objectives`` and ``sim_backends``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from objectives.dataset import Dataset
from objectives.errors import TargetError, density_error
from objectives.rheology import CurveErrorResult, curve_error
from objectives.scalarise import parego_weights, scalarise
from sim_backends.lammps.beads import BeadSystem, Formulation, Phase, SizeClass, SolidBead, build_slurry_system
from sim_backends.lammps.forcefield import ForceFieldParams, pair_lines, resolve_type
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import paper_scaled_box
from sim_backends.lammps.shear import (SHEAR_BLOCKS, SHEAR_DECK, SHEAR_LOG, ShearRunSpec, shear_result,
                                       write_shear_inputs)
from sim_backends.lammps.slurry import (DECK_FILE, DENSITY_FILE, DENSITY_STATUS, FINAL_DATA, FINAL_RESTART,
                                        LOG_FILE, SlurryObservables,
                                        SlurryRunSpec, read_slurry_observables, write_slurry_inputs)
from sim_backends.lammps.units import micro_viscosity_to_pa_s, per_s_to_micro_rate

from .fidelity import Fidelity
from .study import LoadedStudy, StudySpec, ViscositySettings


def formulation_of(dataset: Dataset) -> Formulation:
    """The dataset's system as a ``sim_backends`` formulation (checked by ``study.load_study``:
    size classes, the AM/SE shell factor and the solid CBD bead are present)."""
    assert dataset.system is not None
    phases = []
    for name, p in dataset.system.phases.items():
        assert p.size_classes is not None
        solid = (SolidBead(p.dried_diameter_um, p.dried_density_g_cm3)
                 if p.dried_diameter_um is not None and p.dried_density_g_cm3 is not None else None)
        extra = {} if p.dried_diameter_factor is None else {"dried_diameter_factor": p.dried_diameter_factor}
        phases.append(Phase(name=name, weight_fraction=p.weight_fraction, density_g_cm3=p.density_g_cm3,
                            size_classes=tuple(SizeClass(c.diameter_um, c.number_fraction) for c in p.size_classes),
                            slurry_diameter_factor=p.slurry_diameter_factor or 1.0, solid=solid, **extra))
    return Formulation(tuple(phases))


def slurry_system(dataset: Dataset, fidelity: Fidelity) -> BeadSystem:
    return build_slurry_system(formulation_of(dataset), fidelity.n_beads)


def neighbor_style(fidelity: Fidelity, params: ForceFieldParams, system: BeadSystem) -> str:
    """The fidelity's neighbour binning; ``auto``: ``multi`` when the types' LJ cutoffs span
    more than a factor of 2 (polydisperse beads), else ``bin``."""
    if fidelity.neighbor_style != "auto":
        return fidelity.neighbor_style
    cut = [resolve_type(params, t)[2] for t in system.types]
    return "multi" if max(cut) > 2 * min(cut) else "bin"


def slurry_run_spec(spec: StudySpec, fidelity: Fidelity, seed: int, neighbor: str = "bin") -> SlurryRunSpec:
    s, f = spec.slurry, fidelity
    return SlurryRunSpec(
        temperature_K=s.temperature_K, pressure_atm=s.pressure_atm, pressure_start_atm=s.pressure_start_atm,
        timestep_us=f.timestep_us, minimize_max_iter=f.minimize_max_iter, ramp_steps=f.equilibration_steps,
        block_steps=f.block_steps, sample_every=f.sample_every, window_blocks=f.window_steps // f.block_steps,
        averaging_blocks=f.averaging_steps // f.block_steps, min_hold_blocks=f.averaging_steps // f.block_steps,
        max_hold_blocks=f.max_steps // f.block_steps, tolerance_rel=s.density_tolerance_rel,
        early_stop=s.early_stop, thermo_every=f.thermo_every, tdamp_us=s.tdamp_us, pdamp_us=s.pdamp_us,
        neighbor_skin_um=s.neighbor_skin_um, neighbor_style=neighbor, lj_style=spec.lj_style, seed=seed,
    )


@dataclass(frozen=True)
class Run:
    """One LAMMPS run of a trial: its key (``slurry``, ``shear_<i>``), directory, deck, log and
    files worth keeping."""

    key: str
    workdir: Path
    deck: str
    log: str
    artifacts: tuple[str, ...]
    label: str | None = None
    """How failures name the run (default: ``key (folder)``)."""


@dataclass(frozen=True)
class RatePlan:
    """One shear rate of a trial: experimental rate (1/s), simulated rate (1/us), blocks per
    segment and the segment limits of its run (min_segments: the earliest segment at which
    the window may pass, i.e. after min_strain plus one window)."""

    index: int
    rate_exp_per_s: float
    rate_sim_per_us: float
    segment_blocks: int
    max_segments: int
    min_segments: int

    def strain_per_segment(self, fidelity: Fidelity) -> float:
        return self.rate_sim_per_us * self.segment_blocks * fidelity.shear_block_steps * fidelity.timestep_us


def rate_plans(rates_exp_per_s: Sequence[float], settings: ViscositySettings, fidelity: Fidelity) -> list[RatePlan]:
    """Simulated rates and run lengths: simulated = rate_scale x experimental (converted to
    1/us); a segment spans at least ``segment_strain`` (and ``shear_segment_blocks`` blocks);
    the window of ``window_segments`` may start only after ``min_strain``; a run goes to
    ``max_strain`` or, if that is shorter, to the end of the first possible window, and
    never past ``shear_max_steps``."""
    block = fidelity.shear_block_steps
    plans = []
    for i, r in enumerate(rates_exp_per_s):
        sim = per_s_to_micro_rate(r * settings.rate_scale)
        strain_per_block = sim * block * fidelity.timestep_us
        seg_blocks = max(fidelity.shear_segment_blocks, math.ceil(settings.segment_strain / strain_per_block - 1e-9))
        seg_blocks = max(1, min(seg_blocks, fidelity.shear_max_steps // block))  # never past shear_max_steps
        per_seg = strain_per_block * seg_blocks
        cap = max(1, fidelity.shear_max_steps // (seg_blocks * block))
        skip = math.ceil(settings.min_strain / per_seg - 1e-9)
        min_seg = skip + settings.window_segments
        # to max_strain, but always far enough for one window after min_strain (steps allowing)
        max_seg = min(cap, max(min_seg, math.ceil(settings.max_strain / per_seg - 1e-9)))
        plans.append(RatePlan(i, float(r), sim, seg_blocks, max_seg, min_seg))
    return plans


def shear_run_spec(plan: RatePlan, spec: StudySpec, fidelity: Fidelity, params: ForceFieldParams,
                   system: BeadSystem) -> ShearRunSpec:
    v = spec.viscosity
    return ShearRunSpec(
        state_file=f"../{FINAL_RESTART}", pair_lines=tuple(pair_lines(params, system, spec.lj_style)),
        shear_rate=plan.rate_sim_per_us, temperature=spec.slurry.temperature_K, tdamp=v.tdamp_us,
        timestep=fidelity.timestep_us, block_steps=fidelity.shear_block_steps,
        segment_blocks=plan.segment_blocks, max_segments=plan.max_segments,
        early_stop=v.early_stop, min_segments=plan.min_segments, window=v.window_segments, z=v.z,
        precision=v.precision, sample_every=fidelity.sample_every,
        units="micro", atom_style="sphere", neighbor_skin=spec.slurry.neighbor_skin_um,
        thermo_every=fidelity.thermo_every, setup_lines=SHEAR_SETUP)


SHEAR_SETUP = ("boundary p p p", "newton off", "comm_modify vel yes")
"""Settings the granular pair style needs before the slurry state is read."""


@dataclass(frozen=True)
class RateResult:
    """The viscosity of one shear rate, in SI: experimental and simulated rate, eta (Pa s)
    with its standard error, convergence, steps, strain and wall time."""

    rate_exp_per_s: float
    rate_sim_per_us: float
    viscosity_pa_s: float
    sem_pa_s: float
    converged: bool
    steps: int
    strain: float
    wall_s: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Score:
    """A scored trial: per-objective errors, the scalarised value (penalty included), the
    raw observables and, when the study's policy makes an unconverged curve a failure, why."""

    errors: tuple[TargetError | CurveErrorResult, ...]
    value: float
    observables: dict[str, float]
    equilibrated: bool
    """The stage's observables converged (slurry: the density's plateau test)."""
    rates: tuple[RateResult, ...] = ()
    penalty: float = 0.0
    fail_reason: str | None = None
    summary: str = ""
    """One line for the progress display (empty: the loop describes density and rates)."""
    details: dict = field(default_factory=dict)
    """Further JSON-able results stored with the trial (user attr name -> value)."""
    plots: tuple[Path, ...] = ()
    """Plot files the trial made (logged to MLflow with the trial)."""

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


def named_errors(errors: Sequence[TargetError | CurveErrorResult]) -> dict[str, float]:
    return {e.name: float(e.error) for e in errors}


def scalarised(errors: Mapping[str, float], spec: StudySpec, seed: int, proposal: int | None) -> float:
    """The study's scalarisation of named errors. ParEGO uses the weights of ``proposal``
    (a trial number); without one (ranking trials) it falls back to the weighted sum."""
    items = [_Named(k, v) for k, v in errors.items()]
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


class SlurryTrial:
    """The runs of one slurry trial and their scoring: the NPT slurry run, then (when the
    study scores the viscosity curve) one SLLOD run per shear rate, all starting from the
    slurry's ``final.restart`` and submitted together."""

    def __init__(self, workdir: Path, loaded: LoadedStudy, fidelity: Fidelity, params: ForceFieldParams,
                 seed: int) -> None:
        self.workdir = Path(workdir)
        self.loaded = loaded
        self.spec = loaded.spec
        self.fidelity = fidelity
        self.params = params
        self.seed = seed
        self.system = slurry_system(loaded.dataset, fidelity)
        self.plans = (rate_plans(loaded.simulated_rates_per_s(), self.spec.viscosity, fidelity)
                      if self.spec.uses_viscosity else [])
        self.run_spec = slurry_run_spec(self.spec, fidelity, seed, neighbor_style(fidelity, params, self.system))
        self.slurry: SlurryObservables | None = None
        self.shear_specs: dict[int, ShearRunSpec] = {}
        self.phase = 0

    def first_runs(self) -> list[Run]:
        box = tuple(x * self.fidelity.initial_box_scale for x in paper_scaled_box(self.system.n_beads))
        write_slurry_inputs(self.workdir, self.system, self.params, self.run_spec, box)  # type: ignore[arg-type]
        self.phase = 1
        return [Run("slurry", self.workdir, DECK_FILE, LOG_FILE,
                    (DECK_FILE, LOG_FILE, FINAL_DATA, DENSITY_FILE, DENSITY_STATUS))]

    def shear_dir(self, plan: RatePlan) -> Path:
        return self.workdir / f"shear_{plan.index:02d}"

    def next_runs(self) -> list[Run]:
        """Runs that follow the finished ones ([] when the trial is complete). Raises
        ``SimulationFailed`` when the slurry outputs are unusable."""
        if self.phase == 1:
            self.slurry = read_slurry_observables(self.workdir, self.run_spec)
            if not self.slurry.converged and self.spec.slurry.not_converged == "fail":
                raise SimulationFailed(density_not_converged(self.slurry, self.run_spec), self.workdir)
            self.phase = 2
            runs = []
            for plan in self.plans:
                d = self.shear_dir(plan)
                d.mkdir(exist_ok=True)
                self.shear_specs[plan.index] = shear_run_spec(plan, self.spec, self.fidelity, self.params, self.system)
                write_shear_inputs(d, self.shear_specs[plan.index])
                runs.append(Run(f"shear_{plan.index:02d}", d, SHEAR_DECK, SHEAR_LOG,
                                (SHEAR_DECK, SHEAR_LOG, SHEAR_BLOCKS)))
            return runs
        return []

    def rate_results(self, wall_s: Mapping[str, float]) -> list[RateResult]:
        out = []
        for plan in self.plans:
            d = self.shear_dir(plan)
            res = shear_result(d, self.shear_specs[plan.index])  # the spec its deck was written from
            out.append(RateResult(
                rate_exp_per_s=plan.rate_exp_per_s, rate_sim_per_us=plan.rate_sim_per_us,
                viscosity_pa_s=micro_viscosity_to_pa_s(res.viscosity), sem_pa_s=micro_viscosity_to_pa_s(res.sem),
                converged=bool(res.converged),
                steps=res.steps, strain=res.strain, wall_s=float(wall_s.get(f"shear_{plan.index:02d}", math.nan))))
        return out

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        """Score the finished trial; raises ``SimulationFailed`` on unusable outputs."""
        assert self.slurry is not None
        spec, dataset = self.spec, self.loaded.dataset
        obs = self.slurry
        errors: list[TargetError | CurveErrorResult] = []
        if "slurry_density" in spec.objective.targets:
            errors.append(density_error(obs.density_g_cm3, dataset.targets["slurry_density"], obs.density_sem_g_cm3))
        rates = self.rate_results(wall_s or {}) if self.plans else []
        fail_reason = None
        penalty = 0.0
        if rates:
            bad = [r for r in rates if not (r.viscosity_pa_s > 0 and math.isfinite(r.viscosity_pa_s))]
            if bad:
                b = bad[0]
                raise SimulationFailed(f"viscosity at {b.rate_exp_per_s:g} 1/s is not positive ({b.viscosity_pa_s:.3g} "
                                       f"+- {b.sem_pa_s:.2g} Pa s at strain {b.strain:.3g}): the run measured no "
                                       "steady viscous stress, so the curve error (in log viscosity) is undefined",
                                       self.workdir)
            assert self.loaded.curve is not None
            errors.append(curve_error([r.rate_exp_per_s for r in rates], [r.viscosity_pa_s for r in rates],
                                      self.loaded.curve, [r.sem_pa_s for r in rates]))
            unconverged = [r for r in rates if not r.converged]
            if unconverged:
                what = ", ".join(f"{r.rate_exp_per_s:g} 1/s (strain {r.strain:.3g})" for r in unconverged)
                if spec.viscosity.not_converged == "fail":
                    fail_reason = f"viscosity not converged at {what}"
                else:
                    penalty = spec.viscosity.penalty * len(unconverged) / len(rates)
        if not obs.converged:  # the "fail" policy failed the trial before its shear runs
            penalty += spec.slurry.penalty
        value = scalarised(named_errors(errors), spec, self.seed, None) + penalty
        observables = {k: float(v) for k, v in asdict(obs).items() if v is not None}
        observables["atom_steps_per_s"] = obs.atom_steps_per_s
        details = {"density_converged": obs.converged,
                   "density_convergence": density_convergence_note(obs, self.run_spec)}
        if self.fidelity.density_bias_rel is not None:
            observables["fidelity_density_bias_rel"] = self.fidelity.density_bias_rel
            details["fidelity_density_bias"] = (f"{self.fidelity.density_bias_rel:+.2%} "
                                                f"({self.fidelity.density_bias_source or 'source not given'})")
        return Score(tuple(errors), value, observables, obs.converged, tuple(rates), penalty, fail_reason,
                     details=details)


def density_convergence_note(obs: SlurryObservables, run: SlurryRunSpec) -> str:
    """One line: how the density's plateau test came out."""
    if obs.converged:
        return (f"converged at step {obs.converged_step:,} (change {obs.density_change_rel:+.3%} across the last "
                f"{run.window_blocks * run.block_steps:,} steps, tolerance {run.tolerance_rel:.2%})")
    return density_not_converged(obs, run)


def density_not_converged(obs: SlurryObservables, run: SlurryRunSpec) -> str:
    return (f"density not converged after {obs.hold_steps:,} steps at the set pressure: it changed "
            f"{obs.density_change_rel:+.3%} across the last {run.window_blocks * run.block_steps:,} steps "
            f"(tolerance {run.tolerance_rel:.2%}); lengthen the fidelity's density_max_steps")
