"""Errors of simulated observables against experimental targets (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .dataset import Target


@dataclass(frozen=True)
class TargetError:
    """The comparison of one observable with its target.

    simulated, target: in ``unit``. rel_error = (sim - target) / target.
    error: the scored error: (sim - target) / uncertainty where the target gives one,
    else rel_error; ``normalised_by`` says which.
    """

    name: str
    simulated: float
    target: float
    unit: str
    rel_error: float
    error: float
    normalised_by: str


def target_error(name: str, simulated: float, target: Target) -> TargetError:
    """Error of ``simulated`` (in the target's unit) against ``target``."""
    if not math.isfinite(simulated):
        raise ValueError(f"simulated {name} is not finite: {simulated}")
    rel = (simulated - target.value) / target.value
    if target.uncertainty is not None:
        err, by = (simulated - target.value) / target.uncertainty, "uncertainty"
    else:
        err, by = rel, "value"
    return TargetError(name, simulated, target.value, target.unit, rel, err, by)


def density_error(simulated_g_cm3: float, target: Target) -> TargetError:
    """Slurry density error; ``simulated_g_cm3`` and the target are in g cm^-3."""
    return target_error("slurry_density", simulated_g_cm3, target)
