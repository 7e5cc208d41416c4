"""Composite (observable-level) Bayesian proposals: one GP per residual, the scalarised
discrepancy computed from their joint posterior samples.

A trial's residuals are the signed, normalised differences between simulated and measured
observables (``Score.residuals``: one per scalar target, one per shear rate of a viscosity
curve, one per calendering degree). Each residual is an affine function of one observable,
so a GP on the residual is a GP on the observable. The scalarised objective is a known
function of the residuals (``objectives.scalarise``), so it is not modelled: it is computed
on posterior samples of the residuals inside a Monte-Carlo acquisition (composite-function
BO, Astudillo and Frazier, ICML 2019, "Bayesian optimization of composite functions"). The
acquisition is ``qLogNoisyExpectedImprovement`` (Ament et al., NeurIPS 2023) on
-scalarised, with joint q-batches and pending points.

Noise: a residual whose trials all report a measured standard deviation (the density's
blocking SEM, a viscosity's SEM) is fitted with that as each observation's noise, plus a
learned homoscedastic part; otherwise its noise is inferred (``MEASURED_NOISE_NOTE``).

Failures: trials that crashed, or whose observables never converged under a penalty, form
a feasibility model: a GP on the label (0 feasible, 1 not; the "GP regression on labels"
stand-in for a GP classifier, which needs no extra library and is sampled jointly with the
residuals). It acts twice: as an outcome constraint on the posterior samples (label < 1/2,
so improvements count only where a draw is feasible), and as a smooth barrier on its
posterior *mean* (``log sigmoid((1/2 - mean) / FEASIBILITY_SHARPNESS)`` added to the log
acquisition). The barrier is what stops proposals inside a failing region: with only the
sample constraint a point whose residuals promise a large improvement is still proposed at
a 10-25 % chance of feasibility, again and again (measured on an analytic crash box:
proposals deep inside the box, 6 of 12 with the constraint alone, 16 of 16 without any).
Where no trial has failed nearby the label's mean is the study's failure fraction, so a
study where most trials fail treats unexplored regions as failing too.

All inputs are points of the unit cube; outputs here are plain lists.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from objectives.scalarise import PAREGO_RHO, SCALARISATIONS

FIT_MAXITER = 60
"""L-BFGS iterations when fitting GP hyperparameters: past about 50 the lengthscales move
by less than their own uncertainty, and each fit costs about 0.4 s at 100 trials x 12
parameters on one core (measured; BoTorch's default runs to convergence, about 2 s)."""
ACQ_MAXITER = 60
"""L-BFGS iterations per restart when maximising the acquisition (same reasoning)."""
MC_SAMPLES = 128
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
MEASURED_NOISE_NOTE = """A trial's blocking SEM is the uncertainty of *its* time average, not
of the observable at those parameters: every trial places its beads with its own seed, and at
smoke size the density of one parameter set differs by 19 % between two seeds (measured by
bench/optimizers.py) while its SEM is well under 1 %. Fixed at the SEM alone, the GP would fit
that scatter as signal, so the SEM is the floor of the noise and the rest is learned."""
NOISE_FLOOR = 1e-8
"""Smallest fixed noise variance (residual units squared): keeps the GP's Cholesky stable
when a stage reports an SEM of (nearly) zero."""


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
    trial with its label (True: completed without penalty); x_pending: (p, d) trials being
    evaluated.
    """

    x: np.ndarray
    r: np.ndarray
    r_sd: np.ndarray
    x_feas: np.ndarray
    feasible: np.ndarray
    x_pending: np.ndarray | None = None


def _fit(model) -> None:
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                     optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}})


def _gp(X: torch.Tensor, Y: torch.Tensor, yvar: torch.Tensor | None, min_lengthscale: float | None = None):
    """A fitted ``SingleTaskGP`` (BoTorch's default kernel and priors, standardised
    outcomes); Y (n, k) gives k independent outputs fitted together as one batch (each with
    its own hyperparameters); ``yvar`` (n, k): fixed noise variances, else the noise is
    inferred; ``min_lengthscale``: a floor on the ARD lengthscales."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    kw: dict = {"outcome_transform": Standardize(m=Y.shape[-1])}
    if yvar is not None:
        kw["train_Yvar"] = yvar.clamp_min(NOISE_FLOOR)
    if min_lengthscale is not None:
        from gpytorch.constraints import GreaterThan
        from gpytorch.kernels import RBFKernel
        from gpytorch.priors import LogNormalPrior

        d = X.shape[-1]
        batch = torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1 else torch.Size([])
        kw["covar_module"] = RBFKernel(  # BoTorch's default prior (dimension-scaled), with a floor
            ard_num_dims=d, batch_shape=batch, lengthscale_prior=LogNormalPrior(loc=math.sqrt(2) + math.log(d) * 0.5,
                                                                                scale=math.sqrt(3)),
            lengthscale_constraint=GreaterThan(min_lengthscale))
    model = SingleTaskGP(X, Y, **kw)
    if yvar is not None:
        # the measured variances (already standardised by the model) as a floor, plus a learned
        # homoscedastic part: see MEASURED_NOISE_NOTE
        from gpytorch.likelihoods import FixedNoiseGaussianLikelihood

        model.likelihood = FixedNoiseGaussianLikelihood(noise=model.likelihood.noise_covar.noise,
                                                        learn_additional_noise=True,
                                                        batch_shape=model._aug_batch_shape)
    _fit(model)
    return model


def build_models(data: CompositeData, use_feasibility: bool = True):
    """The residual GPs (one multi-output model: a GP per residual column; measured noise
    where every trial reports a standard deviation for that column, the others inferred),
    plus the feasibility GP last when both feasible and failed trials exist. Returns
    (model, has_feasibility); the model's outputs are the residual columns in order, then
    the feasibility label."""
    from botorch.models import ModelListGP

    X = torch.as_tensor(data.x, dtype=torch.float64)
    R = torch.as_tensor(data.r, dtype=torch.float64)
    measured = np.all(np.isfinite(data.r_sd), axis=0)
    parts = []  # (first column, model) in column order
    if measured.all():
        parts.append(_gp(X, R, torch.as_tensor(data.r_sd, dtype=torch.float64).pow(2)))
    else:
        # contiguous runs of columns with the same noise treatment, each one batched model
        j = 0
        while j < R.shape[1]:
            k = j
            while k < R.shape[1] and measured[k] == measured[j]:
                k += 1
            yvar = torch.as_tensor(data.r_sd[:, j:k], dtype=torch.float64).pow(2) if measured[j] else None
            parts.append(_gp(X, R[:, j:k], yvar))
            j = k
    has_feas = bool(use_feasibility and len(data.feasible) and data.feasible.any() and (~data.feasible).any())
    if has_feas:
        Xf = torch.as_tensor(data.x_feas, dtype=torch.float64)
        label = torch.as_tensor((~data.feasible).astype(float), dtype=torch.float64).unsqueeze(-1)
        parts.append(_gp(Xf, label, None, FEASIBILITY_MIN_LENGTHSCALE))
    return ModelListGP(*parts), has_feas


def propose_composite(data: CompositeData, layout: ResidualLayout, method: str, seed: int, q: int = 1,
                      weights: Sequence[float] | None = None, num_restarts: int = 8, raw_samples: int = 256,
                      use_feasibility: bool = True) -> list[list[float]]:
    """q points of the unit cube maximising qLogNEI of -scalarised(residuals), subject to the
    feasibility constraint when failures are known. Deterministic for a given ``seed``."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores belong to the LAMMPS trials running meanwhile
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, has_feas = build_models(data, use_feasibility)
            m = layout.n_outputs

            def obj(samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
                return -scalarise_samples(samples[..., :m], layout, method, weights)

            constraints = [lambda s: s[..., m] - 0.5] if has_feas else None
            X = torch.as_tensor(data.x, dtype=torch.float64)
            pend = (torch.as_tensor(data.x_pending, dtype=torch.float64)
                    if data.x_pending is not None and len(data.x_pending) else None)
            acq = qLogNoisyExpectedImprovement(
                model, X_baseline=X, objective=GenericMCObjective(obj), constraints=constraints,
                X_pending=pend, prune_baseline=True,
                sampler=SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed))
            if has_feas:
                acq = _FeasibleMean(acq, model.models[-1])
            d = X.shape[-1]
            bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
            cand, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=num_restarts,
                                    raw_samples=raw_samples, options={"seed": seed, "maxiter": ACQ_MAXITER})
    finally:
        torch.set_num_threads(threads)
    return cand.detach().tolist()


class _FeasibleMean(torch.nn.Module):
    """log acquisition + sum over the q points of log sigmoid((1/2 - mean label) / sharpness):
    a smooth barrier on the feasibility GP's posterior mean (see the module docstring)."""

    def __init__(self, acq, feasibility_model) -> None:
        super().__init__()
        self.acq = acq
        self.feasibility_model = feasibility_model
        self.model = acq.model
        self.X_pending = getattr(acq, "X_pending", None)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        post = self.feasibility_model.posterior(X)
        upper = post.mean.squeeze(-1) + FEASIBILITY_KAPPA * post.variance.clamp_min(0).sqrt().squeeze(-1)
        barrier = torch.nn.functional.logsigmoid((0.5 - upper) / FEASIBILITY_SHARPNESS).sum(dim=-1)
        return self.acq(X) + barrier
