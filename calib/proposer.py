"""BoTorch proposals as an Optuna sampler, so the Optuna study stays the ledger.

Method: trials 0 .. n_initial-1 take points of a scrambled Sobol sequence (seeded by the
study seed, indexed by trial number). After that a GP (BoTorch ``SingleTaskGP``, Matern-5/2
ARD, inferred noise, standardised outcome) is fitted on the unit cube to
y = -log(objective + floor) of the COMPLETE trials, and the next point maximises
``qLogNoisyExpectedImprovement`` (Ament et al., NeurIPS 2023, "Unexpected improvements to
expected improvement") with RUNNING trials as pending points, so parallel trials spread out.
Acquisition optimisation is seeded by (study seed, trial number): the same seed and the same
history give the same proposal.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from .space import ParameterSpace


def sobol_point(dim: int, index: int, seed: int) -> list[float]:
    """Point ``index`` of the scrambled Sobol sequence of dimension ``dim`` and ``seed``."""
    engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=seed)
    return engine.draw(index + 1, dtype=torch.float64)[-1].tolist()


def propose_gp(x: np.ndarray, y: np.ndarray, x_pending: np.ndarray | None, seed: int,
               num_restarts: int = 8, raw_samples: int = 256) -> list[float]:
    """Maximise qLogNEI of a GP fitted to (x, y) over [0, 1]^d; y is to be *maximised*.

    x: (n, d) unit-cube inputs; y: (n,) outcomes; x_pending: (m, d) points being evaluated.
    """
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores belong to the LAMMPS trials running meanwhile
    try:
        return _propose(x, y, x_pending, seed, num_restarts, raw_samples)
    finally:
        torch.set_num_threads(threads)


def _propose(x: np.ndarray, y: np.ndarray, x_pending: np.ndarray | None, seed: int, num_restarts: int,
             raw_samples: int) -> list[float]:
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.as_tensor(x, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
    d = X.shape[-1]
    model = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        pend = torch.as_tensor(x_pending, dtype=torch.float64) if x_pending is not None and len(x_pending) else None
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, X_pending=pend, prune_baseline=True)
        bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
        cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=num_restarts,
                                raw_samples=raw_samples, options={"seed": seed})
    return cand.squeeze(0).tolist()


class BoTorchSampler(BaseSampler):
    """Optuna sampler proposing the free Table S1 keys with Sobol, then GP + qLogNEI.

    Objective values are minimised; the GP models -log(value + ``objective_floor``).

    Reproducibility with ``lag`` = the number of trials run at once: the proposal for trial
    n uses as data the COMPLETE trials numbered <= n - lag and as pending points the trials
    numbered n - lag + 1 .. n - 1, whatever has finished meanwhile. The loop asks for trial n
    only once every trial numbered <= n - lag has finished, so the same seed gives the same
    proposals however the concurrent runs happen to interleave.

    ``value_of(trial, n)``, when given, is the value of a COMPLETE trial as seen by proposal
    n (ParEGO re-scalarises every trial with proposal n's weights); default: ``trial.value``.
    """

    def __init__(self, space: ParameterSpace, seed: int, n_initial: int = 6, num_restarts: int = 8,
                 raw_samples: int = 256, objective_floor: float = 1e-6, lag: int = 1,
                 value_of: Callable[[FrozenTrial, int], float] | None = None) -> None:
        self.lag = max(1, lag)
        self.value_of = value_of
        self.space = space
        self.seed = seed
        self.n_initial = n_initial
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.floor = objective_floor
        self._fallback = RandomSampler(seed=seed)
        self.last_proposal_s: float | None = None

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.space.distributions())

    def _has_all(self, t: FrozenTrial) -> bool:
        return all(k in t.params for k in self.space.keys)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, float]:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}
        t0 = time.perf_counter()
        trials = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and self._has_all(t)]
        # deterministic history: trials more than `lag` numbers back are data, the `lag - 1`
        # just before are pending whatever their state now (see ``BoTorchSampler``)
        horizon = trial.number - self.lag
        done = [t for t in trials if t.number <= horizon and t.state == TrialState.COMPLETE
                and t.value is not None and math.isfinite(t.value)]
        pending = [t for t in trials if t.number > horizon and t.state in (TrialState.RUNNING, TrialState.COMPLETE,
                                                                             TrialState.FAIL)]
        if trial.number < self.n_initial or len(done) < 2:
            u = sobol_point(self.space.dim, trial.number, self.seed)
        else:
            x = np.array([self.space.to_unit(t.params) for t in done])
            values = [self.value_of(t, trial.number) if self.value_of else t.value for t in done]
            y = -np.log(np.array(values) + self.floor)
            xp = np.array([self.space.to_unit(t.params) for t in pending]) if pending else None
            u = propose_gp(x, y, xp, seed=self.seed * 100_003 + trial.number,
                           num_restarts=self.num_restarts, raw_samples=self.raw_samples)
        self.last_proposal_s = time.perf_counter() - t0
        return self.space.from_unit(u)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> float:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)
