"""``calib.ledger``'s recovery and budget rules on a real Optuna SQLite storage: which RUNNING
trials are a dead driver's, how their points are re-queued, how lost trials leave the
budget, and which of two racing trials gets the last slot."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib import ledger

DISTS = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


@pytest.fixture
def study(tmp_path: Path):
    recovery = ledger.Recovery(grace_s=1.0)
    storage = ledger.rdb_storage(f"sqlite:///{tmp_path / 'l.db'}", heartbeat_s=1, grace_s=2, on_stale=recovery)
    s = ledger.open_study("rec", storage, optuna.samplers.RandomSampler(seed=1), {"t": 1})
    s.recovery = recovery  # type: ignore[attr-defined]
    return s


def _dead_driver() -> str:
    proc = subprocess.run([sys.executable, "-c", "from calib.ledger import driver_id; print(driver_id())"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()  # that process has exited


def test_a_live_driver_is_left_alone_and_a_dead_one_recovered_at_once(study):
    mine = study.ask(DISTS)
    mine.set_user_attr("calib_driver", ledger.driver_id())
    dead = study.ask(DISTS)
    dead.set_user_attr("calib_driver", _dead_driver())
    dead.set_user_attr("calib_workdir", "/runs/s/trial_00001")
    dead.set_user_attr("calib_jobs", [{"run": "slurry", "backend": "slurm", "job_id": "7", "workdir": "/w"}])
    got = study.recovery.sweep(study)
    assert [t.number for t in got] == [dead.number]
    trials = study.get_trials()
    assert trials[mine.number].state == TrialState.RUNNING
    assert trials[dead.number].state == TrialState.FAIL and "ended while the trial ran" in \
        trials[dead.number].user_attrs["fail_reason"]
    (requeued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert requeued.user_attrs[ledger.REPROPOSED_ATTR] == dead.number
    assert requeued.user_attrs[ledger.RESUME_ATTR] == {"workdir": "/runs/s/trial_00001",
                                                       "jobs": dead.user_attrs["calib_jobs"]}
    nxt = study.ask(DISTS)  # the re-queued point is what the next ask gets
    assert nxt.number == requeued.number and nxt.params == pytest.approx(dead.params)
    assert study.recovery.sweep(study) == []  # nothing twice


def test_a_stale_heartbeat_from_another_host_is_recovered_after_the_grace_period(study):
    other = study.ask(DISTS)
    other.set_user_attr("calib_driver", "elsewhere.example:1:1")
    study._storage.record_heartbeat(other._trial_id)
    assert study.recovery.sweep(study) == []  # beating recently: alive
    time.sleep(3.2)
    assert [t.number for t in study.recovery.sweep(study)] == [other.number]
    assert other.number in ledger.lost_numbers(study.get_trials())
    # failed by Optuna's stale-heartbeat check, with the ledger's reason (set while it could be)
    assert study.get_trials()[other.number].user_attrs["fail_reason"] == \
        "driver lost: no heartbeat for over 2 s (driver elsewhere.example:1:1)"


def test_a_trial_never_tagged_is_recovered_after_the_grace_period(study):
    t = study.ask(DISTS)  # its driver "died" inside ask: no tag, no heartbeat
    assert study.recovery.sweep(study) == []
    time.sleep(1.3)
    assert [r.number for r in study.recovery.sweep(study)] == [t.number]
    assert "never tagged" in study.get_trials()[t.number].user_attrs["fail_reason"]


def test_budget_counts_every_driver_and_skips_lost_trials(study):
    a, b, c = (study.ask(DISTS) for _ in range(3))
    study.tell(a, 1.0)
    b.set_user_attr("calib_lost", True)
    study.tell(b, state=TrialState.FAIL)
    assert ledger.budget_count(study) == 2  # a (complete) + c (running, whoever runs it)
    assert ledger.finished_count(study) == 1
    d = study.ask(DISTS)
    assert ledger.within_budget(study, c.number, 2) and not ledger.within_budget(study, d.number, 2)
    assert ledger.within_budget(study, d.number, 3)


def test_the_driver_id_names_the_machine_and_process():
    machine, pid, _ = ledger.driver_id().rsplit(":", 2)
    host, boot, ns = machine.split("/")
    assert host == socket.gethostname() and len(boot) == 8 and ns.isdigit() and int(pid) > 0
    assert ledger.driver_alive(ledger.driver_id()) is True
    assert ledger.driver_alive("elsewhere.example:1:1") is None
    assert ledger.driver_alive(f"{host}/00000000/{ns}:{pid}:1") is None  # same name, another boot
    assert ledger.driver_alive(f"{machine}:{pid}:None") is None  # no /proc there: cannot tell


def test_the_start_ticks_are_those_the_ids_of_earlier_versions_hold():
    """The id's start ticks come from psutil now; drivers of earlier versions wrote the 22nd
    field of /proc/<pid>/stat, and an id of either must name the same live process."""
    import os
    from pathlib import Path

    machine, pid, ticks = ledger.driver_id().rsplit(":", 2)
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert ticks == stat.rsplit(")", 1)[1].split()[19]
    assert ledger.driver_alive(f"{machine}:{pid}:{int(ticks) + 1}") is False  # another process, same pid


def test_the_heartbeat_notices_a_trial_another_driver_took(study):
    from calib.execution.heartbeat import Heartbeat

    t = study.ask(DISTS)
    beat = Heartbeat(study._storage, 0.2)
    try:
        beat.add(t._trial_id)
        assert beat.lost() == set()
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # another driver's recovery
        deadline = time.monotonic() + 5
        while not beat.lost() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost() == {t._trial_id}
        beat.discard(t._trial_id)
        assert beat.lost() == set()
    finally:
        beat.stop()
