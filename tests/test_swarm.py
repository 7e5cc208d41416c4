"""The particle swarm sampler (``calib.optimize.swarm_sampler``): the seed's group's settings, clamped
velocities, a swarm that closes in on the optimum of an analytic function, the same swarm from
the same seed, and a resumed study that continues it. Real Optuna studies, in memory."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from calib.study.space import Axis, ParameterSpace
from calib.optimize.swarm_sampler import CHI, PHI, SWARM, VELOCITY_ATTR, VMAX, SwarmSampler

SPACE = ParameterSpace((Axis("a", 0.0, 10.0, False), Axis("b", 1.0, 1000.0, True)), {})
OPT = {"a": 7.0, "b": 30.0}


def _objective(trial: optuna.Trial) -> float:
    """Squared distance from OPT in the unit cube (b in log space): 0 at the optimum."""
    p = {k: trial.suggest_float(k, d.low, d.high, log=d.log) for k, d in SPACE.distributions().items()}
    u, o = SPACE.to_unit(p), SPACE.to_unit(OPT)
    return sum((x - y) ** 2 for x, y in zip(u, o))


def _study(seed: int, storage=None, name: str = "s") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=SwarmSampler(SPACE, seed=seed), direction="minimize", storage=storage,
                               study_name=name, load_if_exists=True)


def test_the_groups_settings():
    # lpso.cpp: phi1 = phi2 = 2.05, chi = 2 / |2 - phi - sqrt(phi^2 - 4 phi)|, w = chi, c = chi phi_i, swarm of 8
    assert CHI == pytest.approx(0.72984, abs=1e-5) and CHI * PHI == pytest.approx(1.49618, abs=1e-5)
    assert SWARM == 8 and VMAX == 0.2


def test_the_swarm_closes_in_on_the_optimum_with_clamped_velocities():
    study = _study(seed=3)
    study.optimize(_objective, n_trials=SWARM * 12)
    first = min(t.value for t in study.trials[:SWARM])
    assert study.best_value < 1e-3 < first  # 12 generations: from the random start to the optimum's neighbourhood
    for t in study.trials:
        v = np.array(t.system_attrs[VELOCITY_ATTR])
        assert np.all(np.abs(v) <= VMAX + 1e-12)
        assert all(0.0 <= x <= 1.0 for x in SPACE.to_unit(t.params))


def test_the_same_seed_gives_the_same_swarm_and_another_seed_another():
    a, b, c = _study(5), _study(5), _study(6)
    for s in (a, b, c):
        s.optimize(_objective, n_trials=3 * SWARM)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_a_resumed_study_continues_the_same_swarm(tmp_path):
    whole = _study(7)
    whole.optimize(_objective, n_trials=4 * SWARM)
    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = _study(7, storage)
    first.optimize(_objective, n_trials=2 * SWARM + 3)  # stopped inside a generation
    again = _study(7, storage)  # a new process: a new sampler reading the ledger
    again.optimize(_objective, n_trials=4 * SWARM - len(again.trials))
    assert [t.params for t in again.trials] == [t.params for t in whole.trials]


def test_failed_trials_pull_nothing():
    """A particle whose every trial failed moves by inertia and the swarm's best alone."""
    study = _study(9)

    def failing(trial: optuna.Trial) -> float:
        value = _objective(trial)
        if trial.number % SWARM == 0:
            raise RuntimeError("simulation failed")
        return value

    study.optimize(failing, n_trials=3 * SWARM, catch=(RuntimeError,))
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials if t.number % SWARM == 0)
    assert math.isfinite(study.best_value)
    trials = study.get_trials(deepcopy=False)
    x, v = SwarmSampler(SPACE, seed=9).position(trials, 3 * SWARM)  # particle 0, generation 3
    prev = trials[2 * SWARM]
    x_prev, v_prev = np.array(SPACE.to_unit(prev.params)), np.array(prev.system_attrs[VELOCITY_ATTR])
    best = np.array(SPACE.to_unit(study.best_params))
    rng = np.random.default_rng([9, 3, 0])
    _, r2 = rng.random(2), rng.random(2)
    expected_v = np.clip(CHI * v_prev + CHI * PHI * r2 * (best - x_prev), -VMAX, VMAX)  # no pull to its own best
    assert v == pytest.approx(expected_v) and x == pytest.approx(np.clip(x_prev + expected_v, 0, 1))


def _by_hand(trials, n: int, seed: int, sign: float, prev_number: int) -> np.ndarray:
    """Trial n's unit position from Clerc's update written out: prev_number its particle's
    previous swarm trial, own best among that particle's swarm trials, swarm best among all."""
    j = n % SWARM
    prev = trials[prev_number]
    x, v = np.array(SPACE.to_unit(prev.params)), np.array(prev.system_attrs[VELOCITY_ATTR])
    ok = [t for t in trials[:n] if t.state == optuna.trial.TrialState.COMPLETE]
    own = [t for t in ok if t.number % SWARM == j and VELOCITY_ATTR in t.system_attrs]
    pbest = np.array(SPACE.to_unit(max(own, key=lambda t: -sign * t.value).params))
    gbest = np.array(SPACE.to_unit(max(ok, key=lambda t: -sign * t.value).params))
    rng = np.random.default_rng([seed, n // SWARM, j])
    r1, r2 = rng.random(2), rng.random(2)
    v = np.clip(0.7298437881 * v + 1.4961797657 * r1 * (pbest - x) + 1.4961797657 * r2 * (gbest - x), -0.2, 0.2)
    return np.clip(x + v, 0.0, 1.0)


def test_one_step_of_a_maximised_study_by_hand():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=SwarmSampler(SPACE, seed=11), direction="maximize")
    study.optimize(lambda t: -_objective(t), n_trials=6 * SWARM)
    trials = study.get_trials(deepcopy=False)
    pulled = 0
    for n in range(2 * SWARM, 6 * SWARM):  # generations 2-5: own bests and the swarm's best are known
        own_best = max((t for t in trials[:n] if t.number % SWARM == n % SWARM), key=lambda t: t.value)
        pulled += own_best.number != n - SWARM  # its own best is not where it stands: c1 pulls
        assert SPACE.to_unit(trials[n].params) == pytest.approx(list(_by_hand(trials, n, 11, -1.0, n - SWARM)))
    assert pulled > 0


def test_an_enqueued_trial_neither_moves_its_particle_nor_is_its_own_best():
    """calib enqueues trials (a lost trial re-proposed, a refine point): one lands in particle
    0's slot of generation 1. Particle 0 then continues from its generation-0 trial; the
    enqueued point can still be the swarm's best."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=SwarmSampler(SPACE, seed=13), direction="minimize")
    study.optimize(_objective, n_trials=SWARM)
    study.enqueue_trial(OPT)  # trial SWARM: the optimum itself, the swarm's best from then on
    study.optimize(_objective, n_trials=SWARM + 1)
    trials = study.get_trials(deepcopy=False)
    assert VELOCITY_ATTR not in trials[SWARM].system_attrs and trials[SWARM].value == pytest.approx(0.0)
    n = 2 * SWARM  # particle 0, generation 2
    assert SPACE.to_unit(trials[n].params) == pytest.approx(list(_by_hand(trials, n, 13, 1.0, 0)))
