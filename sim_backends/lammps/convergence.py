"""Convergence of a scalar observable's trajectory: the plateau test over a trailing window.

A trajectory is a series of block means (e.g. the slurry density every ``block_steps``).
The test looks at the last ``window`` block means: it passes when the means of the window's
two halves differ by at most ``tolerance_rel`` of the window mean, i.e. when the trend
across the window is below the tolerance. A relaxing exponential passes once it has
relaxed, a plateau with small noise passes, a linear drift never passes (once its drift
over half a window exceeds the tolerance). The same test runs inside LAMMPS
(``lammps_plateau_lines``) to stop a run early; the Python function decides ``converged``
from the written block means, so both agree on the same numbers.

The window should be long against the observable's correlation time and the tolerance wide
against its block noise: the noise of a half-window mean is roughly sd / sqrt(window / 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PlateauTest:
    """The plateau test on one trajectory.

    converged: the test passed on the last ``window`` means (False with fewer means).
    first_pass: index (0-based, of the block that closes the window) where the test first
    passed, or None. change_rel: (second-half mean - first-half mean) / window mean on the
    last window (NaN with fewer means). window_mean: mean of the last window.
    """

    converged: bool
    first_pass: int | None
    change_rel: float
    window_mean: float


def half_change(window_means: Sequence[float]) -> tuple[float, float]:
    """(second-half mean - first-half mean, window mean) of one window of even length,
    summed in the order LAMMPS sums them."""
    w = [float(x) for x in window_means]
    h = len(w) // 2
    return sum(w[h:]) / h - sum(w[:h]) / h, sum(w) / len(w)


def _passes(window_means: Sequence[float], tolerance_rel: float) -> bool:
    diff, mean = half_change(window_means)
    return abs(diff) <= tolerance_rel * abs(mean)


def plateau_test(means: Sequence[float], window: int, tolerance_rel: float, start: int = 0) -> PlateauTest:
    """Apply the plateau test to ``means`` (block means in time order). Windows may not begin
    before index ``start`` (e.g. the end of a pressure ramp). ``window`` must be even, >= 4."""
    if window < 4 or window % 2:
        raise ValueError(f"window must be even and at least 4, got {window}")
    if not tolerance_rel > 0:
        raise ValueError(f"tolerance_rel must be positive, got {tolerance_rel}")
    m = np.asarray(means, dtype=float)
    first = None
    for end in range(start + window, len(m) + 1):
        if _passes(m[end - window:end], tolerance_rel):
            first = end - 1
            break
    if len(m) - start < window:
        return PlateauTest(False, None, math.nan, float(m[start:].mean()) if len(m) > start else math.nan)
    diff, mean = half_change(m[-window:])
    return PlateauTest(_passes(m[-window:], tolerance_rel), first, diff / mean if mean else math.inf, mean)


def tail_plateau(means: Sequence[float], window: int, tolerance_rel: float) -> PlateauTest | None:
    """The plateau test over the last ``window`` block means, or over all of them (rounded
    down to an even count) when fewer were written; None when under 4 blocks exist (no test
    possible). What drying's film height and calendering's relaxation read."""
    window = min(window, len(means) // 2 * 2)
    return plateau_test(means, window, tolerance_rel) if window >= 4 else None


def lammps_plateau_lines(window: int, tolerance_rel: float, min_blocks: int, source: str) -> list[str]:
    """LAMMPS variables of the plateau test over a rotating window ``w1..wW``: after each
    block ``lammps_plateau_shift(window, source)`` shifts the window; ``v_plateau`` is 1 when
    at least ``min_blocks`` blocks were taken and the test passes."""
    h = window // 2
    ws = [f"v_w{i}" for i in range(1, window + 1)]
    return [
        *[f"variable w{i} equal 0" for i in range(1, window + 1)],
        "variable blocks_done equal 0",
        f"variable win_mean equal ({'+'.join(ws)})/{window}",
        f"variable half_a equal ({'+'.join(ws[:h])})/{h}",
        f"variable half_b equal ({'+'.join(ws[h:])})/{h}",
        f'variable plateau equal "v_blocks_done >= {min_blocks} && '
        f'abs(v_half_b - v_half_a) <= {tolerance_rel!r}*abs(v_win_mean)"',
    ]


def lammps_plateau_shift(window: int, source: str) -> list[str]:
    """Shift the rotating window by one block; the newest mean is ``source`` (a LAMMPS
    reference such as ``f_rho_blocks``) at full precision."""
    return [*[f"variable w{i} equal ${{w{i + 1}}}" for i in range(1, window)],
            f"variable w{window} equal $({source}:%.17g)"]


def blocking_sem(values: Sequence[float], min_blocks: int = 8) -> float:
    """Standard error of the mean of a correlated series by blocking (Flyvbjerg and
    Petersen, J. Chem. Phys. 91, 461 (1989)): the series is halved by pair-averaging while at
    least ``min_blocks`` remain, and the largest naive standard error over these levels is
    returned (it grows until blocks outlast the correlation time, then levels off)."""
    x = np.asarray(values, dtype=float)
    best = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    while len(x) // 2 >= min_blocks:
        x = 0.5 * (x[: len(x) // 2 * 2 : 2] + x[1 : len(x) // 2 * 2 : 2])
        best = max(best, float(x.std(ddof=1) / math.sqrt(len(x))))
    return best
