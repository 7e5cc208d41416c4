"""Many drivers, one study: three ``calib optimize`` processes started together on one study
(real LAMMPS at smoke size) share its trial budget, with no trial run twice, none lost and
the budget kept, on SQLite and on a real PostgreSQL; and a driver whose heartbeat stops is
recovered by another driver on the heartbeat alone (the hostname rule cannot see it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib import ledger
from calib.study.space import ParameterSpace
from calib.study.load import load_study
from conftest import write_study
from mlflow_checks import assert_one_value_per_step

pytestmark = pytest.mark.lammps

N_DRIVERS = 3
BUDGET = 6


def _drivers(tmp_path: Path, study: Path, storage: str, runs: Path, n: int = N_DRIVERS) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    args = ["optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", "--runs-dir", str(runs),
            "--storage", storage, "--json"]
    return [subprocess.Popen([sys.executable, "-m", "calib.cli", *args], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]


def _check_shared_study(tmp_path: Path, name: str, storage: str, runs: Path) -> None:
    study = write_study(tmp_path, name, trials=BUDGET, parallel=1, optimizer={"n_initial": 3})
    procs = _drivers(tmp_path, study, storage, runs)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    diag = "\n---\n".join(err[-1500:] for _, err in outs)  # the drivers' stderr, for any failure below
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    lost = ledger.lost_numbers(trials)
    counted = [t for t in trials if t.number not in lost]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(counted) == BUDGET, ([(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials], diag)
    assert all(t.state == TrialState.COMPLETE for t in counted), [t.user_attrs.get("fail_reason") for t in counted]
    # lost trials here can only be give-backs of a race for the last slot: never run
    for t in trials:
        if t.number in lost:
            assert "budget" in t.user_attrs["fail_reason"] and not Path(t.user_attrs.get("calib_workdir", "/x")).exists()
    # no duplicates: distinct points, distinct trial directories, each trial run by one driver
    points = {tuple(round(v, 12) for v in t.params.values()) for t in counted}
    assert len(points) == BUDGET
    assert len({t.user_attrs["calib_workdir"] for t in counted}) == BUDGET
    drivers = {t.user_attrs["calib_driver"] for t in counted}
    assert len(drivers) >= 2, f"the drivers did not share the work\n{diag}"
    dirs = sorted(p.name for p in (runs / name).glob("trial_*"))
    assert dirs == sorted(Path(t.user_attrs["calib_workdir"]).name for t in counted)
    # MLflow: one parent run, one FINISHED run per trial, none RUNNING
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    mruns = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert len([r for r in mruns if r.data.tags.get("calib.role") == "study"]) == 1, diag
    trial_runs = [r for r in mruns if r.data.tags.get("calib.role") == "trial"]
    assert sorted(int(r.data.tags["trial_number"]) for r in trial_runs) == sorted(t.number for t in counted), diag
    assert not [r for r in mruns if r.info.status == "RUNNING"], diag
    assert len([r for r in trial_runs if r.data.tags.get("calib.best") == "true"]) == 1, diag
    # the drivers logged every step of the study run's series once, though each logs after each trial it tells
    assert_one_value_per_step(f"sqlite:///{runs / 'mlflow.db'}", name)


def test_three_drivers_share_a_sqlite_study(tmp_path: Path):
    runs = tmp_path / "runs"
    _check_shared_study(tmp_path, "drivers_sqlite", f"sqlite:///{runs / 'calib.db'}", runs)


@pytest.mark.postgres
def test_three_drivers_share_a_postgres_study(tmp_path: Path, postgres):
    runs = tmp_path / "runs"
    name = f"drivers_pg_{uuid.uuid4().hex[:6]}"
    _check_shared_study(tmp_path, name, postgres.url, runs)


def test_stale_heartbeat_is_recovered_by_another_driver(tmp_path: Path):
    """A trial whose driver stopped beating (another host: the hostname rule cannot judge
    it) is failed after the grace period and its point re-queued; the next driver runs it."""
    runs = tmp_path / "runs"
    storage = f"sqlite:///{runs / 'calib.db'}"
    runs.mkdir()
    name = "stale_hb"
    study_file = write_study(tmp_path, name, trials=1, parallel=1)
    # a trial left RUNNING by a driver on another host, beating once and then never again
    study = optuna.create_study(study_name=name, storage=ledger.rdb_storage(storage, heartbeat_s=1, grace_s=4))
    ghost = study.ask(ParameterSpace.from_spec(load_study(study_file).spec.parameters).distributions())
    ghost.set_user_attr("calib_driver", "elsewhere.example:4242:1")
    study._storage.record_heartbeat(ghost._trial_id)
    time.sleep(5)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study",
                           str(study_file), "--fidelity", "smoke", "--runs-dir", str(runs), "--storage", storage,
                           "--heartbeat-s", "1", "--grace-s", "4", "--tracking-uri", "none", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("recovered trial 0: driver lost: no heartbeat for over 4 s (driver elsewhere.example:4242:1)"
            in " ".join(proc.stderr.split()))  # the console wraps long lines
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert trials[0].state == TrialState.FAIL and 0 in ledger.lost_numbers(trials)
    assert trials[0].user_attrs["fail_reason"] == "driver lost: no heartbeat for over 4 s (driver elsewhere.example:4242:1)"
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE]
    assert trials[1].user_attrs["calib_reproposed_from"] == 0 and trials[1].params == pytest.approx(ghost.params)


def test_a_grace_period_under_two_heartbeats_is_refused(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--runs-dir",
                           str(tmp_path / "runs"), "--heartbeat-s", "30", "--grace-s", "45"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("calib: error: --grace-s: grace_s: 45 s is under two heartbeats (60 s): "
                                   "live drivers would be taken for dead")
    assert not (tmp_path / "runs").exists()
