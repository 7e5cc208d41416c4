"""The fitted GPs of a composite proposal: one GP per residual (BoTorch's ``SingleTaskGP``,
the residuals fitted together as one batch), the GP on the failure label
(``calib.optimize.feasibility``), and the autoregressive fidelity kernel and mean of
multi-fidelity residual GPs.

Noise: a residual whose trials all report a measured standard deviation (the density's
blocking SEM, a viscosity's SEM) is fitted with that as each observation's noise, plus a
learned homoscedastic part; otherwise its noise is inferred (``MEASURED_NOISE_NOTE``).

All inputs are points of the unit cube.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from calib.optimize.feasibility import FEASIBILITY_MIN_LENGTHSCALE
from calib.optimize.residuals import CompositeData

FIT_MAXITER = 60
"""L-BFGS iterations when fitting GP hyperparameters: past about 50 the lengthscales move
by less than their own uncertainty, and each fit costs about 0.4 s at 100 trials x 12
parameters on one core (measured; BoTorch's default runs to convergence, about 2 s)."""
MEASURED_NOISE_NOTE = """A trial's blocking SEM is the uncertainty of *its* time average, not
of the observable at those parameters: every trial places its beads with its own seed, and at
smoke size the density of one parameter set differs by 19 % between two seeds (measured by
bench/optimizers.py) while its SEM is well under 1 %. Fixed at the SEM alone, the GP would fit
that scatter as signal, so the SEM is the floor of the noise and the rest is learned."""
NOISE_FLOOR = 1e-8
"""Smallest fixed noise variance (residual units squared): keeps the GP's Cholesky stable
when a stage reports an SEM of (nearly) zero."""


@contextmanager
def one_thread() -> Iterator[None]:
    """PyTorch on one thread inside the block (the count before comes back after it). calib's
    GPs hold tens to hundreds of points, too few for threads to pay, and the machine's cores
    belong to the LAMMPS runs going on meanwhile: with LAMMPS runs on both cores,
    ``calib predict --json`` on a 14-trial study (its model and 8 held-out refits, 2 outputs)
    took 90 s with PyTorch's default threads and 25 s on one (2026-12-07, 2-core machine;
    docs/optimizer.md#predict)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(model) -> None:
    """The GP's hyperparameters by L-BFGS-B on its marginal likelihood (``FIT_MAXITER``), on
    one thread (``one_thread``)."""
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with one_thread():
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                         optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}})


def _fidelity_classes():
    """The AR(1) kernel factor and the fidelity mean, built on gpytorch's base classes."""
    from gpytorch.kernels import Kernel
    from gpytorch.means import Mean
    from gpytorch.priors import NormalPrior

    class _Scale(Kernel):
        """phi(s) phi(s') with phi(s) = 1 + beta s: the cheapest rung's process scaled into
        the target's (beta = rho - 1 of Kennedy and O'Hagan's f_T = rho f_0 + delta)."""

        has_lengthscale = False

        def __init__(self, fidelity_dim: int, batch_shape: torch.Size = torch.Size([])) -> None:
            super().__init__(batch_shape=batch_shape)
            self.fidelity_dim = fidelity_dim
            self.register_parameter("beta", torch.nn.Parameter(torch.zeros(*batch_shape, 1, 1)))
            self.register_prior("beta_prior", NormalPrior(0.0, 1.0), lambda m: m.beta, lambda m, v: m.beta.data.copy_(v))

        def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
            f = self.fidelity_dim
            a = 1.0 + self.beta * x1[..., f:f + 1]
            b = 1.0 + self.beta * x2[..., f:f + 1]
            if diag:
                return (a * b).squeeze(-1)
            return a @ b.transpose(-1, -2)

    class _Mean(Mean):
        """c + slope x s: the rungs' mean offset (the bias's constant part)."""

        def __init__(self, fidelity_dim: int, batch_shape: torch.Size = torch.Size([])) -> None:
            super().__init__()
            self.fidelity_dim = fidelity_dim
            self.register_parameter("constant", torch.nn.Parameter(torch.zeros(*batch_shape, 1)))
            self.register_parameter("slope", torch.nn.Parameter(torch.zeros(*batch_shape, 1)))

        def forward(self, x):
            return self.constant + self.slope * x[..., self.fidelity_dim]

    return _Scale, _Mean


def FidelityMean(fidelity_dim: int, batch_shape: torch.Size = torch.Size([])):
    """The mean c + slope x s over the fidelity input s (``ar1_kernel``)."""
    return _fidelity_classes()[1](fidelity_dim, batch_shape)


def ar1_kernel(dim: int, fidelity_dim: int, batch_shape: torch.Size = torch.Size([])):
    """Kennedy and O'Hagan's autoregressive multi-fidelity covariance (Biometrika 2000), on
    inputs whose column ``fidelity_dim`` is the rung's position s (0 cheapest, 1 target):

        k((x, s), (x', s')) = phi(s) phi(s') k_0(x, x') + s s' k_delta(x, x'),  phi(s) = 1 + beta s

    i.e. f_target = (1 + beta) f_0 + delta with delta independent of f_0; both k_0 and
    k_delta are Matern-5/2 ARD kernels over the parameters with BoTorch's dimension-scaled
    lengthscale prior. A bias that scales the observable (at the same parameters a smoke
    density is 0.70 of the dev one, correlation 0.89) is one number (beta) here, where a
    kernel that adds an independent bias process must learn it point by point."""
    from gpytorch.kernels import LinearKernel, MaternKernel, ScaleKernel
    from gpytorch.priors import LogNormalPrior

    d = dim - 1
    xdims = [i for i in range(dim) if i != fidelity_dim]

    def matern():
        return MaternKernel(nu=2.5, ard_num_dims=d, active_dims=xdims, batch_shape=batch_shape,
                            lengthscale_prior=LogNormalPrior(loc=math.sqrt(2) + math.log(d) * 0.5, scale=math.sqrt(3)))

    scale_cls, _ = _fidelity_classes()
    base = ScaleKernel(matern(), batch_shape=batch_shape) * scale_cls(fidelity_dim, batch_shape)
    delta = LinearKernel(active_dims=[fidelity_dim], batch_shape=batch_shape) * matern()
    return base + delta


def gp(X: torch.Tensor, Y: torch.Tensor, yvar: torch.Tensor | None, min_lengthscale: float | None = None,
        fidelity_column: int | None = None):
    """A fitted ``SingleTaskGP`` (BoTorch's default kernel and priors, standardised
    outcomes); Y (n, k) gives k independent outputs fitted together as one batch (each with
    its own hyperparameters); ``yvar`` (n, k): fixed noise variances, else the noise is
    inferred; ``min_lengthscale``: a floor on the ARD lengthscales. ``fidelity_column``: the
    input column holding the fidelity (0 cheapest .. 1 target), modelled autoregressively
    (``ar1_kernel``, ``FidelityMean``)."""
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
    elif fidelity_column is not None:
        batch = torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1 else torch.Size([])
        kw["covar_module"] = ar1_kernel(X.shape[-1], fidelity_column, batch)
        kw["mean_module"] = FidelityMean(fidelity_column, batch)
        model = SingleTaskGP(X, Y, **kw)
    else:
        model = SingleTaskGP(X, Y, **kw)
    if yvar is not None:
        # the measured variances (already standardised by the model) as a floor, plus a learned
        # homoscedastic part: see MEASURED_NOISE_NOTE
        from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
        from gpytorch.priors import LogNormalPrior

        # the learned part with the prior BoTorch gives an inferred noise (LogNormal(-4, 1))
        model.likelihood = FixedNoiseGaussianLikelihood(noise=model.likelihood.noise_covar.noise,
                                                        learn_additional_noise=True,
                                                        batch_shape=model._aug_batch_shape,
                                                        noise_prior=LogNormalPrior(loc=-4.0, scale=1.0))
    _fit(model)
    return model


@dataclass(frozen=True)
class Models:
    """The fitted models of one proposal.

    residuals: one multi-output ``SingleTaskGP``, a GP per residual column in column order
    (each with its own hyperparameters, fitted as one batch); feasibility: the GP on the
    failure label, or None when the study has no failed and feasible trials both.
    """

    residuals: object
    feasibility: object | None = None


def build_models(data: CompositeData, use_feasibility: bool = True, fidelity_column: int | None = None) -> Models:
    """The residual GPs and the feasibility GP (``Models``). Noise: where any residual column
    has a measured standard deviation for every trial, all columns take a fixed-noise
    likelihood with a learned homoscedastic part on top (``MEASURED_NOISE_NOTE``); the
    measured columns' floor is their SEM, the others' ``NOISE_FLOOR``, so their noise is the
    learned part alone; otherwise the noise is inferred. One model, not a list of models:
    BoTorch's qLogNEI then caches the baseline's Cholesky root across the acquisition's
    evaluations (``cache_root``), which a model list of a batched GP and a label GP does not
    allow (``calib.optimize.acquisition.PROPOSAL_TIME_NOTE``). ``fidelity_column``: the
    inputs' fidelity column (multi-fidelity residual GPs; the feasibility GP takes it as one
    more ARD input)."""
    X = torch.as_tensor(data.x, dtype=torch.float64)
    R = torch.as_tensor(data.r, dtype=torch.float64)
    measured = np.all(np.isfinite(data.r_sd), axis=0)
    yvar = None
    if measured.any():
        sd = np.where(measured[None, :], np.nan_to_num(data.r_sd, nan=0.0), 0.0)
        yvar = torch.as_tensor(sd, dtype=torch.float64).pow(2)
    residuals = gp(X, R, yvar, fidelity_column=fidelity_column)
    feasibility = None
    if use_feasibility and len(data.feasible) and data.feasible.any() and (~data.feasible).any():
        Xf = torch.as_tensor(data.x_feas, dtype=torch.float64)
        label = torch.as_tensor((~data.feasible).astype(float), dtype=torch.float64).unsqueeze(-1)
        feasibility = gp(Xf, label, None, FEASIBILITY_MIN_LENGTHSCALE)
    return Models(residuals, feasibility)
