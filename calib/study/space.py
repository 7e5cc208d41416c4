"""Parameter space: free Table S1 keys <-> the unit cube the GP works on.

Axis i of the cube is the i-th free key in Table S1 order; a ``log`` key maps
log(value) linearly onto [0, 1], others map value linearly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna.distributions import FloatDistribution

from sim_backends.lammps.forcefield import NAMED_PARAMETER_SETS, ForceFieldParams

from calib.spec.study_file import ParametersSpec


@dataclass(frozen=True)
class Axis:
    key: str
    low: float
    high: float
    log: bool

    def to_unit(self, value: float) -> float:
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return min(self.high, max(self.low, value))  # rounding must not leave the bounds


@dataclass(frozen=True)
class ParameterSpace:
    """Free axes plus the fixed values of every other Table S1 key."""

    axes: tuple[Axis, ...]
    fixed: dict[str, float]

    @classmethod
    def from_spec(cls, spec: ParametersSpec) -> "ParameterSpace":
        base = NAMED_PARAMETER_SETS[spec.base].as_dict()
        axes = tuple(Axis(k, spec.free[k].low, spec.free[k].high, spec.free[k].log) for k in spec.ordered_free())
        fixed = {k: float(v) for k, v in {**base, **spec.fixed}.items() if k not in spec.free}
        return cls(axes, fixed)

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.axes)

    def distributions(self) -> dict[str, FloatDistribution]:
        """Optuna distributions of the free keys (the ledger's record of the space)."""
        return {a.key: FloatDistribution(a.low, a.high, log=a.log) for a in self.axes}

    def to_unit(self, params: dict[str, float]) -> list[float]:
        return [a.to_unit(params[a.key]) for a in self.axes]

    def from_unit(self, u: list[float]) -> dict[str, float]:
        return {a.key: a.from_unit(x) for a, x in zip(self.axes, u)}

    def full_params(self, free: dict[str, float]) -> ForceFieldParams:
        """All twelve Table S1 values: the free ones given, the rest fixed."""
        return ForceFieldParams.from_mapping({**self.fixed, **{k: free[k] for k in self.keys}})
