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
    error_sd: the standard deviation of ``error`` implied by the simulation's own standard
    error of the observable (same normalisation), or None where the stage reports none.
    """

    name: str
    simulated: float
    target: float
    unit: str
    rel_error: float
    error: float
    normalised_by: str
    error_sd: float | None = None

    @property
    def residuals(self) -> tuple[float, ...]:
        """The signed residual components the composite optimiser models (here: one)."""
        return (self.error,)

    @property
    def residual_sd(self) -> tuple[float | None, ...]:
        return (self.error_sd,)

    def metrics(self) -> dict[str, float]:
        """Tracking metrics, named for what they are: ``<name>_rel_error`` ((sim - target) /
        target) and, where the target states an uncertainty, the scored
        ``<name>_error_per_uncertainty`` ((sim - target) / uncertainty); without one the
        scored error is the relative error, logged once."""
        out = {f"{self.name}_rel_error": self.rel_error}
        if self.normalised_by == "uncertainty":
            out[f"{self.name}_error_per_uncertainty"] = self.error
        return out

    def as_dict(self) -> dict:
        return {"simulated": self.simulated, "target": self.target, "unit": self.unit, "rel_error": self.rel_error,
                "error": self.error, "normalised_by": self.normalised_by}

    def report(self) -> dict:
        """The study report's entry: simulated next to the target."""
        return {self.name: {"simulated": self.simulated, "target": self.target, "unit": self.unit,
                            "rel_error": self.rel_error}}

    def line(self) -> str:
        unit = "" if self.unit == "1" else f" {self.unit}"  # "1": a fraction
        return f"{self.name}: {self.simulated:.4f}{unit} vs {self.target}{unit} ({100 * self.rel_error:+.2f} %)"


def target_error(name: str, simulated: float, target: Target, sem: float | None = None) -> TargetError:
    """Error of ``simulated`` (in the target's unit) against ``target``; ``sem``: the
    simulation's standard error of ``simulated`` (same unit), if it measured one."""
    if not math.isfinite(simulated):
        raise ValueError(f"simulated {name} is not finite: {simulated}")
    rel = (simulated - target.value) / target.value
    scale = target.uncertainty if target.uncertainty is not None else target.value
    err, by = (simulated - target.value) / scale, ("uncertainty" if target.uncertainty is not None else "value")
    sd = abs(sem / scale) if sem is not None and math.isfinite(sem) and sem > 0 else None
    return TargetError(name, simulated, target.value, target.unit, rel, err, by, sd)


def density_error(simulated_g_cm3: float, target: Target, sem_g_cm3: float | None = None) -> TargetError:
    """Slurry density error; ``simulated_g_cm3``, its standard error and the target are in g cm^-3."""
    return target_error("slurry_density", simulated_g_cm3, target, sem_g_cm3)
