"""The summary of a study that ``calib optimize --json`` prints."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from . import ledger
from .loop import best_trial


def study_summary(study: optuna.Study, storage: str) -> dict:
    """Study name, storage, trial counts, best trial with its Table S1 params and observables
    next to their targets."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL and not ledger.is_lost(t)]
    best = best_trial(study)
    out: dict = {
        "study": study.study_name,
        "storage": storage,
        "trials_complete": len(complete),
        "trials_failed": len(failed),
        "trials_lost_and_reproposed": sum(1 for t in trials if ledger.is_lost(t)),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": best.user_attrs.get("table_s1") if best else None,
        "best_observables": None,
        "failures": {t.number: t.user_attrs.get("fail_reason") for t in failed},
    }
    if best is not None:
        obs = dict(best.user_attrs.get("observables", {}))
        errors = best.user_attrs.get("errors", {})
        out["best_observables"] = {
            name: {"simulated": e["simulated"], "target": e["target"], "unit": e["unit"],
                   "rel_error": e["rel_error"]} for name, e in errors.items()
        }
        out["best_observables"]["density_sem_g_cm3"] = obs.get("density_sem_g_cm3")
        out["best_observables"]["density_drift_rel"] = obs.get("density_drift_rel")
        out["best_observables"]["equilibrated"] = best.user_attrs.get("equilibrated")
    return out
