"""Resume after a killed driver: completed trials are kept, the trial the dead driver left
RUNNING becomes FAIL (lost) and its parameters are proposed again, the budget is met."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import parse_json_stdout, run_calib, write_study
from procs import alive, processes_in

pytestmark = pytest.mark.lammps


def _study_exists(db: Path, name: str) -> bool:
    """Whether the driver has created its study, read without writing: ``optuna.load_study``
    on a database whose tables the driver is still creating would create them too, and the
    two writers race (the driver then exits with status 1)."""
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as con:
            return con.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone() is not None
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return False


def test_resume_after_killed_driver(tmp_path: Path):
    # trials about twice smoke's length: the driver is killed while a trial's LAMMPS runs,
    # and that window must stay open for the poll below even on a loaded machine
    study_file = write_study(tmp_path, "resume_smoke", trials=3, parallel=1, optimizer={"n_initial": 2},
                             fidelities={"smoke": {"equilibration_steps": 30_000}})
    runs = tmp_path / "runs"
    storage = f"sqlite:///{runs / 'calib.db'}"
    args = ["optimize", "--stage", "slurry", "--study", str(study_file), "--fidelity", "smoke",
            "--runs-dir", str(runs), "--storage", storage, "--json"]
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    err = tmp_path / "driver_stderr.txt"
    with err.open("w") as err_file:
        driver = subprocess.Popen([sys.executable, "-m", "calib.cli", *args], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=err_file)
    victim = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            assert driver.poll() is None, (f"the driver ended (exit status {driver.returncode}) before a trial "
                                           f"could be caught running:\n{err.read_text()[-3000:]}")
            if not _study_exists(runs / "calib.db", "resume_smoke"):
                continue
            try:
                trials = optuna.load_study(study_name="resume_smoke", storage=storage).get_trials()
            except Exception:  # study not created yet
                continue
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING and "calib_jobs" in t.user_attrs]
            if done and running:
                victim = running[0]
                job_pids = processes_in(Path(victim.user_attrs["calib_workdir"]), None)
                if job_pids:
                    break
                victim = None
        assert victim is not None, "driver never had a completed and a running trial"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    for _ in range(50):
        if all(not alive(p) for p in job_pids):
            break
        time.sleep(0.1)
    assert all(not alive(p) for p in job_pids), "LAMMPS of the killed driver is still running"

    before = {t.number: t.value for t in optuna.load_study(study_name="resume_smoke", storage=storage).get_trials()
              if t.state == TrialState.COMPLETE}
    summary = parse_json_stdout(run_calib(*args, cwd=tmp_path))

    trials = optuna.load_study(study_name="resume_smoke", storage=storage).get_trials()
    after = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    for n, v in before.items():
        assert after[n] == v, "a completed trial changed or was lost"
    lost = trials[victim.number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["calib_lost"] is True
    assert "driver lost" in lost.user_attrs["fail_reason"]
    redo = [t for t in trials if t.user_attrs.get("calib_reproposed_from") == victim.number]
    assert len(redo) == 1 and redo[0].params == pytest.approx(victim.params)
    assert summary["trials_complete"] + summary["trials_failed"] == 3
    assert summary["trials_lost_and_reproposed"] == 1
    # MLflow: the parent run the killed driver left RUNNING is reopened and closed, the lost
    # trial has a FAILED run with its reason, and no run is left RUNNING
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    mruns = client.search_runs([client.get_experiment_by_name("resume_smoke").experiment_id])
    assert [r.info.status for r in mruns if r.data.tags.get("calib.role") == "study"] == ["FINISHED"]
    assert not [r for r in mruns if r.info.status == "RUNNING"]
    lost_runs = [r for r in mruns if r.data.tags.get("trial_number") == str(victim.number)]
    assert len(lost_runs) == 1 and lost_runs[0].info.status == "FAILED"
    # and every trial of the ledger (the lost one, its re-proposal, the others) has exactly
    # one run in its state: FAILED for FAIL, FINISHED for COMPLETE
    from mlflow_checks import assert_runs_match_ledger

    by_number = assert_runs_match_ledger(f"sqlite:///{runs / 'mlflow.db'}", "resume_smoke", storage)
    assert len(by_number) == len(trials)

    # a third run with the same name and budget does no more work
    again = parse_json_stdout(run_calib(*args, cwd=tmp_path))
    assert len(optuna.load_study(study_name="resume_smoke", storage=storage).get_trials()) == len(trials)
    assert again["best_trial"] == summary["best_trial"]


def test_resume_with_other_physics_is_refused(tmp_path: Path):
    runs = tmp_path / "runs"
    first = write_study(tmp_path, "same_name", trials=1, parallel=1)
    run_calib("optimize", "--stage", "slurry", "--study", str(first), "--fidelity", "smoke",
              "--runs-dir", str(runs), "--tracking-uri", "none", "--json", cwd=tmp_path)
    for change, field in (({"lj_style": "lj/smooth/linear"}, "physics.lj_style"),
                          ({"parameters": {"base": "table-s1-slurry", "free": {"eps_AM": {"low": 0.3, "high": 30.0}},
                                           "fixed": {"kn": 0.2}}}, "space")):
        other = write_study(tmp_path, "same_name", trials=2, parallel=1, **change)
        proc = run_calib("optimize", "--stage", "slurry", "--study", str(other), "--fidelity", "smoke",
                         "--runs-dir", str(runs), "--tracking-uri", "none", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert "\n" not in line and field in line and "use another study name" in line
    storage = f"sqlite:///{runs / 'calib.db'}"
    assert len(optuna.load_study(study_name="same_name", storage=storage).get_trials()) == 1
