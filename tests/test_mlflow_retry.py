"""The MLflow client wrappers' retry rules (``calib.review.mlflow_retry``), on a stand-in
client whose calls fail as a locked SQLite store or an unreachable server make MLflow's
fail (the real stores are exercised end to end in test_e2e_mlflow_server.py and test_faults.py)."""

from __future__ import annotations

import pytest

from calib.review.mlflow_retry import LockPatient, OutageAware


class _Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls = list(errors), 0

    def log(self, value: int) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return value


def test_a_locked_store_is_waited_out_and_other_errors_are_not():
    client = _Flaky([RuntimeError("(sqlite3.OperationalError) database is locked")] * 3)
    assert LockPatient(client, patience_s=10).log(7) == 7 and client.calls == 4
    other = _Flaky([RuntimeError("no such table: runs")])
    with pytest.raises(RuntimeError, match="no such table"):
        LockPatient(other, patience_s=10).log(7)
    assert other.calls == 1


def test_a_lock_that_outlasts_the_patience_is_raised():
    client = _Flaky([RuntimeError("database is locked")] * 1000)
    with pytest.raises(RuntimeError, match="database is locked"):
        LockPatient(client, patience_s=0.3).log(7)
    assert 2 <= client.calls < 1000


def test_an_unreachable_server_is_skipped_for_the_pause():
    client = _Flaky([ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/create")])
    wrapped = OutageAware(client, pause_s=60)
    with pytest.raises(ConnectionError, match="Max retries"):
        wrapped.log(1)
    with pytest.raises(ConnectionError, match="skipping calls"):
        wrapped.log(1)
    assert client.calls == 1
