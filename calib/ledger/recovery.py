"""Recovery of lost trials: trials whose driver is gone are failed and their points re-queued
(``requeue``, ``Recovery``)."""

from __future__ import annotations

import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from calib.ledger.labels import CARRIED_ATTRS, REPROPOSED_ATTR, RESUME_ATTR
from calib.ledger.process import driver_alive


def requeue(study: optuna.Study, t: FrozenTrial) -> None:
    """Enqueue the parameters of lost trial ``t`` (and where it ran) so that a driver runs,
    or re-attaches to, the same point."""
    if not t.params:
        return
    attrs: dict = {REPROPOSED_ATTR: t.number}
    for key in CARRIED_ATTRS:
        if key in t.user_attrs:
            attrs[key] = t.user_attrs[key]
    if t.user_attrs.get("calib_jobs") and t.user_attrs.get("calib_workdir"):
        attrs[RESUME_ATTR] = {"workdir": t.user_attrs["calib_workdir"], "jobs": t.user_attrs["calib_jobs"]}
    study.enqueue_trial(dict(t.params), user_attrs=attrs)


class Recovery:
    """Finds trials whose driver is gone, fails them and re-queues their parameters.

    Liveness is Optuna's heartbeat: each driver records one for its running trials every
    ``heartbeat_interval`` s; a trial without one for ``grace_period`` s is failed as
    ``optuna.storages.fail_stale_trials`` does (exactly one driver wins the trial), with the
    ledger's reason (``_fail_stale``), and this object, the stale-trial callback, re-queues it. On top, a trial whose
    driver ran on this host and has exited is recovered at once (``driver_alive``), without
    waiting for the grace period, and a trial that was asked more than ``grace_s`` ago but
    never tagged (its driver died inside ``ask``, before its first heartbeat) is recovered
    too (its start time is the asking host's clock). ``recovered`` lists the trials recovered by this process.
    """

    def __init__(self, grace_s: float | None = None) -> None:
        self.grace_s = grace_s
        self.recovered: list[FrozenTrial] = []

    def __call__(self, study: optuna.Study, t: FrozenTrial) -> None:
        """The stale-trial callback (``t`` is already FAIL)."""
        requeue(study, t)
        self.recovered.append(t)

    def _fail_stale(self, study: optuna.Study) -> None:
        """``optuna.storages.fail_stale_trials`` with the ledger's reason: each trial whose
        heartbeat is stale (the heartbeat storage's ``_get_stale_trial_ids``, which Optuna's
        own function uses) gets ``fail_reason`` and ``calib_lost`` while it can (a finished
        trial's attributes cannot be set), then is failed, and the trials this driver failed
        go to the stale-trial callback (this object) as Optuna's function does."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.storages._heartbeat import is_heartbeat_enabled

        storage = study._storage
        if not is_heartbeat_enabled(storage):
            return
        backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
        grace = getattr(backend, "grace_period", None) or 2 * storage.get_heartbeat_interval()
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            try:
                ident = storage.get_trial(trial_id).user_attrs.get("calib_driver", "?")
                storage.set_trial_user_attr(trial_id, "fail_reason",
                                            f"driver lost: no heartbeat for over {grace:g} s (driver {ident})")
                storage.set_trial_user_attr(trial_id, "calib_lost", True)
                if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another driver failed it first (and gave the reason)
                continue
            self(study, storage.get_trial(trial_id))

    def sweep(self, study: optuna.Study) -> list[FrozenTrial]:
        """Recover what can be recovered now; returns the trials recovered by this sweep."""
        from optuna.exceptions import UpdateFinishedTrialError

        before = len(self.recovered)
        storage = study._storage
        self._fail_stale(study)
        now = datetime.datetime.now()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ident = t.user_attrs.get("calib_driver")
            if ident:
                if driver_alive(ident) is not False:  # alive, or another host: the heartbeat decides
                    continue
                why = f"driver lost: process {ident} ended while the trial ran"
            else:  # asked but never tagged nor beating: its driver died within ask
                if (self.grace_s is None or t.datetime_start is None
                        or (now - t.datetime_start).total_seconds() < self.grace_s):
                    continue
                why = f"driver lost: the trial was asked {self.grace_s:g}+ s ago and never tagged by a driver"
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", why)
                storage.set_trial_user_attr(t._trial_id, "calib_lost", True)
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another driver recovered it, or its own told it
                continue
            self(study, storage.get_trial(t._trial_id))
        return self.recovered[before:]
