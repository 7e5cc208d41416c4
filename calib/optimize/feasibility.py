"""The feasibility barrier of composite proposals: what keeps proposals out of a failing
region.

Failures: trials that crashed, or whose observables never converged under a penalty, form
a feasibility model: a GP on the label (0 feasible, 1 not; the "GP regression on labels"
stand-in for a GP classifier, which needs no extra library; fitted by
``calib.optimize.gp_models.build_models``). It acts as a smooth barrier on
its posterior mean + 1 sd (``log sigmoid((1/2 - upper) / FEASIBILITY_SHARPNESS)`` added to
the log acquisition): a point counts as failing unless the model is fairly sure it does not.
The barrier is what stops proposals inside a failing region: with the label as a sample
constraint on qLogNEI alone, a point whose residuals promise a large improvement is still
proposed at a 10-25 % chance of feasibility, again and again (measured on an analytic crash
box: proposals deep inside the box, 6 of 12 with the constraint alone, 16 of 16 without any
model; with the barrier 2 of 16). Until 2026-12-07 the label also entered qLogNEI as that
sample constraint, which kept the residual and label GPs in one model list and cost most of
a proposal's time (``calib.optimize.acquisition.PROPOSAL_TIME_NOTE``); the barrier alone
keeps the crash box's count.
Where no trial has failed nearby the label's mean is the study's failure fraction, so a
study where most trials fail treats unexplored regions as failing too.
"""

from __future__ import annotations

import torch

FEASIBILITY_KAPPA = 1.0
"""The barrier acts on mean + KAPPA x sd of the label: a point counts as failing unless the
model is fairly sure it does not."""
FEASIBILITY_SHARPNESS = 0.05
"""Width of the barrier on the feasibility label's posterior mean (label units)."""
FEASIBILITY_MIN_LENGTHSCALE = 0.1
"""Shortest lengthscale (unit cube) of the feasibility GP. Labels are a step function, and
left free the marginal likelihood collapses the lengthscales onto the data (measured: 0.025,
the default floor), after which the GP says nothing between the trials and proposals walk
back into a region that has failed ten times; 0.1 makes each failure speak for its
neighbourhood, the premise that failing regions are regions, not points."""


class FeasibleMean(torch.nn.Module):
    """log acquisition + sum over the q points of log sigmoid((1/2 - mean label) / sharpness):
    a smooth barrier on the feasibility GP's posterior mean (see the module docstring)."""

    def __init__(self, acq, feasibility_model) -> None:
        super().__init__()
        self.acq = acq
        self.feasibility_model = feasibility_model
        self.model = acq.model
        self.X_pending = getattr(acq, "X_pending", None)

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        """Pending points go to the wrapped acquisition (sequential q-batch optimisation)."""
        self.acq.set_X_pending(X_pending)
        self.X_pending = self.acq.X_pending

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        post = self.feasibility_model.posterior(X)
        upper = post.mean.squeeze(-1) + FEASIBILITY_KAPPA * post.variance.clamp_min(0).sqrt().squeeze(-1)
        barrier = torch.nn.functional.logsigmoid((0.5 - upper) / FEASIBILITY_SHARPNESS).sum(dim=-1)
        return self.acq(X) + barrier
