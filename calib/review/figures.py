"""The figures of ``calib report`` (``calib.review.html_report``), each written as a PNG: convergence,
observables against targets, parameter importances, parameter positions in their bounds,
one-dimensional model profiles and the Pareto front. Plain matplotlib on the file-only
Agg backend (``calib.core.plots.figure``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from calib.core.plots import figure

LINE_PAD = 0.12
"""How far inside the frame a reference line (a target, the best set) is kept, as a share
of the axis span (of its logarithm on a log axis)."""

KIND_STYLE = {"initial design": ("tab:gray", "s"), "model": ("tab:blue", "o"), "manual": ("tab:orange", "D"),
              "re-proposed": ("tab:purple", "v"), "re-attached": ("tab:purple", "v"), "sobol": ("tab:gray", "s"),
              "random": ("tab:gray", "s")}


def keep_inside(ax, axis: str, values: Sequence[float | None], pad: float = LINE_PAD) -> None:
    """Widen ``ax``'s ``axis`` ("x" or "y") limits so that every line at one of ``values``
    lies at least ``pad`` of the span inside the frame, not on it (a target at the axis
    limit, a best set at a bound). None, non-finite values and, on a log axis, values <= 0
    are skipped. Call it after everything is drawn: it fixes the limits."""
    get, set_ = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    log = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    fwd, back = (np.log10, lambda v: 10.0 ** v) if log else ((lambda v: v), (lambda v: v))
    vals = [float(v) for v in values if v is not None and math.isfinite(v) and (not log or v > 0)]
    if not vals:
        return
    lo, hi = (fwd(v) for v in get())
    for _ in range(2):  # widening one side widens the span the other side's pad is measured on
        span = hi - lo if hi > lo else max(abs(lo), 1.0)
        lo = min(lo, *(fwd(v) - pad * span for v in vals))
        hi = max(hi, *(fwd(v) + pad * span for v in vals))
    set_(back(lo), back(hi))


def kind_family(kind: str) -> str:
    """``manual (--set ...)`` -> ``manual``; ``sobol (no model)`` -> ``sobol``."""
    return kind.split(" (")[0]


@dataclass(frozen=True)
class TrialPoint:
    """One finished trial for the convergence plot: number, objective (None: failed), how
    it was proposed."""

    number: int
    value: float | None
    kind: str


def plot_convergence(path: Path, points: Sequence[TrialPoint], title: str = "") -> Path:
    """Objective by trial number (log scale) coloured by how each trial was proposed, the
    best-so-far line, failed trials as red crosses along the top; integer ticks on the
    trial axis."""
    from matplotlib.ticker import MaxNLocator

    with figure(path, figsize=(7.0, 3.8), dpi=110) as (fig, ax):
        ok = [p for p in points if p.value is not None]
        floor = 1e-6
        for fam in dict.fromkeys(kind_family(p.kind) for p in ok):
            sel = [p for p in ok if kind_family(p.kind) == fam]
            color, marker = KIND_STYLE.get(fam, ("black", "o"))
            ax.scatter([p.number for p in sel], [max(floor, p.value) for p in sel], c=color, marker=marker, s=28,
                       label=fam, zorder=3)
        best, xs, ys = math.inf, [], []
        for p in sorted(points, key=lambda p: p.number):
            if p.value is not None:
                best = min(best, p.value)
            if math.isfinite(best):
                xs.append(p.number)
                ys.append(max(floor, best))
        if xs:
            ax.step(xs, ys, where="post", color="black", lw=1.4, label="best so far", zorder=2)
        failed = [p for p in points if p.value is None]
        if failed:
            top = max([max(floor, p.value) for p in ok], default=1.0) * 2
            ax.scatter([p.number for p in failed], [top] * len(failed), c="tab:red", marker="x", s=40,
                       label="failed", zorder=3)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers: no 0.5 ticks
        ax.set_xlabel("trial number")
        ax.set_ylabel("objective (lower is better)")
        ax.set_title(title or "convergence", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=3)
    return Path(path)


@dataclass(frozen=True)
class ScalarObservation:
    """A scalar target and the best trial's value: name, unit, target (sd: its stated
    uncertainty, None if none), simulated (sd: the simulation's standard error) and the
    values of the next best trials."""

    name: str
    unit: str
    target: float
    target_sd: float | None
    simulated: float
    simulated_sd: float | None
    others: tuple[float, ...] = ()


def plot_scalar_targets(path: Path, obs: Sequence[ScalarObservation], title: str = "") -> Path:
    """One panel per scalar target: the target (line; band = its uncertainty), the best
    trial (error bar = its standard error) and the next best trials (open circles)."""
    n = max(1, len(obs))
    with figure(path, 1, n, figsize=(3.4 * n, 3.2), dpi=110, squeeze=False,
                suptitle=title or "observables against targets") as (fig, axes):
        for ax, o in zip(axes[0], obs):
            ax.axhline(o.target, color="black", lw=1.2, label="target")
            if o.target_sd:
                ax.axhspan(o.target - o.target_sd, o.target + o.target_sd, color="black", alpha=0.12,
                           label="target +- uncertainty")
            if o.others:
                ax.plot(np.linspace(0.7, 1.3, len(o.others)), o.others, "o", mfc="none", color="tab:gray",
                        label="next best trials")
            ax.errorbar([1.0], [o.simulated], yerr=[o.simulated_sd or 0.0], fmt="o", color="tab:blue", capsize=4,
                        label="best trial +- s.e.")
            ax.set_xlim(0.4, 1.6)
            ax.set_xticks([])
            ax.set_ylabel(f"{o.name} ({o.unit})" if o.unit not in ("", "1") else o.name)
            ax.legend(fontsize=7)
            keep_inside(ax, "y", [o.target])
    return Path(path)


def plot_importances(path: Path, importances: dict[str, float], title: str = "") -> Path:
    """Horizontal bars of each free key's importance (sums to 1)."""
    keys = list(importances)[::-1]
    with figure(path, figsize=(5.5, 0.45 * len(keys) + 1.2), dpi=110) as (fig, ax):
        ax.barh(keys, [importances[k] for k in keys], color="tab:blue")
        ax.set_xlabel("importance (fANOVA share of the objective's variance)")
        ax.set_xlim(0, 1)
        ax.set_title(title or "parameter importances", fontsize=9)
    return Path(path)


def plot_positions(path: Path, keys: Sequence[str], unit_positions: np.ndarray, ranks: np.ndarray,
                   best: Sequence[float], title: str = "") -> Path:
    """Where the trials sit in each free key's range (0 = low bound, 1 = high bound, on the
    key's search scale): one row per key, trials coloured by objective rank (dark = best),
    the best trial as a star; positions within 1 % of a bound are shaded."""
    with figure(path, figsize=(6.5, 0.5 * len(keys) + 1.4), dpi=110) as (fig, ax):
        ax.axvspan(-0.05, 0.01, color="tab:red", alpha=0.10)
        ax.axvspan(0.99, 1.05, color="tab:red", alpha=0.10)
        for i, _ in enumerate(keys):
            sc = ax.scatter(unit_positions[:, i], np.full(len(unit_positions), i), c=ranks, cmap="viridis_r", s=22,
                            vmin=0, vmax=max(1, len(ranks) - 1))
            ax.scatter([best[i]], [i], marker="*", s=180, c="tab:red", edgecolors="black", zorder=3)
        ax.set_yticks(range(len(keys)), list(keys))
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("position in the bounds (0 = low, 1 = high; log keys on log scale)")
        ax.set_title(title or "parameters in their bounds (star: best trial)", fontsize=9)
        if len(unit_positions):
            fig.colorbar(sc, ax=ax, label="objective rank (0 = best)")
    return Path(path)


@dataclass(frozen=True)
class Profile:
    """The model along one free key through the best set: the key's values, and per
    output (name, unit, target) the value with its one-sd band, and the best set's value."""

    key: str
    log: bool
    values: np.ndarray
    best_value: float
    outputs: tuple[tuple[str, str, float | None, np.ndarray, np.ndarray, np.ndarray], ...]


def plot_profiles(path: Path, profiles: Sequence[Profile], title: str = "") -> Path:
    """A grid: one row per free key, one column per output; the model's value (line) and
    its one-sd band along the key, the target (dashed) and the best set (dotted)."""
    rows = max(1, len(profiles))
    cols = max(1, max((len(p.outputs) for p in profiles), default=1))
    with figure(path, rows, cols, figsize=(3.6 * cols, 2.4 * rows), dpi=100, squeeze=False,
                suptitle=title or "model profiles through the best set (band: +-1 sd; dashed: target; dotted: best)") \
            as (fig, axes):
        for r, prof in enumerate(profiles):
            for c in range(cols):
                ax = axes[r][c]
                if c >= len(prof.outputs):
                    ax.axis("off")
                    continue
                name, unit, target, mid, low, high = prof.outputs[c]
                ax.fill_between(prof.values, low, high, color="tab:blue", alpha=0.2, lw=0)
                ax.plot(prof.values, mid, color="tab:blue", lw=1.4)
                if target is not None:
                    ax.axhline(target, color="black", ls="--", lw=1)
                ax.axvline(prof.best_value, color="tab:red", ls=":", lw=1.2)
                if prof.log:
                    ax.set_xscale("log")
                if name == "objective":
                    ax.set_yscale("log")
                keep_inside(ax, "y", [target])
                keep_inside(ax, "x", [prof.best_value])  # a best set at a bound, not on the frame
                ax.set_xlabel(prof.key, fontsize=8)
                ax.set_ylabel(f"{name} ({unit})" if unit not in ("", "1") else name, fontsize=8)
                ax.tick_params(labelsize=7)
    return Path(path)


def plot_pareto(path: Path, names: Sequence[str], points: np.ndarray, front: Sequence[int],
                numbers: Sequence[int], title: str = "") -> Path:
    """|error| of every pair of objectives over the trials, the non-dominated ones joined
    and labelled with their trial numbers."""
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    with figure(path, 1, len(pairs), figsize=(4.2 * len(pairs), 3.8), dpi=110, squeeze=False,
                suptitle=title or "Pareto front") as (fig, axes):
        for ax, (i, j) in zip(axes[0], pairs):
            ax.scatter(points[:, i], points[:, j], c="tab:gray", s=18, label="trials")
            f = sorted(front, key=lambda k: points[k, i])
            ax.plot(points[f, i], points[f, j], "o-", color="tab:red", label="non-dominated")
            for k in f:
                ax.annotate(str(numbers[k]), (points[k, i], points[k, j]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax.set_xlabel(f"|{names[i]} error|")
            ax.set_ylabel(f"|{names[j]} error|")
            ax.legend(fontsize=7)
    return Path(path)


def plot_posterior(path: Path, keys: Sequence[str], samples: np.ndarray, intervals: Sequence[tuple[float, float]],
                   best: Sequence[float | None], log: Sequence[bool], title: str = "") -> Path:
    """The posterior of each free key (``calib.optimize.posterior``): a histogram of the draws in the
    study's units (log keys on a log axis), the credible interval shaded, the best trial's
    value as a red line. ``samples``: (n, keys) in the study's units."""
    n = len(keys)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    with figure(path, rows, cols, figsize=(3.3 * cols, 2.3 * rows + 0.5), dpi=110, squeeze=False,
                suptitle=title or "posterior of the free keys (shaded: credible interval; red: best trial)") \
            as (fig, axes):
        for i, key in enumerate(keys):
            ax = axes[i // cols][i % cols]
            v = samples[:, i]
            bins = np.geomspace(v.min(), v.max(), 40) if log[i] and v.min() > 0 else 40
            ax.hist(v, bins=bins, color="tab:blue", alpha=0.7)
            ax.axvspan(intervals[i][0], intervals[i][1], color="tab:blue", alpha=0.12)
            if best[i] is not None:
                ax.axvline(best[i], color="tab:red", lw=1.5)
            if log[i]:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_yticks([])
        for j in range(n, rows * cols):
            axes[j // cols][j % cols].set_visible(False)
    return Path(path)
