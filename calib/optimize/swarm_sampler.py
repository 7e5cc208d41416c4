"""Particle swarm optimisation as an Optuna sampler (``optimizer.sampler: swarm``).

The baseline the seed's group calibrates with (public repository
``Cheviax/Manufacturing-Model-Codes``, ``LPSO-HPSO/lpso.cpp``, read for its settings): a swarm of
8; Clerc's constriction with phi1 = phi2 = 2.05, so the inertia is chi = 2 / |2 - phi -
sqrt(phi^2 - 4 phi)| = 0.7298 (phi = 4.1) and c1 = c2 = chi x 2.05 = 1.4962, not damped;
velocities clamped to 0.2 of each range and positions to the bounds; the swarm evaluated a
generation at a time.

Written here rather than taken from a library: pyswarms, the usual Python choice, runs its own
loop over a cost function and has no ask/tell interface that an Optuna study (calib's ledger:
resumable, parallel) could drive.

Particles move in the unit cube of the study's ``ParameterSpace`` (log keys in log space; the
group's bounds were linear). Trial n belongs to particle n % S; the particle continues from its
latest earlier trial that the swarm proposed (each stores its velocity, system attribute
``swarm_velocity``), so a resumed study continues the same swarm, and trials calib enqueues
(re-proposed lost trials, ``calib refine`` points) neither move a particle nor count as its own
best. Without such a trial the particle starts uniformly at random, with a random velocity
within the clamp. Its next position pulls towards its own best and the swarm's best: the best
finished trial numbered below it, enqueued ones included, confirmations
(``ledger.is_confirmation``: another protocol) not. With trials in parallel a generation can
start before the previous one has finished (asynchronous swarm), so, like Optuna's TPE, the
proposals can depend on the order in which trials finish. A component that the bounds clamp
loses its velocity (Clerc's standard swarm). The random numbers of trial n come from (seed,
n // S, n % S) alone. Single-objective studies only (calib's are).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from calib.ledger import STOPPED_ATTR, is_confirmation
from calib.study.space import ParameterSpace

PHI = 2.05
"""Clerc's phi1 = phi2 (the group's ``lpso.cpp``)."""
CHI = 2.0 / abs(2.0 - 2 * PHI - math.sqrt((2 * PHI) ** 2 - 4 * 2 * PHI))
"""Constriction factor, 0.7298: the inertia; c1 = c2 = CHI x PHI = 1.4962."""
SWARM = 8
"""Particles per generation (the group's ``nbPop``)."""
VMAX = 0.2
"""Velocity clamp, as a fraction of each key's range."""
VELOCITY_ATTR = "swarm_velocity"


class SwarmSampler(BaseSampler):
    """Particle swarm over ``space`` (module docstring), seeded by ``seed``."""

    def __init__(self, space: ParameterSpace, seed: int, swarm: int = SWARM, inertia: float = CHI,
                 c1: float = CHI * PHI, c2: float = CHI * PHI, vmax: float = VMAX) -> None:
        if swarm < 1 or not 0 < vmax <= 1:
            raise ValueError("swarm must be >= 1 and vmax in (0, 1]")
        self.space, self.seed, self.swarm = space, int(seed), int(swarm)
        self.inertia, self.c1, self.c2, self.vmax = float(inertia), float(c1), float(c2), float(vmax)
        self._fallback = RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.space.distributions())

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        if len(study.directions) != 1:
            raise ValueError("the swarm sampler needs a single-objective study")
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        x, v = self.position(study.get_trials(deepcopy=False), trial.number, sign)
        study._storage.set_trial_system_attr(trial._trial_id, VELOCITY_ATTR, [float(a) for a in v])
        return self.space.from_unit([float(a) for a in x])

    def position(self, trials: list[FrozenTrial], number: int, sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Unit-cube position and velocity of trial ``number`` given the study's ``trials``
        (``sign`` -1 for a maximised study)."""
        d = self.space.dim
        j = number % self.swarm
        rng = np.random.default_rng([self.seed, number // self.swarm, j])
        keys = set(self.space.keys)
        mine = [t for t in trials if t.number < number and t.number % self.swarm == j
                and VELOCITY_ATTR in t.system_attrs and keys <= set(t.params)]
        if not mine:
            return rng.random(d), rng.uniform(-self.vmax, self.vmax, d)
        prev = max(mine, key=lambda t: t.number)
        x_prev = np.array(self.space.to_unit(prev.params))
        v_prev = np.array(prev.system_attrs[VELOCITY_ATTR], dtype=float)

        def finished(t: FrozenTrial) -> bool:
            return (t.state == TrialState.COMPLETE and t.values is not None and math.isfinite(t.values[0])
                    and keys <= set(t.params) and not is_confirmation(t)
                    and not t.user_attrs.get(STOPPED_ATTR))  # a stopped trial's value is a forecast

        done = [t for t in trials if t.number < number and finished(t)]
        own = [t for t in mine if finished(t)]
        best_own = np.array(self.space.to_unit(min(own, key=lambda t: sign * t.values[0]).params)) if own else x_prev
        best_all = np.array(self.space.to_unit(min(done, key=lambda t: sign * t.values[0]).params)) if done else x_prev
        r1, r2 = rng.random(d), rng.random(d)
        v = self.inertia * v_prev + self.c1 * r1 * (best_own - x_prev) + self.c2 * r2 * (best_all - x_prev)
        v = np.clip(v, -self.vmax, self.vmax)
        x = x_prev + v
        clamped = (x < 0.0) | (x > 1.0)
        return np.clip(x, 0.0, 1.0), np.where(clamped, 0.0, v)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


__all__ = ["CHI", "PHI", "SWARM", "SwarmSampler", "VMAX"]
