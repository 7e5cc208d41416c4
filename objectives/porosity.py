"""Porosity objectives of the dried and calendered electrode (pure functions).

- ``dried_porosity``: one target (volume fraction), scored like any target
  (``objectives.errors.target_error``).
- ``calendered_porosity``: the porosity at each measured calendering degree; the error is
  the root mean square of the per-degree errors, each (sim - exp) / uncertainty where the
  dataset gives one, else relative to the measured value. The simulated degrees are the
  measured ones, so nothing is interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .dataset import CalenderedPorosity, Target
from .errors import TargetError, target_error


def dried_porosity_error(simulated: float, target: Target) -> TargetError:
    """Dried porosity error; ``simulated`` and the target are volume fractions (0..1)."""
    return target_error("dried_porosity", simulated, target)


@dataclass(frozen=True)
class CalenderedErrorResult:
    """Per-degree comparison and the scored error (``error``: RMS of ``point_errors``)."""

    degree_pct: tuple[float, ...]
    simulated: tuple[float, ...]
    measured: tuple[float, ...]
    point_errors: tuple[float, ...]
    name: str = "calendered_porosity"

    @property
    def error(self) -> float:
        return math.sqrt(sum(e * e for e in self.point_errors) / len(self.point_errors))

    @property
    def residuals(self) -> tuple[float, ...]:
        """The signed residual components the composite optimiser models: one per degree."""
        return self.point_errors

    @property
    def residual_sd(self) -> tuple[float | None, ...]:
        return (None,) * len(self.point_errors)


def calendered_porosity_error(degree_pct: Sequence[float], simulated: Sequence[float],
                              measured: CalenderedPorosity) -> CalenderedErrorResult:
    """Compare simulated porosities at ``degree_pct`` with every measured point (each
    measured degree must have been simulated)."""
    sim = {round(float(d), 9): float(v) for d, v in zip(degree_pct, simulated)}
    errs, sims, meas, degs = [], [], [], []
    for p in measured.points:
        key = round(p.degree_pct, 9)
        if key not in sim:
            raise ValueError(f"no simulated porosity at the measured degree {p.degree_pct:g} %")
        s = sim[key]
        if not math.isfinite(s):
            raise ValueError(f"simulated porosity at {p.degree_pct:g} % is not finite")
        errs.append((s - p.porosity) / p.uncertainty if p.uncertainty else (s - p.porosity) / p.porosity)
        sims.append(s)
        meas.append(p.porosity)
        degs.append(p.degree_pct)
    return CalenderedErrorResult(tuple(degs), tuple(sims), tuple(meas), tuple(errs))
