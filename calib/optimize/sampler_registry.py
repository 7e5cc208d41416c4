"""The study's sampler (``optimizer.sampler``), one registration per name.

``composite`` and ``scalar`` are calib's BoTorch proposers (``calib.optimize.botorch_sampler``); ``sobol``,
``random``, ``tpe``, ``gp`` and ``cmaes`` are Optuna's own samplers and ``swarm`` the seed's
group's particle swarm (``calib.optimize.swarm_sampler``), so users can compare the Bayesian proposals with
quasi-random search, Optuna's defaults, CMA-ES (the evolution strategy users of granular models
pick, e.g. ACCES) and the swarm on their own problem.
Every sampler is seeded by the study seed. Optuna's ``TPESampler`` and ``GPSampler`` see only
the scalarised value (ParEGO's per-proposal weights do not reach them) and, with trials run
in parallel, may depend on the order in which trials finish; calib's samplers do not.
"""

from __future__ import annotations

from typing import Callable

import optuna
from optuna.trial import FrozenTrial

from calib.optimize.fidelity_ladder import FidelityLadder
from calib.optimize.botorch_sampler import BoTorchSampler
from calib.study.space import ParameterSpace
from calib.optimize.swarm_sampler import SwarmSampler
from calib.spec.study_file import SAMPLERS, StudyBase

__all__ = ["SAMPLERS", "make_sampler"]


def make_sampler(spec: StudyBase, space: ParameterSpace, seed: int, lag: int,
                 value_of: Callable[[FrozenTrial, int], float] | None = None,
                 parego_weights: Callable[[int], dict[str, float]] | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``spec.optimizer.sampler``."""
    o = spec.optimizer
    name = o.sampler
    if name in ("composite", "scalar"):
        mf = o.multi_fidelity
        ladder = (FidelityLadder(tuple(mf.ladder), tuple(mf.costs_core_s[n] for n in mf.ladder))
                  if mf is not None else None)
        return BoTorchSampler(space, seed=seed, n_initial=o.n_initial, num_restarts=o.num_restarts,
                              raw_samples=o.raw_samples, objective_floor=o.objective_floor, lag=lag,
                              value_of=value_of, mode=name, q=o.q, scalarisation=spec.objective.scalarisation,
                              weights=dict(spec.objective.targets), parego_weights=parego_weights,
                              feasibility=o.feasibility, ladder=ladder)
    if name == "sobol":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=o.n_initial)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=o.n_initial)
    if name == "cmaes":  # the search space's log keys in log space, as Optuna transforms them
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=o.n_initial)
    if name == "swarm":
        return SwarmSampler(space, seed=seed)
    raise ValueError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")
