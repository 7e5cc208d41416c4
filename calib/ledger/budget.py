"""The trial budget: which trials count against it, whichever driver runs them (lost trials
and transfer confirmations do not), and whether a trial is within it."""

from __future__ import annotations

from typing import Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from calib.ledger.labels import CONFIRM_ATTR, REPROPOSED_ATTR


def lost_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the lost trials: FAIL trials whose driver stopped or died while they ran
    (``calib_lost``, or re-proposed by a later trial). They do not count against the budget."""
    trials = list(trials)
    reproposed = {t.user_attrs[REPROPOSED_ATTR] for t in trials if REPROPOSED_ATTR in t.user_attrs}
    return {t.number for t in trials if t.state == TrialState.FAIL
            and (t.user_attrs.get("calib_lost") or t.number in reproposed)}


def is_confirmation(t: FrozenTrial) -> bool:
    """A transfer confirmation (``calib.optimize.confirmation``): outside the budget and the answer."""
    return t.user_attrs.get(CONFIRM_ATTR) is not None


def budget_count(study: optuna.Study) -> int:
    """Trials that count against the budget, whichever driver runs them: COMPLETE, FAIL
    unless lost, and RUNNING; confirmations do not count."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    return sum(1 for t in trials if not is_confirmation(t) and (t.state in (TrialState.COMPLETE, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and t.number not in lost)))


def finished_count(study: optuna.Study) -> int:
    """Trials that have finished and count against the budget: COMPLETE, and FAIL unless
    lost; confirmations do not count."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    return sum(1 for t in trials if not is_confirmation(t) and (t.state == TrialState.COMPLETE
               or (t.state == TrialState.FAIL and t.number not in lost)))


def within_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` is one of the first ``n_trials`` trials that count (numbers
    are handed out atomically, so drivers racing for the last slot agree on who got it)."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    ahead = sum(1 for t in trials if t.number < number and t.number not in lost and not is_confirmation(t)
                and t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL))
    return ahead < n_trials
