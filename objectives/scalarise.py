"""Scalarisation of several target errors into the one value a trial is ranked by.

``weighted_sum``: sum_i w_i e_i^2 over the scored errors e_i (dimensionless: normalised by
the experimental uncertainty or relative to the value). With one target this is the
squared error; with the group's three Li-ion targets and equal weights it is three times
the mean of squared relative errors they minimised [pub-code]. Lower is better.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .errors import TargetError

SCALARISATIONS = ("weighted_sum",)


def weighted_sum(errors: Sequence[TargetError], weights: Mapping[str, float] | None = None) -> float:
    """sum_i w_i e_i^2; weights default to 1 for every target."""
    weights = weights or {}
    return float(sum(weights.get(e.name, 1.0) * e.error**2 for e in errors))


def scalarise(errors: Sequence[TargetError], method: str = "weighted_sum",
              weights: Mapping[str, float] | None = None) -> float:
    """Dispatch to the named scalarisation."""
    if method == "weighted_sum":
        return weighted_sum(errors, weights)
    raise ValueError(f"unknown scalarisation {method!r}; known: {SCALARISATIONS}")
