"""Plots logged with trials: the simulated viscosity curve against the measured one."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from objectives.rheology import ViscosityCurve

CURVE_PLOT = "viscosity_curve.png"


def plot_viscosity_curve(path: Path, rates: Sequence, measured: ViscosityCurve, title: str = "") -> Path:
    """Log-log plot of simulated viscosities (``RateResult``s: filled = converged, open = not,
    bars = 1 standard error) against the measured curve (experimental shear rate, 1/s; Pa s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.8), dpi=110)
    try:
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
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)
