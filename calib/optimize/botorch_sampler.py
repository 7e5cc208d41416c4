"""BoTorch proposals as an Optuna sampler, so the Optuna study stays the ledger.

Trials 0 .. n_initial-1 take points of a scrambled Sobol sequence (seeded by the study seed,
indexed by trial number). After that, in batches of ``q`` trials proposed jointly:

- ``composite`` (default): one GP per residual of the trials (``calib.optimize.acquisition``), the
  study's scalarisation computed on their posterior samples, failures as a feasibility
  constraint;
- ``scalar``: one GP (BoTorch ``SingleTaskGP``, Matern-5/2 ARD, inferred noise,
  standardised outcome) on y = -log(objective + floor) of the COMPLETE trials.

Either maximises ``qLogNoisyExpectedImprovement`` (Ament et al., NeurIPS 2023, "Unexpected
improvements to expected improvement") with the trials being run as pending points, so
parallel trials spread out. Acquisition optimisation is seeded by (study seed, first trial
of the batch): the same seed and the same history give the same proposals.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from calib.optimize import acquisition, fidelity_ladder
from calib.optimize.residuals import CompositeData, ResidualLayout
from calib.ledger import FALLBACK_ATTR, FIDELITY_ATTR, STOPPED_ATTR, is_confirmation, lost_numbers
from calib.study.space import ParameterSpace


def sobol_point(dim: int, index: int, seed: int) -> list[float]:
    """Point ``index`` of the scrambled Sobol sequence of dimension ``dim`` and ``seed``."""
    engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=seed)
    return engine.draw(index + 1, dtype=torch.float64)[-1].tolist()


def propose_gp(x: np.ndarray, y: np.ndarray, x_pending: np.ndarray | None, seed: int,
               num_restarts: int = 8, raw_samples: int = 256) -> list[float]:
    """One point maximising qLogNEI of a GP fitted to (x, y) over [0, 1]^d (y *maximised*)."""
    return propose_gp_batch(x, y, x_pending, seed, 1, num_restarts, raw_samples)[0]


def propose_gp_batch(x: np.ndarray, y: np.ndarray, x_pending: np.ndarray | None, seed: int, q: int = 1,
                     num_restarts: int = 8, raw_samples: int = 256) -> list[list[float]]:
    """q points jointly maximising qLogNEI of a GP fitted to (x, y) over [0, 1]^d; y is to
    be *maximised*.

    x: (n, d) unit-cube inputs; y: (n,) outcomes; x_pending: (m, d) points being evaluated.
    """
    from calib.optimize.gp_models import one_thread

    torch.manual_seed(seed)
    with one_thread():  # the cores belong to the LAMMPS trials running meanwhile
        return _propose(x, y, x_pending, seed, q, num_restarts, raw_samples)


def _propose(x: np.ndarray, y: np.ndarray, x_pending: np.ndarray | None, seed: int, q: int, num_restarts: int,
             raw_samples: int) -> list[list[float]]:
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
        cand, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=num_restarts,
                                raw_samples=raw_samples, options={"seed": seed})
    return cand.detach().tolist()


MODES = ("composite", "scalar")



class BoTorchSampler(BaseSampler):
    """Optuna sampler proposing the free Table S1 keys with Sobol, then q-batches of GP +
    qLogNEI (``mode``: ``composite`` or ``scalar``; see the module docstring).

    Objective values are minimised; the scalar GP models -log(value + ``objective_floor``).

    Batches: after the Sobol start, trials n_initial + k q .. n_initial + k q + q - 1 form
    batch k, proposed jointly when its first trial is asked and handed out in order.

    Reproducibility with ``lag`` = the number of trials run at once: the batch whose first
    trial is b uses as data the trials numbered <= b - lag (COMPLETE ones for the GPs, FAIL
    ones too for the feasibility model) and as pending points the trials numbered b - lag + 1
    .. b - 1, whatever has finished meanwhile. The loop asks for trial n only once every
    trial numbered <= n - lag has finished, so the same seed gives the same proposals however
    the concurrent runs happen to interleave, and a restarted driver recomputes the same batch.

    ``value_of(trial, n)``, when given, is the value of a COMPLETE trial as seen by proposal
    n (ParEGO re-scalarises every trial with proposal n's weights); default: ``trial.value``.
    ``scalarisation``, ``weights`` and ``parego_weights(n)`` define the composite objective
    (``weights``: objective name -> weight; ParEGO's per-proposal simplex weights by name).
    """

    def __init__(self, space: ParameterSpace, seed: int, n_initial: int = 6, num_restarts: int = 8,
                 raw_samples: int = 256, objective_floor: float = 1e-6, lag: int = 1,
                 value_of: Callable[[FrozenTrial, int], float] | None = None, mode: str = "scalar", q: int = 1,
                 scalarisation: str = "weighted_sum", weights: dict[str, float] | None = None,
                 parego_weights: Callable[[int], dict[str, float]] | None = None,
                 feasibility: bool = True, ladder: fidelity_ladder.FidelityLadder | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if q < 1:
            raise ValueError("q must be >= 1")
        if ladder is not None and mode != "composite":
            raise ValueError("multi-fidelity proposals need mode composite")
        self.lag = max(1, lag)
        self.value_of = value_of
        self.space = space
        self.seed = seed
        self.n_initial = n_initial
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.floor = objective_floor
        self.mode = mode
        self.q = q
        self.scalarisation = scalarisation
        self.weights = weights or {}
        self.parego_weights = parego_weights
        self.feasibility = feasibility
        self._fallback = RandomSampler(seed=seed)
        self.ladder = ladder
        self._batches: dict[int, list[list[float]]] = {}
        self._levels: dict[int, list[str]] = {}
        self._failed: dict[int, str] = {}
        """Batch start -> why the model failed to propose it (its points are Sobol's)."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.space.distributions())

    def _has_all(self, t: FrozenTrial) -> bool:
        """A trial of the calibrated objective with every free key (confirmations, run at
        another protocol, are not: ``calib.optimize.confirmation``)."""
        return all(k in t.params for k in self.space.keys) and not is_confirmation(t)

    def fidelity_of(self, number: int) -> str | None:
        """The fidelity proposed for trial ``number`` (multi-fidelity studies; None otherwise,
        or when this sampler did not propose it)."""
        if self.ladder is None:
            return None
        if number < self.n_initial:
            return self.ladder.names[0]
        b = self.batch_start(number)
        levels = self._levels.get(b)
        return levels[number - b] if levels else None

    def _fidelity_position(self, t: FrozenTrial) -> float:
        assert self.ladder is not None
        return self.ladder.position(t.user_attrs.get(FIDELITY_ATTR, self.ladder.names[-1]))

    def _unit(self, t: FrozenTrial) -> list[float]:
        """A trial's model input: its unit-cube parameters, plus its fidelity position in a
        multi-fidelity study."""
        u = self.space.to_unit(t.params)
        return u + [self._fidelity_position(t)] if self.ladder is not None else u

    def batch_start(self, number: int) -> int:
        """The first trial of the batch ``number`` belongs to (n_initial and later)."""
        return self.n_initial + (number - self.n_initial) // self.q * self.q

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, float]:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}
        n = trial.number
        if n < self.n_initial:
            u = sobol_point(self.space.dim, n, self.seed)
        else:
            b = self.batch_start(n)
            if b not in self._batches:
                trials = [t for t in study.get_trials(deepcopy=False) if t.number < b and self._has_all(t)]
                self._failed = {}
                try:
                    batch = self._propose_batch(trials, b)
                except Exception as exc:  # a GP that cannot be fitted must not stop the study
                    batch = self._fallback_batch(b)
                    self._failed = {b: f"{exc.__class__.__name__}: {str(exc)[:500]}"}
                self._batches = {b: batch}
                self._levels = {b: self._levels.get(b, [])}
            u = self._batches[b][n - b]
            if b in self._failed:  # recorded on the trial (``ledger.FALLBACK_ATTR``)
                study._storage.set_trial_user_attr(trial._trial_id, FALLBACK_ATTR, self._failed[b])
        return self.space.from_unit(u)

    def _fallback_batch(self, b: int) -> list[list[float]]:
        """The batch at ``b`` when the model cannot propose it: the Sobol points the
        sequence has at those trial numbers (the same on a resumed driver), at the cheapest
        fidelity of a ladder."""
        if self.ladder is not None:
            self._levels[b] = [self.ladder.names[0]] * self.q
        return [sobol_point(self.space.dim, b + i, self.seed) for i in range(self.q)]

    def _propose_batch(self, trials: list[FrozenTrial], b: int) -> list[list[float]]:
        """The q points of the batch starting at trial b (Sobol while data are too few)."""
        horizon = b - self.lag
        # deterministic history: trials more than `lag` numbers back are data, the `lag - 1`
        # just before are pending whatever their state now (see ``BoTorchSampler``)
        done = [t for t in trials if t.number <= horizon and t.state == TrialState.COMPLETE
                and t.value is not None and math.isfinite(t.value)]
        pending = [t for t in trials if t.number > horizon and t.state in (TrialState.RUNNING, TrialState.COMPLETE,
                                                                             TrialState.FAIL)]
        xp = np.array([self._unit(t) for t in pending]) if pending else None
        seed = self.seed * 100_003 + b
        if self.mode == "composite":
            data = self._composite_data(trials, done, horizon, xp)
            if data is not None:
                layout, cdata = data
                w = None
                if self.scalarisation == "parego" and self.parego_weights is not None:
                    pw = self.parego_weights(b)
                    w = [pw.get(name, 0.0) for name, _ in layout.groups]
                if self.ladder is not None:
                    return self._propose_multi_fidelity(trials, done, horizon, b, layout, cdata, w, seed)
                return acquisition.propose_composite(cdata, layout, self.scalarisation, seed, q=self.q, weights=w,
                                                     num_restarts=self.num_restarts, raw_samples=self.raw_samples,
                                                     use_feasibility=self.feasibility)
        elif len(done) >= 2:
            x = np.array([self.space.to_unit(t.params) for t in done])
            values = [self.value_of(t, b) if self.value_of else t.value for t in done]
            y = -np.log(np.array(values) + self.floor)
            return propose_gp_batch(x, y, xp, seed=seed, q=self.q, num_restarts=self.num_restarts,
                                    raw_samples=self.raw_samples)
        if self.ladder is not None:  # too few data: screen at the cheapest fidelity
            self._levels[b] = [self.ladder.names[0]] * self.q
        return [sobol_point(self.space.dim, b + i, self.seed) for i in range(self.q)]

    def _at_target(self, t: FrozenTrial) -> bool:
        assert self.ladder is not None
        return t.user_attrs.get(FIDELITY_ATTR, self.ladder.names[-1]) == self.ladder.names[-1]

    def _above_base(self, t: FrozenTrial) -> bool:
        """Whether t ran above the ladder's cheapest rung."""
        assert self.ladder is not None
        return t.user_attrs.get(FIDELITY_ATTR, self.ladder.names[-1]) != self.ladder.names[0]

    def _propose_multi_fidelity(self, trials: list[FrozenTrial], done: list[FrozenTrial], horizon: int, b: int,
                                layout: ResidualLayout, cdata: CompositeData,
                                w: list[float] | None, seed: int) -> list[list[float]]:
        """The batch's points, its per-trial fidelities recorded in ``_levels``."""
        assert self.ladder is not None
        # the confirm rule's bar: the target trials that completed with the least penalty
        at_target = [t for t in done if self._at_target(t) and not t.user_attrs.get(STOPPED_ATTR)]  # whole runs
        clean = [self.space.to_unit(t.params) for t, ok in zip(at_target, feasibility_labels(at_target)) if ok]
        points, levels, _ = fidelity_ladder.propose_multi_fidelity(
            cdata, layout, self.scalarisation, seed, self.ladder, q=self.q, weights=w,
            num_restarts=self.num_restarts, raw_samples=self.raw_samples, use_feasibility=self.feasibility,
            incumbent_x=clean)
        # runs above the cheapest rung so far: completed whole runs in the data (a stopped one is a
        # forecast), and those pending
        lost = lost_numbers(trials)
        have = (sum(self._above_base(t) and not t.user_attrs.get(STOPPED_ATTR) for t in done)
                + sum(self._above_base(t) for t in trials if t.number > horizon and t.number not in lost))
        levels = list(levels)
        for i in range(min(len(levels), max(0, fidelity_ladder.MIN_TRANSFER_TRIALS - have))):
            levels[i] = fidelity_ladder.transfer_rung(self.ladder)  # scale and offset need runs above the cheapest rung
        self._levels[b] = [self.ladder.names[i] for i in levels]
        return points

    def _composite_data(self, trials: list[FrozenTrial], done: list[FrozenTrial], horizon: int,
                        xp: np.ndarray | None) -> tuple[ResidualLayout, CompositeData] | None:
        """The composite proposer's data, or None while fewer than two trials have residuals."""
        with_res = [(t, residuals_of(t)) for t in done]
        with_res = [(t, r) for t, r in with_res if r is not None]
        if len(with_res) < 2:
            return None
        layout = ResidualLayout.of(with_res[-1][1][0], self.weights)
        rows, sds, xs = [], [], []
        for t, (r, sd) in with_res:
            try:
                row, sd_row = layout.row(r), layout.row(sd)
            except ValueError:  # another layout (an objective added since): not comparable
                continue
            rows.append(row)
            sds.append(sd_row)
            xs.append(self._unit(t))
        if len(rows) < 2:
            return None
        lost = lost_numbers(trials)  # driver lost: not a failure of the point
        finished = [t for t in trials if t.number <= horizon and t.number not in lost
                    and (t.state == TrialState.FAIL or (t.state == TrialState.COMPLETE and t.value is not None))]
        feasible = feasibility_labels(finished)
        x_feas = np.array([self._unit(t) for t in finished])
        return layout, CompositeData(np.array(xs), np.array(rows, dtype=float), np.array(sds, dtype=float),
                                     x_feas, feasible, xp)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> float:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def feasibility_labels(finished: list[FrozenTrial]) -> np.ndarray:
    """The feasibility model's labels: True for a COMPLETE trial whose penalty is the least
    of the completed trials' (within 1e-12), False for FAIL trials and for completed ones
    that carry more. A penalty every trial carries (at smoke and dev the density never passes
    its plateau test, so every slurry trial has one) says nothing about where to propose;
    judged against zero it would label every trial infeasible and switch the model off."""
    pen = [float(t.user_attrs.get("penalty", 0.0)) if t.state == TrialState.COMPLETE else math.inf
           for t in finished]
    least = min(pen, default=math.inf)
    return np.array([math.isfinite(p) and p <= least + 1e-12 for p in pen], dtype=bool)


def residuals_of(t: FrozenTrial) -> tuple[dict[str, list[float]], dict[str, list[float | None]]] | None:
    """A COMPLETE trial's residuals and their measured standard deviations; a trial stored
    before residuals were recorded falls back to one residual per objective (its error)."""
    r = t.user_attrs.get("residuals")
    if r:
        sd = t.user_attrs.get("residual_sd") or {k: [None] * len(v) for k, v in r.items()}
        return {k: list(v) for k, v in r.items()}, {k: list(v) for k, v in sd.items()}
    errs = t.user_attrs.get("objective_errors")
    if errs:
        return {k: [float(v)] for k, v in errs.items()}, {k: [None] for k in errs}
    return None
