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
class DegreeErrorResult:
    """An observable against calendering degree compared with measured points, and the
    scored error (``error``: RMS of ``point_errors``, each (sim - exp) / uncertainty where
    the data give one, else relative to the measured value)."""

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

    def metrics(self) -> dict[str, float]:
        """Tracking metric: the scored error, the root mean square of the point errors."""
        return {f"{self.name}_rms_point_error": self.error}

    def as_dict(self) -> dict:
        return {"error": self.error, "degree_pct": list(self.degree_pct), "simulated": list(self.simulated),
                "measured": list(self.measured), "point_errors": list(self.point_errors)}

    def report(self) -> dict:
        return {f"{self.name}_error": self.error}

    def line(self) -> str:
        pts = ", ".join(f"{d:g} %: {s:.4g} vs {m:.4g}" for d, s, m in zip(self.degree_pct, self.simulated, self.measured))
        return f"{self.name}: {pts} (rms error {self.error:.3g})"


CalenderedErrorResult = DegreeErrorResult
"""The calendered-porosity comparison (a ``DegreeErrorResult``)."""


def degree_error(name: str, degree_pct: Sequence[float], simulated: Sequence[float],
                 measured: Sequence[tuple[float, float, float | None]]) -> DegreeErrorResult:
    """Compare simulated values at ``degree_pct`` with every measured point (degree %,
    value, 1-sigma uncertainty or None); each measured degree must have been simulated."""
    sim = {round(float(d), 9): float(v) for d, v in zip(degree_pct, simulated)}
    errs, sims, meas, degs = [], [], [], []
    for degree, value, unc in measured:
        key = round(degree, 9)
        if key not in sim:
            raise ValueError(f"no simulated {name} at the measured degree {degree:g} %")
        s = sim[key]
        if not math.isfinite(s):
            raise ValueError(f"simulated {name} at {degree:g} % is not finite")
        errs.append((s - value) / unc if unc else (s - value) / value)
        sims.append(s)
        meas.append(value)
        degs.append(degree)
    return DegreeErrorResult(tuple(degs), tuple(sims), tuple(meas), tuple(errs), name)


def calendered_porosity_error(degree_pct: Sequence[float], simulated: Sequence[float],
                              measured: CalenderedPorosity) -> DegreeErrorResult:
    """Compare simulated porosities at ``degree_pct`` with every measured point (each
    measured degree must have been simulated)."""
    return degree_error("calendered_porosity", degree_pct, simulated,
                        [(p.degree_pct, p.porosity, p.uncertainty) for p in measured.points])
