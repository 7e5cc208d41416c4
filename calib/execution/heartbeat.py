"""A driver's heartbeat: one thread that records, every ``interval_s``, an Optuna heartbeat
for each trial the driver runs (``RDBStorage.record_heartbeat``), so that other drivers, on
any host, can tell its trials from those of a dead driver (``ledger.Recovery``); a trial
found no longer RUNNING (another driver judged it lost) is reported by ``lost``. A thread,
not the loop, beats: a long proposal or a slow MLflow upload must not look like death."""

from __future__ import annotations

import threading

from optuna.storages import BaseStorage
from optuna.trial import TrialState


class Heartbeat:
    """Beats for the trial ids in ``add``/``discard`` until ``stop``."""

    def __init__(self, storage: BaseStorage, interval_s: float) -> None:
        self._storage = storage
        self._interval = interval_s
        self._ids: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="calib-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        """Beat for ``trial_id`` now and from now on."""
        with self._lock:
            self._ids.add(trial_id)
        self._beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _beat(self, trial_id: int) -> None:
        try:
            if self._storage.get_trial(trial_id).state != TrialState.RUNNING:  # another driver failed it
                with self._lock:
                    self._lost.add(trial_id)
                return
            self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception:  # a database hiccup: the next beat tries again (the grace period spans several)
            pass

    def lost(self) -> set[int]:
        """Trial ids found no longer RUNNING while this driver beat for them."""
        with self._lock:
            return set(self._lost) & self._ids

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                self._beat(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
