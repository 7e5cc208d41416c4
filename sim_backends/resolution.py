"""Grid convergence of a voxel observable: Richardson extrapolation over a sequence of voxel
sizes, with an error estimate and a verdict (issue 27).

A discretised value behaves as v(h) = v_0 + C h^p + ... for voxel edge h small enough (the
asymptotic range). From the three finest grids h_1 > h_2 > h_3 (any ratios) the observed
order p solves

    (v_1 - v_2) / (v_2 - v_3) = (h_1^p - h_2^p) / (h_2^p - h_3^p),

and the extrapolated value is v_0 = v_3 - (v_2 - v_3) h_3^p / (h_2^p - h_3^p) (Richardson
1911; the observed-order form of Roache, "Verification and Validation in Computational
Science and Engineering", 1998). The error estimate of v_0 is Roache's grid convergence
index with the three-grid safety factor 1.25: 1.25 |v_0 - v_3|. With four or more grids the
order is also taken from the next-coarser triplet; both must agree within a factor 2
(``ORDER_AGREEMENT``) for the sequence to count as in its asymptotic range.

Verdicts (``Extrapolation.verdict``):
- ``converging``: differences shrink monotonically with an order in ``[MIN_ORDER,
  MAX_ORDER]``, and the triplets' orders agree where there are four grids;
- ``converged``: the finest two values agree within ``exact_rel`` (no trend to extrapolate), or
  the differences alternate in sign (no order to extrapolate with) and the finest two agree
  within ``tolerance_rel``; the value is the finest grid's, the error their difference;
- ``not converging``: the differences alternate in sign, or give no order in range (differences
  that do not shrink give none); the value reported is then the finest grid's and the error the largest difference
  between the last three values (a spread, not a bound). Also when the error estimate is as
  large as the extrapolated value: a quantity proportional to the voxel (a pore size measured
  in voxels) extrapolates to about 0 and has no limit of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

MIN_ORDER, MAX_ORDER = 0.3, 6.0
"""Observed orders accepted as asymptotic (a voxel solve of smooth interfaces: about 1)."""
ORDER_AGREEMENT = 2.0
"""Two triplets' orders may differ by at most this factor."""
SAFETY = 1.25
"""Roache's safety factor of the three-grid convergence index."""


@dataclass(frozen=True)
class Extrapolation:
    """The limit of a value as the voxel edge goes to 0.

    value: the extrapolated value (the finest grid's when not converging); error: its
    estimated absolute error (module docstring); order: the observed order p (NaN when not
    found); verdict: ``converging``, ``converged`` or ``not converging``; reason: why, in words;
    finest: the finest grid's value."""

    value: float
    error: float
    order: float
    verdict: str
    reason: str
    finest: float

    @property
    def error_rel(self) -> float:
        return abs(self.error / self.value) if self.value else math.inf


def observed_order(h: Sequence[float], v: Sequence[float]) -> float | None:
    """The order p of three values ``v`` at voxel edges ``h`` (coarse to fine, h strictly
    decreasing) whose differences shrink monotonically; None when there is none in
    [``MIN_ORDER``/4, 4 ``MAX_ORDER``] (bisection on the ratio equation)."""
    (h1, h2, h3), (v1, v2, v3) = h, v
    d1, d2 = v1 - v2, v2 - v3
    if d2 == 0 or d1 * d2 <= 0:
        return None
    target = d1 / d2

    def f(p: float) -> float:
        return (h1 ** p - h2 ** p) / (h2 ** p - h3 ** p) - target

    lo, hi = MIN_ORDER / 4, 4 * MAX_ORDER
    if f(lo) * f(hi) > 0:
        return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(lo) * f(mid) <= 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def extrapolate(h: Sequence[float], v: Sequence[float], exact_rel: float = 1e-6,
                tolerance_rel: float = 0.01) -> Extrapolation:
    """Richardson extrapolation of values ``v`` at voxel edges ``h`` (at least three, any
    order; module docstring). Raises ValueError for fewer than three grids, repeated edges or
    non-finite values."""
    if len(h) != len(v) or len(h) < 3:
        raise ValueError("need a value at each of at least three voxel sizes")
    pairs = sorted(zip(map(float, h), map(float, v)), key=lambda t: -t[0])
    hs, vs = [p[0] for p in pairs], [p[1] for p in pairs]
    if any(not (x > 0) for x in hs) or len(set(hs)) != len(hs):
        raise ValueError("voxel sizes must be positive and distinct")
    if not all(math.isfinite(x) for x in vs):
        raise ValueError("values must be finite")
    h3, v3 = hs[-3:], vs[-3:]
    finest = v3[2]
    spread = max(v3) - min(v3)
    scale = max(abs(finest), 1e-300)
    if abs(v3[2] - v3[1]) <= exact_rel * scale:
        return Extrapolation(finest, abs(v3[2] - v3[1]), math.nan, "converged",
                             "the two finest grids agree", finest)
    d1, d2 = v3[0] - v3[1], v3[1] - v3[2]
    if d1 * d2 < 0:
        if abs(d2) <= tolerance_rel * scale:
            return Extrapolation(finest, abs(d2), math.nan, "converged", "the differences alternate in sign and "
                                 f"the two finest grids agree within {tolerance_rel:.0%}", finest)
        return Extrapolation(finest, spread, math.nan, "not converging", "the differences alternate in sign "
                             f"(no trend; the last three values within {spread / scale:.1%})", finest)
    p = observed_order(h3, v3)
    if p is None or not MIN_ORDER <= p <= MAX_ORDER:
        return Extrapolation(finest, spread, math.nan if p is None else p, "not converging",
                             "no order in the asymptotic range" if p is None else f"observed order {p:.2g} "
                             f"outside [{MIN_ORDER:g}, {MAX_ORDER:g}]", finest)
    value = v3[2] - (v3[1] - v3[2]) * h3[2] ** p / (h3[1] ** p - h3[2] ** p)
    error = SAFETY * abs(value - v3[2])
    if len(hs) >= 4:
        p_coarse = observed_order(hs[-4:-1], vs[-4:-1])
        if p_coarse is None or not 1 / ORDER_AGREEMENT <= p / p_coarse <= ORDER_AGREEMENT:
            return Extrapolation(finest, max(spread, error), p, "not converging",
                                 "the coarser grids are outside the asymptotic range (orders "
                                 f"{'none' if p_coarse is None else f'{p_coarse:.2g}'} and {p:.2g})", finest)
    if error >= abs(value):
        return Extrapolation(finest, max(spread, error), p, "not converging", "the estimated error is as large as "
                             f"the extrapolated value {value:.3g} (a value that scales with the voxel)", finest)
    return Extrapolation(value, error, p, "converging", f"observed order {p:.2g}", finest)
