"""Residuals: which residual columns belong to which objective, and the study's scalarisation
of residual samples (what the composite proposer learns from and optimises).

A trial's residuals are the signed, normalised differences between simulated and measured
observables (``Score.residuals``: one per scalar target, one per shear rate of a viscosity
curve, one per calendering degree). Each residual is an affine function of one observable,
so a GP on the residual is a GP on the observable. The scalarised objective is a known
function of the residuals (``objectives.scalarise``), so it is not modelled: it is computed
on posterior samples of the residuals inside a Monte-Carlo acquisition
(``calib.optimize.acquisition``).

All inputs are points of the unit cube.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from objectives.scalarise import PAREGO_RHO, SCALARISATIONS


@dataclass(frozen=True)
class ResidualLayout:
    """Which residual columns belong to which objective, and that objective's weight.

    groups: (objective name, number of residual components) in column order.
    """

    groups: tuple[tuple[str, int], ...]
    weights: tuple[float, ...]

    @property
    def n_outputs(self) -> int:
        return sum(n for _, n in self.groups)

    def slices(self) -> list[slice]:
        out, start = [], 0
        for _, n in self.groups:
            out.append(slice(start, start + n))
            start += n
        return out

    @classmethod
    def of(cls, residuals: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> "ResidualLayout":
        names = sorted(residuals)
        return cls(tuple((n, len(residuals[n])) for n in names), tuple(float(weights.get(n, 1.0)) for n in names))

    def row(self, residuals: Mapping[str, Sequence[float | None]]) -> list[float]:
        """One trial's residuals flattened in column order (None -> nan)."""
        out: list[float] = []
        for name, n in self.groups:
            vals = list(residuals.get(name, ()))
            if len(vals) != n:
                raise ValueError(f"objective {name}: {len(vals)} residuals, the layout has {n}")
            out.extend(math.nan if v is None else float(v) for v in vals)
        return out


def objective_errors(samples: torch.Tensor, layout: ResidualLayout) -> torch.Tensor:
    """Per-objective errors from residual samples (..., n_outputs) -> (..., n_objectives):
    the residual itself for a one-component objective, the root mean square otherwise
    (as ``CurveErrorResult.rms``, ``CalenderedErrorResult.error``)."""
    cols = []
    for (name, n), sl in zip(layout.groups, layout.slices()):
        r = samples[..., sl]
        cols.append(r[..., 0] if n == 1 else r.pow(2).mean(dim=-1).clamp_min(0).sqrt())
    return torch.stack(cols, dim=-1)


def scalarise_samples(samples: torch.Tensor, layout: ResidualLayout, method: str,
                      weights: Sequence[float] | None = None) -> torch.Tensor:
    """The study's scalarisation (lower is better) of residual samples: weighted_sum
    sum_i w_i e_i^2, chebyshev max_i w_i |e_i|, parego max_i w_i |e_i| + rho sum_i w_i |e_i|.
    ``weights`` override the layout's (ParEGO's per-proposal simplex weights)."""
    e = objective_errors(samples, layout)
    w = torch.as_tensor(weights if weights is not None else layout.weights, dtype=e.dtype)
    if method == "weighted_sum":
        return (w * e.pow(2)).sum(dim=-1)
    terms = w * e.abs()
    if method == "chebyshev":
        return terms.max(dim=-1).values
    if method == "parego":
        return terms.max(dim=-1).values + PAREGO_RHO * terms.sum(dim=-1)
    raise ValueError(f"unknown scalarisation {method!r}; known: {SCALARISATIONS}")


@dataclass(frozen=True)
class CompositeData:
    """What the composite proposer learns from, all on the unit cube.

    x: (n, d) trials with residuals; r: (n, m) their residuals; r_sd: (n, m) measured
    standard deviations (nan where none); x_feas: (k, d) and feasible: (k,) every finished
    trial with its label (True: completed with the least penalty,
    ``calib.optimize.botorch_sampler.feasibility_labels``); x_pending: (p, d) trials being
    evaluated.
    """

    x: np.ndarray
    r: np.ndarray
    r_sd: np.ndarray
    x_feas: np.ndarray
    feasible: np.ndarray
    x_pending: np.ndarray | None = None
