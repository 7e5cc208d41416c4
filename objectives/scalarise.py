"""Scalarisation of several target errors into the one value a trial is ranked by.

Every objective is a dimensionless error e_i (normalised by the experimental uncertainty,
or relative to the value). Lower is better.

- ``weighted_sum``: sum_i w_i e_i^2. With one target this is the squared error; with the
  group's three Li-ion targets and equal weights it is three times the mean of squared
  relative errors they minimised [pub-code].
- ``chebyshev``: max_i w_i |e_i| (reaches every Pareto-optimal point for some weights).
- ``parego``: augmented Chebyshev max_i w_i |e_i| + rho sum_i w_i |e_i| (rho = 0.05) with
  weights drawn uniformly from the simplex afresh for every proposal (Knowles, IEEE TEC 10
  (2006) 50, "ParEGO"); ``parego_weights`` draws them reproducibly.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import TargetError

SCALARISATIONS = ("weighted_sum", "chebyshev", "parego")
PAREGO_RHO = 0.05


def weighted_sum(errors: Sequence[TargetError], weights: Mapping[str, float] | None = None) -> float:
    """sum_i w_i e_i^2; weights default to 1 for every target."""
    weights = weights or {}
    return float(sum(weights.get(e.name, 1.0) * e.error**2 for e in errors))


def chebyshev(errors: Sequence[TargetError], weights: Mapping[str, float] | None = None) -> float:
    """max_i w_i |e_i|; weights default to 1."""
    weights = weights or {}
    return float(max(weights.get(e.name, 1.0) * abs(e.error) for e in errors))


def augmented_chebyshev(errors: Sequence[TargetError], weights: Mapping[str, float],
                        rho: float = PAREGO_RHO) -> float:
    """max_i w_i |e_i| + rho sum_i w_i |e_i| (ParEGO's scalarisation)."""
    terms = [weights.get(e.name, 0.0) * abs(e.error) for e in errors]
    return float(max(terms) + rho * sum(terms))


def parego_weights(names: Sequence[str], seed: int, index: int) -> dict[str, float]:
    """Weights uniform on the simplex (a flat Dirichlet draw) for proposal ``index``,
    reproducible from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    w = rng.dirichlet(np.ones(len(names)))
    return {n: float(x) for n, x in zip(names, w)}


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimised). A point is dominated
    when another is no worse in every objective and better in at least one."""
    pts = np.asarray(points, dtype=float)
    front = []
    for i, p in enumerate(pts):
        dominated = np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1))
        if not dominated:
            front.append(i)
    return front


def scalarise(errors: Sequence[TargetError], method: str = "weighted_sum",
              weights: Mapping[str, float] | None = None) -> float:
    """Dispatch to the named scalarisation (``parego`` needs the proposal's weights)."""
    if method == "weighted_sum":
        return weighted_sum(errors, weights)
    if method == "chebyshev":
        return chebyshev(errors, weights)
    if method == "parego":
        if not weights:
            raise ValueError("parego needs this proposal's simplex weights (see parego_weights)")
        return augmented_chebyshev(errors, weights)
    raise ValueError(f"unknown scalarisation {method!r}; known: {SCALARISATIONS}")
