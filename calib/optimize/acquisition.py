"""Composite (observable-level) Bayesian proposals: one GP per residual, the scalarised
discrepancy computed from their joint posterior samples.

The scalarised objective is a known function of the residuals (``calib.optimize.residuals``),
so it is not modelled: it is computed on posterior samples of the residual GPs
(``calib.optimize.gp_models``) inside a Monte-Carlo acquisition (composite-function
BO, Astudillo and Frazier, ICML 2019, "Bayesian optimization of composite functions"). The
acquisition is ``qLogNoisyExpectedImprovement`` (Ament et al., NeurIPS 2023) on
-scalarised, with joint q-batches and pending points; known failures add the feasibility
barrier (``calib.optimize.feasibility``).

All inputs are points of the unit cube; outputs here are plain lists.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Sequence

import torch

from calib.optimize.feasibility import FeasibleMean
from calib.optimize.gp_models import Models, build_models, one_thread
from calib.optimize.residuals import CompositeData, ResidualLayout, scalarise_samples

ACQ_MAXITER = 60
"""L-BFGS iterations per restart when maximising the acquisition (same reasoning as
``calib.optimize.gp_models.FIT_MAXITER``)."""
MC_SAMPLES = 128


PROPOSAL_TIME_NOTE = """Proposal time at 100 trials x 12 keys, q = 4, one thread
(``bench/optimizers.py --overhead-only``, which also times three residuals and a two-rung
ladder): until 2026-12-07 the residual GPs and the feasibility GP formed one BoTorch model
list, and the label entered qLogNEI as a sample constraint as well as a barrier; three
residuals then took 2.1-3.2 s a proposal, one 0.9-1.1 s. Measured on the three-residual
case (the same fitted GPs): both as before 2.6-3.2 s; a model list of the residual GPs
without the constraint 2.1-2.2 s; the residuals as one multi-output GP, the label as the
barrier alone, 1.0-1.1 s: the model list's posterior, not the constraint, costs most. The
barrier alone keeps proposals out of a failing region as the two together did
(``tests/test_composite.py``, the crash box)."""


@contextmanager
def proposing(seed: int):
    """Seed torch, run on one thread (the cores belong to the LAMMPS trials running
    meanwhile) and silence BoTorch's numerical warnings; the thread count is restored."""
    torch.manual_seed(seed)
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def log_nei(models: Models, layout: ResidualLayout, method: str, weights: Sequence[float] | None,
             X: torch.Tensor, pend: torch.Tensor | None, seed: int):
    """qLogNEI of -scalarised(residual samples) on the residual model, plus the barrier on
    the feasibility GP (``FeasibleMean``) when failures are known."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.sampling import SobolQMCNormalSampler

    def obj(samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        return -scalarise_samples(samples, layout, method, weights)

    acq = qLogNoisyExpectedImprovement(
        models.residuals, X_baseline=X, objective=GenericMCObjective(obj), X_pending=pend, prune_baseline=True,
        cache_root=True, sampler=SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed))
    return FeasibleMean(acq, models.feasibility) if models.feasibility is not None else acq


def propose_composite(data: CompositeData, layout: ResidualLayout, method: str, seed: int, q: int = 1,
                      weights: Sequence[float] | None = None, num_restarts: int = 8, raw_samples: int = 256,
                      use_feasibility: bool = True) -> list[list[float]]:
    """q points of the unit cube maximising qLogNEI of -scalarised(residuals), subject to the
    feasibility constraint when failures are known. Deterministic for a given ``seed``."""
    from botorch.optim import optimize_acqf

    with proposing(seed):
        models = build_models(data, use_feasibility)
        X = torch.as_tensor(data.x, dtype=torch.float64)
        pend = (torch.as_tensor(data.x_pending, dtype=torch.float64)
                if data.x_pending is not None and len(data.x_pending) else None)
        acq = log_nei(models, layout, method, weights, X, pend, seed)
        d = X.shape[-1]
        bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
        cand, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=num_restarts,
                                raw_samples=raw_samples, options={"seed": seed, "maxiter": ACQ_MAXITER})
    return cand.detach().tolist()
