"""The LAMMPS runs a slurry trial builds (seed Sec. 2.1, 3.2): the NPT slurry run's spec
(``SlurryRunSpec``) and the density (g/cm^3) above which a calibration trial's run stops,
then per shear rate its plan (experimental rate in 1/s, simulated rate in 1/us, segments)
and its SLLOD run's spec (``ShearRunSpec``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.forcefield import ForceFieldParams, pair_lines
from sim_backends.lammps.shear import ShearRunSpec
from sim_backends.lammps.slurry import FINAL_RESTART, SEED_BLOCKS, SEED_END_BLOCKS, SlurryRunSpec
from sim_backends.lammps.units import per_s_to_micro_rate

from calib.spec.fidelity import Fidelity
from calib.stages.slurry_settings import ViscositySettings, seed_protocol

if TYPE_CHECKING:
    from calib.spec.study_file import StudyBase
    from calib.stages.base import StudyView


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
