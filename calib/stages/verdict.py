"""A stage's convergence verdict and what the study makes of a failed one.

Every stage passes its own verdict to its score (``Score.equilibrated``): the slurry its
density plateau (or the protocol that defines it), drying the film's height plateau and its
porosity's drift past the end of the protocol,
calendering the film's relaxation after the hold, characterise its transport solves. A
failed verdict follows the stage's policy (``ConvergencePolicy``, one per settings section):
``penalty`` keeps the trial, flagged not equilibrated, and adds ``penalty`` to its
scalarised objective (0: flag only); ``fail`` makes it a FAIL trial with the verdict's
reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from calib.spec.study_file import SpecModel


class ConvergencePolicy(SpecModel):
    """not_converged: ``penalty`` (keep the trial, add ``penalty`` to its objective, flag it)
    or ``fail`` (a FAIL trial with the reason). penalty: added to the scalarised objective
    (dimensionless, as the objective)."""

    not_converged: Literal["penalty", "fail"] = "penalty"
    penalty: float = Field(default=1.0, ge=0, allow_inf_nan=False)


@dataclass(frozen=True)
class Verdict:
    """Whether a stage's observables converged, and if not, why (one reason per failed test)."""

    reasons: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return not self.reasons

    def outcome(self, policy: ConvergencePolicy) -> tuple[float, str | None]:
        """(penalty to add, FAIL reason or None) under ``policy``."""
        if self.converged:
            return 0.0, None
        if policy.not_converged == "fail":
            return 0.0, "; ".join(self.reasons)
        return policy.penalty, None

    def note(self) -> str:
        """One line for people: ``converged`` or the reasons."""
        return "converged" if self.converged else "NOT converged: " + "; ".join(self.reasons)


def verdict_of(*checks: tuple[bool, str]) -> Verdict:
    """A verdict from (passed, reason-if-not) pairs."""
    return Verdict(tuple(reason for ok, reason in checks if not ok))
