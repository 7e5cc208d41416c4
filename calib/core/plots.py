"""Plots logged with trials and pipelines: the simulated viscosity curve against the
measured one; porosity against calendering degree; porosity and phase profiles along z."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

from objectives.rheology import ViscosityCurve

CURVE_PLOT = "viscosity_curve.png"
DENSITY_PLOT = "density_trajectory.png"
POROSITY_PLOT = "porosity_vs_degree.png"
PROFILE_PLOT = "profiles.png"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on compute nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure(path: Path, *args, suptitle: str = "", **kwargs) -> Iterator:
    """``plt.subplots(*args, **kwargs)`` on the Agg backend, yielded as (fig, axes); on
    leaving: ``suptitle`` if given, tight layout, saved to ``path``, closed (also on error)."""
    plt = pyplot()
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        if suptitle:
            fig.suptitle(suptitle, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def plot_viscosity_curve(path: Path, rates: Sequence, measured: ViscosityCurve, title: str = "") -> Path:
    """Log-log plot of simulated viscosities (``RateResult``s: filled = converged, open = not,
    bars = 1 standard error) against the measured curve (experimental shear rate, 1/s; Pa s)."""
    with figure(path, figsize=(5.0, 3.8), dpi=110) as (fig, ax):
        ax.errorbar(measured.shear_rate_per_s, measured.viscosity_pa_s, yerr=measured.uncertainty_pa_s,
                    fmt="s-", color="black", label="measured", capsize=3)
        for conv, label, face in ((True, "simulated (converged)", "tab:blue"), (False, "simulated (not converged)", "none")):
            pts = [r for r in rates if r.converged == conv]
            if pts:
                ax.errorbar([r.rate_exp_per_s for r in pts], [r.viscosity_pa_s for r in pts],
                            yerr=[r.sem_pa_s for r in pts], fmt="o", color="tab:blue", mfc=face, label=label,
                            capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("shear rate (1/s, experimental scale)")
        ax.set_ylabel("viscosity (Pa s)")
        if title:
            ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    return Path(path)


def first_crossing(steps: Sequence[float], values: Sequence[float], level: float) -> float | None:
    """The step where ``values`` (block means ending at ``steps``) first rise past ``level``,
    interpolated linearly between blocks; None if they never do (or start above it: then
    the first block's step)."""
    prev_s, prev_v = None, None
    for st, v in zip(steps, values):
        if v > level:
            if prev_v is None:
                return float(st)
            return float(prev_s + (level - prev_v) / (v - prev_v) * (st - prev_s))
        prev_s, prev_v = st, v
    return None


def plot_density_trajectory(path: Path, steps: Sequence[float], density_g_cm3: Sequence[float], ramp_steps: int,
                            window_blocks: int, target: float | None = None, target_sd: float | None = None,
                            title: str = "", window_label: str = "plateau-test window",
                            target_label: str = "target") -> Path:
    """Block-mean slurry density (g/cm^3) against MD step: the ramp (grey), the hold, the
    plateau test's window (the last ``window_blocks`` blocks, shaded), the target (line;
    band = its stated uncertainty) and the step where the density first passes it
    (``first_crossing``; dotted line)."""
    with figure(path, figsize=(5.6, 3.6), dpi=110) as (fig, ax):
        steps, rho = list(steps), list(density_g_cm3)
        ax.plot(steps, rho, "o-", ms=3, color="tab:blue", label="block mean")
        if ramp_steps > 0:
            ax.axvspan(0, ramp_steps, color="tab:gray", alpha=0.15, label="pressure ramp")
        if len(steps) >= window_blocks > 0:
            ax.axvspan(steps[-window_blocks], steps[-1], color="tab:green", alpha=0.15, label=window_label)
        if target is not None:
            ax.axhline(target, color="black", lw=1.2, label=target_label)
            if target_sd:
                ax.axhspan(target - target_sd, target + target_sd, color="black", alpha=0.1)
            cross = first_crossing(steps, rho, target)
            if cross is not None and steps:
                ax.axvline(cross, color="tab:red", ls=":", lw=1.2,
                           label=f"passes it at step {cross:,.0f} ({cross / steps[-1]:.1%} of the run)")
        ax.set_xlabel("MD step")
        ax.set_ylabel("density (g/cm^3)")
        if title:
            ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return Path(path)


def plot_porosity_vs_degree(path: Path, degree_pct: Sequence[float], porosity: Sequence[float],
                            measured: Sequence[tuple[float, float]] = (), title: str = "",
                            errors: Sequence[float | None] | None = None) -> Path:
    """Porosity (%) against calendering degree (%), with its error bars if given (same units
    as the porosity) and measured points if any."""
    with figure(path, figsize=(4.8, 3.6), dpi=110) as (fig, ax):
        yerr = None if errors is None else [100 * (e or 0.0) for e in errors]
        ax.errorbar(list(degree_pct), [100 * p for p in porosity], yerr=yerr, fmt="o-", capsize=3, label="simulated")
        if measured:
            ax.plot([m[0] for m in measured], [100 * m[1] for m in measured], "ks", label="measured")
        ax.set_xlabel("calendering degree (%)")
        ax.set_ylabel("porosity (%)")
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title, fontsize=9)
    return Path(path)


def plot_profiles(path: Path, structures: dict, title: str = "") -> Path:
    """Porosity profiles along z of several films (label -> ``ElectrodeStructure``), and the
    phase volume-fraction profiles of the first and last (seed Fig. 3a-c)."""
    labels = list(structures)
    ends = [labels[0]] if len(labels) == 1 else [labels[0], labels[-1]]
    with figure(path, 1, 1 + len(ends), figsize=(3.8 * (1 + len(ends)), 3.6), dpi=110) as (fig, axes):
        for label in labels:
            s = structures[label]
            axes[0].plot(s.z_um, s.porosity_profile, label=label)
        axes[0].set_xlabel("z above collector (um)")
        axes[0].set_ylabel("porosity")
        axes[0].set_title(title or "porosity profile", fontsize=9)
        axes[0].legend(fontsize=7)
        for ax, label in zip(axes[1:], ends):
            s = structures[label]
            for name, arr in s.phase_profiles.items():
                ax.plot(s.z_um, arr, label=name)
            ax.set_xlabel("z above collector (um)")
            ax.set_ylabel("volume fraction")
            ax.set_title(f"phases, {label}", fontsize=9)
            ax.legend(fontsize=7)
    return Path(path)
