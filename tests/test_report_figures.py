"""The axes of ``calib report``'s figures (``calib.review.figures``), read back from the
matplotlib figures they were drawn on: the convergence plot's trial axis has integer ticks
only, and the reference lines (a target, the best set at a bound) lie visibly inside the
frame, not on it."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest

from calib.review import figures as rp

INSIDE = 0.10  # a line at least a tenth of the axis span from the frame is visibly inside


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions draw (each still holds its axes after it is saved
    and closed)."""
    kept = []
    real = rp.figure

    @contextlib.contextmanager
    def keeping(*args, **kwargs):
        with real(*args, **kwargs) as (fig, axes):
            kept.append(fig)
            yield fig, axes
    monkeypatch.setattr(rp, "figure", keeping)
    return kept


def position(ax, value: float, axis: str) -> float:
    """Where ``value`` lies between the axis's limits: 0 at the low one, 1 at the high one
    (on a log axis, in its logarithm)."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    log = (ax.get_yscale() if axis == "y" else ax.get_xscale()) == "log"
    f = math.log10 if log else float
    return (f(value) - f(lo)) / (f(hi) - f(lo))


def visible_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo <= t <= hi]


@pytest.mark.parametrize("n", [2, 4, 7, 40])
def test_the_convergence_plot_ticks_whole_trial_numbers(drawn, tmp_path: Path, n: int):
    pts = [rp.TrialPoint(i, 0.2 / (i + 1), "initial design" if i < 2 else "model") for i in range(n)]
    rp.plot_convergence(tmp_path / "convergence.png", pts, "t")
    ax = drawn[-1].axes[0]
    ticks = visible_ticks(ax)
    assert len(ticks) >= 2 and all(t == int(t) for t in ticks), ticks  # 4 trials: 0.5, 1.5, ... before
    assert (tmp_path / "convergence.png").stat().st_size > 0


@pytest.mark.parametrize("target,sd", [(1.9, None), (1.9, 0.05), (3.0, None)])
def test_a_target_at_the_end_of_the_data_lies_inside_the_frame(drawn, tmp_path: Path, target, sd):
    """The smoke study's picture: every trial above the target (1.9), or below it (3.0)."""
    obs = rp.ScalarObservation("slurry_density", "g/cm^3", target, sd, 2.293, 0.01, (2.68, 2.72, 2.83))
    rp.plot_scalar_targets(tmp_path / "observables.png", [obs])
    ax = drawn[-1].axes[0]
    assert INSIDE <= position(ax, target, "y") <= 1 - INSIDE, (ax.get_ylim(), target)
    lo, hi = ax.get_ylim()
    assert lo < 2.293 < hi and lo < 2.83 < hi  # nothing drawn was cut off


def test_profile_lines_lie_inside_the_frame(drawn, tmp_path: Path):
    """A best set at the low bound of a log key (x) and a target below everything the model
    predicts (y): both lines inside, neither on the frame."""
    x = np.geomspace(0.1, 1000.0, 40)
    mid = 2.3 + 0.1 * np.log10(x)
    prof = rp.Profile("eps_CBD", True, x, 0.1,
                      (("objective", "", None, 0.04 + 0 * x, 0.03 + 0 * x, 0.05 + 0 * x),
                       ("slurry_density", "g/cm^3", 1.9, mid, mid - 0.1, mid + 0.1)))
    rp.plot_profiles(tmp_path / "profiles.png", [prof])
    obj_ax, density_ax = drawn[-1].axes[:2]
    for ax in (obj_ax, density_ax):
        assert ax.get_xscale() == "log"
        assert INSIDE <= position(ax, 0.1, "x") < 0.5, ax.get_xlim()
        assert position(ax, 1000.0, "x") <= 1.0  # the whole profile still shown
    assert INSIDE <= position(density_ax, 1.9, "y") <= 1 - INSIDE, density_ax.get_ylim()


def test_keep_inside_skips_what_an_axis_cannot_show(drawn, tmp_path: Path):
    """None, NaN and (on a log axis) 0 leave the limits alone; a value well inside too."""
    with rp.figure(tmp_path / "f.png") as (fig, ax):
        ax.plot([1.0, 10.0], [1e-3, 1e-1])
        ax.set_yscale("log")
        before = ax.get_ylim()
        rp.keep_inside(ax, "y", [None, float("nan"), 0.0, 1e-2])
        assert ax.get_ylim() == pytest.approx(before)
        rp.keep_inside(ax, "y", [1e-3])  # at the data's end: the limit moves out
        assert ax.get_ylim()[0] < before[0] and position(ax, 1e-3, "y") >= INSIDE
