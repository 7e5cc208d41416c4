"""The Optuna study as the ledger of trials: open or resume a study, check that a resumed
study is the same calibration, and recover trials left RUNNING by a dead driver.

One module per part: ``labels`` (the trial and study attribute names, the ledger format, and
``proposal_kind``), ``process`` (the driving process's identity and liveness), ``storage``
(the database: URL checks, ``study_exists``, ``rdb_storage``), ``resume`` (a study's identity,
``check_resumable``, ``open_study``), ``budget`` (which trials count against the budget),
``answer`` (the trials a study's answer is judged on, the best trial) and ``recovery`` (lost
trials failed and re-queued).

This package is the ledger's public face: it re-exports its modules' public names, so users
write ``from calib import ledger`` then ``ledger.X``, or ``from calib.ledger import X``. The
modules themselves import from each other's modules, never from this package (a patch of a
name here does not reach the module that defines it: patch it there).
"""

from __future__ import annotations

from calib.ledger.answer import at_target, best_trial
from calib.ledger.budget import budget_count, finished_count, is_confirmation, lost_numbers, within_budget
from calib.ledger.labels import (CARRIED_ATTRS, CONFIRM_ATTR, CONFIRM_FIDELITY, CONFIRM_SETTINGS_ATTR,
                                 DATASET_PATH_ATTR, FALLBACK_ATTR, FIDELITY_ATTR, IDENTITY_KEYS, MANUAL_ATTR,
                                 OUTSIDE_ATTR, POSTERIOR_ATTR, REPROPOSED_ATTR, RESUME_ATTR, SPEC_ATTR, STOPPED_ATTR,
                                 STUDY_FILE_ATTR, STUDY_PATH_ATTR, TARGET_FIDELITY_ATTR, UID_ATTR, proposal_kind)
from calib.ledger.process import driver_alive, driver_id
from calib.ledger.recovery import Recovery, requeue
from calib.ledger.resume import check_resumable, identity, open_study
from calib.ledger.storage import check_storage, rdb_storage, shown, study_exists

__all__ = ["at_target", "best_trial",
           "budget_count", "finished_count", "is_confirmation", "lost_numbers", "within_budget",
           "CARRIED_ATTRS", "CONFIRM_ATTR", "CONFIRM_FIDELITY", "CONFIRM_SETTINGS_ATTR", "DATASET_PATH_ATTR",
           "FALLBACK_ATTR", "FIDELITY_ATTR", "IDENTITY_KEYS", "MANUAL_ATTR", "OUTSIDE_ATTR", "POSTERIOR_ATTR",
           "REPROPOSED_ATTR", "RESUME_ATTR", "SPEC_ATTR", "STOPPED_ATTR", "STUDY_FILE_ATTR", "STUDY_PATH_ATTR",
           "TARGET_FIDELITY_ATTR", "UID_ATTR", "proposal_kind",
           "driver_alive", "driver_id",
           "Recovery", "requeue",
           "check_resumable", "identity", "open_study",
           "check_storage", "rdb_storage", "shown", "study_exists"]
