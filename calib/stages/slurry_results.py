"""What a slurry trial's runs come to: the viscosity per shear rate (``RateResult``, in
Pa s), the trial's density from its replicates (g/cm^3), the end-density forecast of a run
the early-stop band stopped (``END_FORECAST_EXPONENT``, ``bench/early_stop.py``), and the
lines that report them (density convergence, progress, MLflow rate labels).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from sim_backends.lammps.slurry import SlurryObservables, SlurryRunSpec


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
            f"(tolerance {run.tolerance_rel:.2%})" + (
                "; in this model the density does not level off at 1 atm within any affordable run "
                "(docs/model.md#slurry-protocol): use slurry.protocol: seed, whose end defines the density"
                if run.pressure_atm <= 1.0 else "; lengthen the fidelity's density_max_steps"))
