"""The study's answer: the trials it is judged on (``at_target``) and the best of them."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from calib.ledger.budget import is_confirmation
from calib.ledger.labels import FIDELITY_ATTR, STOPPED_ATTR, TARGET_FIDELITY_ATTR


def at_target(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials run at the study's target fidelity (all of them, unless the study is
    multi-fidelity) that ran their whole protocol (not ``STOPPED_ATTR``): the trials a
    study's answer is judged on."""
    target = study.user_attrs.get(TARGET_FIDELITY_ATTR)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_confirmation(t)
            and not t.user_attrs.get(STOPPED_ATTR)
            and (target is None or t.user_attrs.get(FIDELITY_ATTR, target) == target)]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The lowest objective among the target-fidelity trials (``at_target``)."""
    done = at_target(study)
    return min(done, key=lambda t: t.value) if done else None
