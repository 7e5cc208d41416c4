"""The slurry stage (seed Sec. 2.1, 3.1-3.2): NPT density of the slurry, then, when the
study scores the viscosity curve, one SLLOD shear run per rate from the slurry's state.

Settings: ``slurry`` (``SlurrySettings``) and ``viscosity`` (``ViscositySettings``).
Targets: ``slurry_density`` and ``viscosity_curve``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from objectives.errors import TargetError, density_error
from objectives.rheology import CurveError, CurveErrorResult, ViscosityCurve, curve_error, load_rheometer_csv
from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.compression import LAWS, NptProtocol, compress
from sim_backends.lammps.forcefield import ForceFieldParams, pair_lines, resolve_type
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import paper_scaled_box
from sim_backends.lammps.shear import (SHEAR_BLOCKS, SHEAR_DECK, SHEAR_LOG, ShearRunSpec, shear_result,
                                       write_shear_inputs)
from sim_backends.lammps.slurry import (DATA_FILE, DECK_FILE, DENSITY_FILE, DENSITY_STATUS, FINAL_DATA, FINAL_RESTART,
                                        LOG_FILE, SEED_BLOCKS, SEED_END_BLOCKS, SlurryObservables, SlurryRunSpec, density_trajectory, read_slurry_observables,
                                        write_slurry_inputs)
from sim_backends.lammps.units import micro_viscosity_to_pa_s, per_s_to_micro_rate

from calib.core.errors import InputError
from calib.spec.fidelity import Fidelity
from calib.core.plots import CURVE_PLOT, DENSITY_PLOT, plot_density_trajectory, plot_viscosity_curve
from calib.spec.study_file import SpecModel
from calib.stages.base import (COMMON_FIDELITY_FIELDS, Run, Score, StageBase, TrialContext, guarded_plots, named_errors,
                   require_dataset_targets, scalarised)
from calib.stages.registry import register
from calib.stages.bead_systems import slurry_system

if TYPE_CHECKING:
    from calib.spec.study_file import StudyBase
    from calib.stages.base import StudyView


class SlurrySettings(SpecModel):
    """Physics settings of the slurry stage (seed: 300 K, 1 atm; thermostat, barostat and
    ramp as the group's public ``Slurry/in_slurry.run``: ``npt/sphere temp 300 300 0.2 iso 0
    100 1000``).

    protocol: ``seed`` (the seed's and the public inputs': the pressure ramped
    linearly to P0 over the whole run of ``protocol_steps`` from the seed's dilute start, the
    density read at the end, as the mean of the last 1 % of the run) or ``ramp_hold`` (a
    ramp of the fidelity's ``equilibration_steps``, then P0 held until the plateau test
    passes; kept as a named alternative: it does not converge at 1 atm, docs/stages/slurry.md).
    protocol_steps: the seed
    protocol's length at k = 1 (public: 2e7 steps of 0.001 us); a fidelity's
    ``compression`` k runs it in protocol_steps / k steps under ``compression_law``.
    allow_protocol_mismatch: score a target whose dataset names another protocol anyway.
    early_stop_band_rel: protocol ``seed`` only: stop a calibration trial's run at the first
    density block above target x (1 + band) (the density only rises along the protocol, so
    the run cannot end inside the band; ``SEED_MONOTONE_NOTE``). The trial keeps that block's
    density as a lower bound and is scored on a forecast of its end density
    (``END_FORECAST_EXPONENT``): data for the proposer, never the study's answer. None (the
    default): every trial runs the whole protocol. Confirmations never stop early.

    pressure_start_atm: start of the pressure ramp (public: 0). tdamp_us, pdamp_us:
    Nose-Hoover thermostat and barostat damping (public: 0.2 and 1000 us).
    density_tolerance_rel: the plateau test's tolerance on the density's relative change
    across the fidelity's window. early_stop: end the run at the first passing window.
    not_converged: ``penalty`` keeps a trial whose density never converged and adds
    ``penalty`` to its scalarised objective (0: flag it only); ``fail`` makes it FAIL with
    the reason.
    """

    protocol: Literal["seed", "ramp_hold"] = "seed"
    protocol_steps: PositiveInt = 20_000_000
    compression_law: Literal[LAWS] = "undamped"  # type: ignore[valid-type]
    allow_protocol_mismatch: bool = False
    early_stop_band_rel: PositiveFloat | None = None
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
    IDENTITY_OMIT_DEFAULTS: ClassVar[dict[str, Any]] = {"early_stop_band_rel": None}  # studies before it existed

    @model_validator(mode="after")
    def _band(self) -> "SlurrySettings":
        if self.early_stop_band_rel is not None and self.protocol != "seed":
            raise ValueError("early_stop_band_rel: stops the seed protocol's rising density; this study runs "
                             "protocol ramp_hold")
        return self


class ViscositySettings(SpecModel):
    """How the slurry's viscosity curve is simulated (seed Sec. 3.2; docs/stages/slurry.md).

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


def neighbor_style(fidelity: Fidelity, params: ForceFieldParams, system: BeadSystem) -> str:
    """The fidelity's neighbour binning; ``auto``: ``multi`` when the types' LJ cutoffs span
    more than a factor of 2 (polydisperse beads), else ``bin``."""
    if fidelity.neighbor_style != "auto":
        return fidelity.neighbor_style
    cut = [resolve_type(params, t)[2] for t in system.types]
    return "multi" if max(cut) > 2 * min(cut) else "bin"


def seed_protocol(settings: SlurrySettings, fidelity: Fidelity) -> NptProtocol:
    """The seed protocol at the fidelity's compression (``compress``; ValueError if k does
    not divide ``protocol_steps`` into whole blocks)."""
    target = NptProtocol(steps=settings.protocol_steps, timestep_us=fidelity.timestep_us,
                         temperature_K=settings.temperature_K, tdamp_us=settings.tdamp_us, pdamp_us=settings.pdamp_us)
    run = compress(target, fidelity.compression, settings.compression_law)
    if run.steps % SEED_BLOCKS:
        raise ValueError(f"protocol_steps / compression = {run.steps} steps is not a multiple of the "
                         f"{SEED_BLOCKS} density blocks of a seed-protocol run")
    return run


TRANSFERABLE = ("slurry_density",)
"""Targets a fidelity's ``transfer`` may map: those read at the end of the compressed seed
protocol."""


def transfer_problem(settings: SlurrySettings, fidelity: Fidelity) -> str | None:
    """Why ``fidelity.transfer`` cannot apply to the study's slurry protocol, or None."""
    if not fidelity.transfer:
        return None
    unknown = sorted(set(fidelity.transfer) - set(TRANSFERABLE))
    if unknown:
        return (f"maps {', '.join(unknown)}, which the slurry stage does not read at the end of a compressed "
                f"protocol (it may map: {', '.join(TRANSFERABLE)})")
    if settings.protocol != "seed":
        return "maps a compressed seed protocol to the full one, but the study runs slurry.protocol: ramp_hold"
    if fidelity.compression == 1:
        return "maps a compressed rung to the full protocol, but this fidelity runs it uncompressed (compression: 1)"
    return None


def protocol_problem(settings: SlurrySettings, fidelity: Fidelity) -> str | None:
    """Why ``fidelity`` cannot run the study's slurry protocol, or None."""
    if settings.protocol != "seed":
        return None
    try:
        seed_protocol(settings, fidelity)
    except ValueError as exc:
        return str(exc)
    return None


def protocol_label(settings: SlurrySettings, fidelity: Fidelity) -> str:
    """The protocol a density was read under, in words (recorded with every value)."""
    if settings.protocol == "ramp_hold":
        return (f"ramp_hold: 0 -> {settings.pressure_atm:g} atm over {fidelity.equilibration_steps:,} steps, then "
                f"held up to {fidelity.max_steps:,} steps (not the seed's protocol; does not converge at 1 atm)")
    k = fidelity.compression
    run = seed_protocol(settings, fidelity)
    how = "uncompressed" if k == 1 else (f"compressed k = {k} ({settings.compression_law} law: {run.steps:,} steps, "
                                         f"T {run.temperature_K:.4g} K, Tdamp {run.tdamp_us:.3g} us, "
                                         f"Pdamp {run.pdamp_us:.4g} us, dt {run.timestep_us:.3g} us)")
    return (f"seed: 0 -> {settings.pressure_atm:g} atm over {settings.protocol_steps:,} steps of "
            f"{fidelity.timestep_us:g} us, {fidelity.n_beads} beads, {how}; density at the end"
            + ("" if k == 1 else "; the compression's measured error: docs/model.md#compression")
            + (f"; scored mapped to the full protocol: x {m.factor:.4g} (docs/model.md#transfer)"
               if (m := fidelity.transfer.get("slurry_density")) is not None else ""))


def slurry_run_spec(spec: StudyBase, fidelity: Fidelity, seed: int, neighbor: str = "bin") -> SlurryRunSpec:
    s, f = spec.slurry, fidelity
    if s.protocol == "seed":
        run = seed_protocol(s, f)
        block = run.steps // SEED_BLOCKS
        return SlurryRunSpec(
            protocol="seed", temperature_K=run.temperature_K, pressure_atm=s.pressure_atm,
            pressure_start_atm=s.pressure_start_atm, timestep_us=run.timestep_us, minimize_max_iter=f.minimize_max_iter,
            ramp_steps=run.steps, block_steps=block, sample_every=max(1, block // 10), averaging_blocks=SEED_END_BLOCKS,
            thermo_every=block * 10, tdamp_us=run.tdamp_us, pdamp_us=run.pdamp_us,
            neighbor_skin_um=s.neighbor_skin_um, neighbor_style=neighbor, lj_style=spec.lj_style, seed=seed)
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


def shear_run_spec(plan: RatePlan, spec: StudyBase, fidelity: Fidelity, params: ForceFieldParams,
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


class SlurryTrial:
    """The runs of one slurry trial and their scoring: the NPT slurry run, then (when the
    study scores the viscosity curve) one SLLOD run per shear rate, all starting from the
    slurry's ``final.restart`` and submitted together."""

    def __init__(self, workdir: Path, loaded: "StudyView", fidelity: Fidelity, params: ForceFieldParams,
                 seed: int, paired: Fidelity | None = None, band_stop: bool = False) -> None:
        self.workdir = Path(workdir)
        self.loaded = loaded
        self.spec = loaded.spec
        self.fidelity = fidelity
        self.params = params
        self.seed = seed
        self.system = slurry_system(loaded.dataset, fidelity)
        self.plans = (rate_plans(simulated_rates_per_s(loaded), self.spec.viscosity, fidelity)
                      if uses_viscosity(self.spec) else [])
        self.run_spec = slurry_run_spec(self.spec, fidelity, seed, neighbor_style(fidelity, params, self.system))
        if band_stop:
            self.run_spec = replace(self.run_spec, halt_above_g_cm3=band_threshold(loaded, fidelity))
        self.slurry: SlurryObservables | None = None
        """The trial's density: replicate 0's, or the replicates' mean (``combine_replicates``)."""
        self.replicates: list[SlurryObservables] = []
        self.shear_specs: dict[int, ShearRunSpec] = {}
        self.rates: list[RateResult] = []
        """The viscosity per shear rate, once scored."""
        self.phase = 0
        self.paired = (paired if paired is not None and self.spec.slurry.protocol == "seed"
                       and paired.compression != fidelity.compression else None)
        """A rung run on the same placements as this trial's replicates (a confirmation's
        pairing: the rung's density next to the full protocol's, placement by placement)."""
        self.paired_spec = (slurry_run_spec(self.spec, self.paired, seed, neighbor_style(self.paired, params,
                                                                                         self.system))
                            if self.paired is not None else None)
        self.paired_reps: list[SlurryObservables] = []

    @property
    def paired_dirs(self) -> list[Path]:
        return [self.workdir / f"rung_{r:02d}" for r in range(len(self.replicate_dirs))] if self.paired else []

    @property
    def replicate_dirs(self) -> list[Path]:
        """Replicate r's run folder: the trial's own for r = 0 (its state goes downstream),
        ``replicate_NN`` below it for the others."""
        n = self.fidelity.replicates if self.spec.slurry.protocol == "seed" else 1
        return [self.workdir] + [self.workdir / f"replicate_{r:02d}" for r in range(1, n)]

    def first_runs(self) -> list[Run]:
        scale = self.fidelity.initial_box_scale if self.spec.slurry.protocol == "ramp_hold" else 1.0
        box = tuple(x * scale for x in paper_scaled_box(self.system.n_beads))
        kept = (DECK_FILE, DATA_FILE, LOG_FILE, FINAL_DATA, FINAL_RESTART, DENSITY_FILE, DENSITY_STATUS)  # inputs
        # too: the run can be repeated from MLflow; replicate r: placement and velocities of seed + r
        plan = [("slurry" if r == 0 else f"slurry_{r:02d}", d, self.run_spec, r, kept,
                 None if r == 0 else f"replicate {r} ({d.name})") for r, d in enumerate(self.replicate_dirs)]
        plan += [(d.name, d, self.paired_spec, r, kept[:3] + kept[5:],  # the rung on the same placements
                  f"placement {r} at k = {self.paired.compression} ({d.name})")  # type: ignore[union-attr]
                 for r, d in enumerate(self.paired_dirs)]
        runs = []
        for name, d, spec, r, outputs, label in plan:
            d.mkdir(exist_ok=True)
            write_slurry_inputs(d, self.system, self.params, replace(spec, seed=self.seed + r), box)  # type: ignore[arg-type]
            runs.append(Run(name, d, DECK_FILE, LOG_FILE, outputs, label=label))
        self.phase = 1
        return runs

    def shear_dir(self, plan: RatePlan) -> Path:
        return self.workdir / f"shear_{plan.index:02d}"

    def next_runs(self) -> list[Run]:
        """Runs that follow the finished ones ([] when the trial is complete). Raises
        ``SimulationFailed`` when the slurry outputs are unusable."""
        if self.phase == 1:
            self.replicates = [read_slurry_observables(d, self.run_spec) for d in self.replicate_dirs]
            self.slurry = combine_replicates(self.replicates)
            self.paired_reps = [read_slurry_observables(d, self.paired_spec) for d in self.paired_dirs]  # type: ignore[arg-type]
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
                                (SHEAR_DECK, SHEAR_LOG, SHEAR_BLOCKS), label=f"shear_{plan.index:02d} ({d.name})"))
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
        errors: list[TargetError | CurveErrorResult] = []  # type: ignore[assignment]
        mapped = self.fidelity.transfer.get("slurry_density") if self.run_spec.protocol == "seed" else None
        factor = mapped.factor if mapped is not None else 1.0  # the rung's density -> the full protocol's
        rho = obs.density_g_cm3
        if obs.stopped_fraction is not None:  # stopped above the band: its end density forecast,
            b = end_forecast_exponent(self.fidelity.compression)  # replicate by replicate
            rho = float(np.mean([r.density_g_cm3 * (r.stopped_fraction ** -b if r.stopped_fraction else 1.0)
                                 for r in self.replicates]))
        if "slurry_density" in spec.objective.targets:
            errors.append(density_error(rho * factor, dataset.targets["slurry_density"],
                                        obs.density_sem_g_cm3 * factor))
        rates = self.rates = self.rate_results(wall_s or {}) if self.plans else []
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
        observables = self.partial_observables()
        observables["atom_steps_per_s"] = obs.atom_steps_per_s
        note = density_convergence_note(obs, self.run_spec)
        protocol = protocol_label(spec.slurry, self.fidelity)
        attrs: dict = {"density_converged": obs.converged, "density_convergence": note, "density_protocol": protocol}
        observables["compression"] = float(self.fidelity.compression)
        if mapped is not None:
            observables["transfer_factor"] = factor
            observables["density_transferred_g_cm3"] = obs.density_g_cm3 * factor
            attrs["density_transfer"] = {"factor": factor, "source": mapped.source}
        if len(self.replicates) > 1:
            spread = float(np.std([r.density_g_cm3 for r in self.replicates], ddof=1))
            observables["density_spread_g_cm3"] = spread
            attrs["density_replicates_g_cm3"] = [r.density_g_cm3 for r in self.replicates]
        if self.fidelity.density_bias_rel is not None and spec.slurry.protocol == "ramp_hold":
            observables["fidelity_density_bias_rel"] = self.fidelity.density_bias_rel
            attrs["fidelity_density_bias"] = (f"{self.fidelity.density_bias_rel:+.2%} "
                                              f"({self.fidelity.density_bias_source or 'source not given'})")
        for r in rates:
            key = f"shear/{rate_label(r.rate_exp_per_s)}_per_s"
            observables.update({f"{key}/viscosity_pa_s": r.viscosity_pa_s, f"{key}/sem_pa_s": r.sem_pa_s,
                                f"{key}/strain": r.strain, f"{key}/converged": float(r.converged),
                                f"{key}/steps": float(r.steps), f"{key}/wall_s": r.wall_s,
                                f"{key}/simulated_rate_per_us": r.rate_sim_per_us})
        report: dict = {"density_sem_g_cm3": obs.density_sem_g_cm3 if math.isfinite(obs.density_sem_g_cm3) else None,
                        "density_change_rel": obs.density_change_rel,
                        "density_converged": obs.converged, "density_convergence": note, "density_protocol": protocol}
        if len(self.replicates) > 1:
            report["density_replicates_g_cm3"] = attrs["density_replicates_g_cm3"]
        if self.paired_reps:  # the compression effect placement by placement, free of the placements' spread
            rung = [r.density_g_cm3 for r in self.paired_reps]
            factors = [a.density_g_cm3 / b for a, b in zip(self.replicates, rung)]
            attrs["density_paired_rung"] = report["density_paired_rung"] = {
                "compression": self.paired.compression, "densities_g_cm3": rung, "factors": factors}  # type: ignore[union-attr]
            observables["paired_factor_mean"] = float(np.mean(factors))
        lines = [f"protocol: {protocol}", f"convergence: {note}"]
        stopped = None
        if obs.stopped_fraction is not None:  # the band stopped it: its density is a lower bound
            stopped = (f"stopped at {obs.stopped_fraction:.1%} of the protocol: a density block read "
                       f"{obs.density_g_cm3:.4g} g/cm^3, above the early-stop band's {self.run_spec.halt_above_g_cm3:.4g}"
                       f" (target + {spec.slurry.early_stop_band_rel:.0%}); the end density is at least that, "
                       f"forecast {rho:.4g} (scored; END_FORECAST_EXPONENT)")
            lines.append(stopped)
            attrs["density_stopped_fraction"] = obs.stopped_fraction
            observables.update(stopped_fraction=obs.stopped_fraction, density_forecast_g_cm3=rho)
        if mapped is not None:
            report.update(density_at_rung_g_cm3=obs.density_g_cm3, transfer_factor=factor,
                          transfer_source=mapped.source)
            lines.append(f"mapped to the full protocol: {obs.density_g_cm3:.4g} x {factor:.4g} = "
                         f"{obs.density_g_cm3 * factor:.4g} g/cm^3 (factor: {mapped.source})")
        tgt = dataset.targets.get("slurry_density")
        seed = self.run_spec.protocol == "seed"
        plots: tuple[Path, ...] = guarded_plots(lambda: (plot_density_trajectory(
            self.workdir / DENSITY_PLOT, *density_trajectory(self.workdir), self.run_spec.ramp_steps,
            self.run_spec.averaging_blocks if seed else self.run_spec.window_blocks,
            tgt.value / factor if tgt else None,  # the rung's own density is drawn: its target is mapped back
            tgt.uncertainty / factor if tgt and tgt.uncertainty is not None else None,
            f"{spec.name} ({self.workdir.name}): " + (f"seed protocol, k = {self.fidelity.compression}" if seed else
                                                      f"density {'converged' if obs.converged else 'NOT converged'}")
            + (f"; target / transfer factor {factor:.4g}" if mapped is not None else ""),
            "end of the protocol (read here)" if seed else "plateau-test window"),))
        if rates:
            attrs["viscosity"] = [r.as_dict() for r in rates]
            report["viscosity_pa_s"] = [
                {"shear_rate_per_s": r.rate_exp_per_s, "simulated_rate_per_us": r.rate_sim_per_us,
                 "viscosity_pa_s": r.viscosity_pa_s, "sem_pa_s": r.sem_pa_s, "strain": r.strain, "steps": r.steps,
                 "converged": r.converged} for r in rates]
            lines += [f"viscosity at {r.rate_exp_per_s:g} 1/s: {r.viscosity_pa_s:.4g} +- {r.sem_pa_s:.2g} Pa s "
                      f"(strain {r.strain:.3g}{'' if r.converged else ', not converged'})" for r in rates]
            curve = self.loaded.curve
            plots += guarded_plots(lambda: (plot_viscosity_curve(self.workdir / CURVE_PLOT, rates, curve,
                                                                 title=f"{spec.name} ({self.workdir.name})"),))
        return Score(tuple(errors), value, observables, obs.converged, penalty, fail_reason,
                     summary=describe(obs, note, rates, factor if mapped is not None else None),
                     attrs=attrs, report=report, lines=tuple(lines), plots=plots, stopped=stopped)

    def partial_observables(self) -> dict[str, float]:
        """The slurry's observables once its run has been read (a failed shear run keeps them)."""
        if self.slurry is None:
            return {}
        return {k: float(v) for k, v in asdict(self.slurry).items() if v is not None and math.isfinite(float(v))}

    @property
    def state_file(self) -> Path | None:
        return self.workdir / FINAL_DATA


def rate_label(rate_per_s: float) -> str:
    """A shear rate as it appears in MLflow metric names (``18``, ``0.1``, ``1e06``)."""
    return f"{rate_per_s:g}".replace("+", "")


def describe(obs: SlurryObservables, note: str, rates: Sequence[RateResult], factor: float | None = None) -> str:
    """One progress line: density (mapped to the full protocol when the fidelity has a
    transfer ``factor``; and whether it converged), viscosities."""
    parts = [f"density {obs.density_g_cm3:.4f} g/cm^3" if factor is None else
             f"density {obs.density_g_cm3 * factor:.4f} g/cm^3 mapped to the full protocol "
             f"({obs.density_g_cm3:.4f} at this rung x {factor:.4g})"]
    if not obs.converged:
        parts[0] += f" (not converged: {obs.density_change_rel:+.1%} across the last window)"
    if obs.stopped_fraction is not None:
        parts[0] = (f"density >= {obs.density_g_cm3:.4f} g/cm^3 at {obs.stopped_fraction:.0%} of the protocol: "
                    "stopped above the early-stop band")
    if rates:
        parts.append("eta " + ", ".join(f"{r.viscosity_pa_s:.3g}{'' if r.converged else '*'}" for r in rates)
                     + " Pa s" + (" (* not converged)" if any(not r.converged for r in rates) else ""))
    return "; ".join(parts)


END_FORECAST_EXPONENT: dict[int, float] = {1: 0.052, 10: 0.093, 100: 0.104, 200: 0.114, 1000: 0.168}
"""b(k) of the end-density forecast rho_end = rho(f) x f^-b of a run stopped at fraction f
of the seed protocol compressed k times: the median of ln(rho_end / rho(f)) / -ln f over
f in [0.2, 0.9] and the compression bench's 200-bead runs (``bench/early_stop.py``, which
prints the fit and the forecast's error next to these values). Used only to rank the
stopped trials for the proposer (a run stopped earlier is denser), never as an answer."""


def end_forecast_exponent(k: int) -> float:
    """``END_FORECAST_EXPONENT`` at compression k: linear in log10 k between the measured
    ones, the nearest measured one outside them."""
    ks = sorted(END_FORECAST_EXPONENT)
    x = math.log10(max(k, 1))
    xs = [math.log10(v) for v in ks]
    return float(np.interp(x, xs, [END_FORECAST_EXPONENT[v] for v in ks]))


def band_threshold(loaded: "StudyView", fidelity: Fidelity) -> float | None:
    """The density (g/cm^3, at the fidelity's own protocol) above which a calibration trial
    stops (``SlurrySettings.early_stop_band_rel``): target x (1 + band), divided by the
    fidelity's transfer factor where it maps the rung to the full protocol; None without a
    band or a density target."""
    band = loaded.spec.slurry.early_stop_band_rel
    target = loaded.dataset.targets.get("slurry_density")
    if band is None or target is None or "slurry_density" not in loaded.spec.objective.targets:
        return None
    mapped = fidelity.transfer.get("slurry_density")
    return target.value * (1.0 + band) / (mapped.factor if mapped is not None else 1.0)


def combine_replicates(reps: Sequence[SlurryObservables]) -> SlurryObservables:
    """One trial's density from its replicates: the mean, with the standard error of the mean
    from their spread (one replicate: itself); run counts and costs add up."""
    if len(reps) == 1:
        return reps[0]
    rho = np.array([r.density_g_cm3 for r in reps])
    return replace(reps[0], density_g_cm3=float(rho.mean()),
                   density_sem_g_cm3=float(rho.std(ddof=1) / math.sqrt(len(rho))),
                   density_change_rel=float(np.mean([r.density_change_rel for r in reps])),
                   converged=all(r.converged for r in reps), atom_steps=sum(r.atom_steps for r in reps),
                   loop_time_s=sum(r.loop_time_s for r in reps), stopped_early=any(r.stopped_early for r in reps),
                   stopped_fraction=min((r.stopped_fraction for r in reps if r.stopped_fraction is not None),
                                        default=None))


def density_convergence_note(obs: SlurryObservables, run: SlurryRunSpec) -> str:
    """One line: how the density's plateau test came out (a seed-protocol density: that it is
    the protocol's value)."""
    if run.protocol == "seed":
        return (f"the seed protocol's value, not an equilibrium: the density rose {obs.density_change_rel:+.1%} over "
                f"the last 10 % of the run")
    if obs.converged:
        return (f"converged at step {obs.converged_step:,} (change {obs.density_change_rel:+.3%} across the last "
                f"{run.window_blocks * run.block_steps:,} steps, tolerance {run.tolerance_rel:.2%})")
    return density_not_converged(obs, run)


def density_not_converged(obs: SlurryObservables, run: SlurryRunSpec) -> str:
    return (f"density not converged after {obs.hold_steps:,} steps at the set pressure: it changed "
            f"{obs.density_change_rel:+.3%} across the last {run.window_blocks * run.block_steps:,} steps "
            f"(tolerance {run.tolerance_rel:.2%}); lengthen the fidelity's density_max_steps")


def check_protocol(loaded: "StudyView") -> None:
    """Every ladder fidelity can run the study's protocol, and every scored target that names
    the protocol it is comparable under names the study's (unless the study consents:
    ``slurry.allow_protocol_mismatch``). ``InputError`` otherwise."""
    spec, where = loaded.spec, str(loaded.path)
    for name in spec.ladder:
        problem = protocol_problem(spec.slurry, spec.fidelity_spec(name))
        if problem:
            raise InputError(where, f"fidelities.{name}.compression", problem)
        problem = transfer_problem(spec.slurry, spec.fidelity_spec(name))
        if problem:
            raise InputError(where, f"fidelities.{name}.transfer", problem)
    if spec.slurry.early_stop_band_rel is not None:
        if "slurry_density" not in spec.objective.targets:
            raise InputError(where, "slurry.early_stop_band_rel", "stops a run whose density is out of band, but "
                                                                  "this study does not score slurry_density")
        if uses_viscosity(spec):
            raise InputError(where, "slurry.early_stop_band_rel", "not with viscosity_curve: a stopped trial's "
                                                                  "shear runs would start from a slurry that did not "
                                                                  "finish its protocol")
    for t in spec.objective.targets:
        target = loaded.dataset.targets.get(t)
        theirs = getattr(target, "protocol", None)
        if theirs is not None and theirs != spec.slurry.protocol and not spec.slurry.allow_protocol_mismatch:
            raise InputError(where, "slurry.protocol",
                             f"target {t} of dataset {spec.dataset} is comparable only under protocol {theirs!r}, "
                             f"this study runs {spec.slurry.protocol!r}: use {theirs!r}, or set "
                             "slurry.allow_protocol_mismatch: true to score it anyway")


def uses_viscosity(spec: "StudyBase") -> bool:
    """The study scores the viscosity curve (so its trials run the shear rates)."""
    return "viscosity_curve" in spec.objective.targets


def simulated_rates_per_s(loaded: "StudyView") -> tuple[float, ...]:
    """Experimental-scale shear rates to simulate (1/s): the study's, else the curve's."""
    v = loaded.spec.viscosity
    if v.shear_rates_per_s is not None:
        return tuple(v.shear_rates_per_s)
    assert loaded.curve is not None
    return loaded.curve.shear_rate_per_s


SLURRY_FIDELITY_FIELDS = ("n_beads", "initial_box_scale", "equilibration_steps", "averaging_steps",
                          "density_window_steps", "density_max_steps", "neighbor_style")
SEED_PROTOCOL_FIDELITY_FIELDS = ("timestep_us", "minimize_max_iter", "n_beads", "compression", "replicates",
                                 "neighbor_style", "transfer")
SHEAR_FIDELITY_FIELDS = ("shear_block_steps", "shear_segment_blocks", "shear_max_steps")


class SlurryStage(StageBase):
    name = "slurry"
    upstream = None
    targets = ("slurry_density", "viscosity_curve")
    sections = {"slurry": SlurrySettings, "viscosity": ViscositySettings}
    column = "slurry"
    column_title = "slurry"
    pipeline_key = "slurry"
    default_study = "ssb_slurry.yaml"

    def fidelity_fields(self, spec: "StudyBase") -> tuple[str, ...]:
        density = (SEED_PROTOCOL_FIDELITY_FIELDS if spec.slurry.protocol == "seed"
                   else COMMON_FIDELITY_FIELDS + SLURRY_FIDELITY_FIELDS)
        return density + (SHEAR_FIDELITY_FIELDS + ("sample_every", "thermo_every") if uses_viscosity(spec) else ())

    def identity_sections(self, spec: "StudyBase") -> tuple[str, ...]:
        return ("slurry", "viscosity") if uses_viscosity(spec) else ("slurry",)

    def identity_extra(self, loaded: "StudyView") -> dict:
        if not uses_viscosity(loaded.spec):
            return {}
        assert loaded.curve is not None
        return {"viscosity_curve": {"shear_rate_per_s": list(loaded.curve.shear_rate_per_s),
                                    "viscosity_pa_s": list(loaded.curve.viscosity_pa_s),
                                    "uncertainty_pa_s": list(loaded.curve.uncertainty_pa_s or ())}}

    def dataset_identity(self, loaded: "StudyView") -> dict:
        used = super().dataset_identity(loaded)
        for p in used.get("system", {}).values():  # the slurry never reads the nanoporosity
            p.pop("nanoporosity", None)
        return used

    def fidelity_problem(self, loaded: "StudyView", fidelity: Fidelity) -> str | None:
        return protocol_problem(loaded.spec.slurry, fidelity)

    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView":
        """Attach the measured viscosity curve: ``options["viscosity_csv"]`` (``--viscosity-csv``),
        else the study's ``viscosity.csv``, else the dataset's ``curves.viscosity_curve``."""
        spec, where = loaded.spec, str(loaded.path)
        require_dataset_targets(loaded, [t for t in spec.objective.targets if t != "viscosity_curve"])
        check_protocol(loaded)
        csv_opt = options.get("viscosity_csv")
        if not uses_viscosity(spec):
            if csv_opt is not None:
                raise InputError("--viscosity-csv", "(option)", "the study does not score viscosity_curve "
                                                                "(add it to objective.targets)")
            return loaded
        v = spec.viscosity
        csv = Path(csv_opt) if csv_opt is not None else (loaded.path.parent / v.csv if v.csv else None)
        curve: ViscosityCurve
        if csv is not None:
            try:
                curve = load_rheometer_csv(csv, v.csv_shear_rate_unit, v.csv_viscosity_unit)
            except CurveError as exc:
                raise InputError(exc.where, f"row {exc.row}" if exc.row else "(file)", exc.message) from exc
            digest = hashlib.sha256(csv.read_bytes()).hexdigest()
            source = f"{csv.resolve()} (kind {v.csv_kind}, sha256 {digest})"
        elif "viscosity_curve" in loaded.dataset.curves:
            curve = loaded.dataset.curve("viscosity_curve")
            prov = loaded.dataset.curves["viscosity_curve"].provenance
            source = f"{loaded.dataset_path}: curves.viscosity_curve (kind {prov.kind}: {prov.source})"
        else:
            raise InputError(where, "objective.targets.viscosity_curve",
                             f"dataset {spec.dataset} has no viscosity curve: supply a rheometer CSV "
                             "(--viscosity-csv FILE or viscosity.csv in the study)")
        return loaded.model_copy(update={"curve": curve, "curve_source": source})

    def warnings(self, loaded: "StudyView") -> list[str]:
        """Shear rates that cannot converge at some fidelity of the study (too short a run)."""
        spec = loaded.spec
        if not uses_viscosity(spec):
            return []
        out = []
        for fname in spec.ladder:
            fid = spec.fidelity_spec(fname)
            for plan in rate_plans(simulated_rates_per_s(loaded), spec.viscosity, fid):
                if plan.min_segments <= plan.max_segments:
                    continue
                reach = plan.strain_per_segment(fid) * plan.max_segments
                out.append(f"shear rate {plan.rate_exp_per_s:g} 1/s (simulated {plan.rate_sim_per_us:g} 1/us) "
                           f"reaches strain {reach:.3g} at most at fidelity {fname}, too short for min_strain "
                           f"{spec.viscosity.min_strain:g} plus a window of {spec.viscosity.window_segments} "
                           "segments: it will not converge (raise viscosity.rate_scale or the fidelity's "
                           "shear_max_steps)")
        return out

    def study_attrs(self, loaded: "StudyView") -> dict[str, str]:
        return {"viscosity_curve_source": str(loaded.curve_source)} if uses_viscosity(loaded.spec) else {}

    def make_trial(self, ctx: TrialContext) -> SlurryTrial:
        return SlurryTrial(ctx.workdir, ctx.loaded, ctx.fidelity, ctx.params, ctx.seed,
                           paired=ctx.options.get("paired_rung"), band_stop=bool(ctx.options.get("band_stop")))

    def pipeline_record(self, trial, score: Score) -> dict:
        """Density, its standard error and convergence (``calib pipeline``'s ``slurry``)."""
        obs = trial.slurry
        return {"density_g_cm3": obs.density_g_cm3, "density_sem_g_cm3": obs.density_sem_g_cm3,
                "density_change_rel": obs.density_change_rel, "density_converged": obs.converged,
                "density_converged_step": obs.converged_step, "hold_steps": obs.hold_steps,
                "density_protocol": score.attrs["density_protocol"]}


STAGE = register(SlurryStage())
