"""Fault injection with real LAMMPS (smoke size, shortened), the real Optuna ledger and
real MLflow stores: the driver killed (SIGKILL) during a LAMMPS run, during MLflow logging
and during a proposal; SIGTERM; LAMMPS crashed, hung and scored NaN; a full disk (a small
tmpfs); the MLflow server killed mid-study; the ledger database locked.

After each fault (and the resume that follows it) the same invariants are checked
(``Study.check``): no completed trial lost or changed, no trial or MLflow run left RUNNING,
the trial budget kept, and no LAMMPS process left. Faults are injected by
``tests/fault_driver.py``, which wraps the real CLI (the product has no fault hooks).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib.ledger import lost_numbers
from conftest import SHORT, mlflow_template, parse_json_stdout, write_study
from procs import processes_in

pytestmark = pytest.mark.lammps
SPREAD_OVER_WORKERS = True
"""Each fault test builds its own study in its own folder (about a minute each): they may
run on either worker (``conftest.pytest_collection_modifyitems``)."""

HERE = Path(__file__).resolve().parent


def lammps_under(root: Path) -> list[int]:
    """Live LAMMPS / MPI processes whose working directory is under ``root``."""
    return processes_in(root)


class Study:
    """A shortened smoke slurry study under ``tmp_path``: its command line, its ledger and
    its MLflow store, and the checks every fault ends with."""

    def __init__(self, tmp_path: Path, name: str, trials: int = 3, runs: Path | None = None,
                 storage: str | None = None, tracking_uri: str | None = None, **overrides) -> None:
        self.root = tmp_path
        self.name = name
        self.trials = trials
        self.file = write_study(tmp_path, name, trials=trials, parallel=1, optimizer={"n_initial": 2},
                                fidelities=SHORT, **overrides)
        self.runs = runs or tmp_path / "runs"
        self.storage = storage or f"sqlite:///{self.runs / 'calib.db'}"
        self.tracking_uri = tracking_uri or f"sqlite:///{self.runs / 'mlflow.db'}"
        self.options = ["--heartbeat-s", "1", "--grace-s", "2"]
        db = Path(self.tracking_uri.removeprefix("sqlite:///"))
        if self.tracking_uri.startswith("sqlite:///") and not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mlflow_template(), db)

    def args(self, trials: int | None = None) -> list[str]:
        return ["optimize", "--stage", "slurry", "--study", str(self.file), "--fidelity", "smoke",
                "--runs-dir", str(self.runs), "--storage", self.storage, "--tracking-uri", self.tracking_uri,
                "--trials", str(trials or self.trials), "--json", *self.options]

    def run(self, fault: str | None = None, trials: int | None = None, expect: int = 0,
            timeout: float = 300, args: list[str] | None = None) -> subprocess.CompletedProcess:
        """The CLI (with ``fault`` injected, e.g. ``kill-lammps@1``); its exit status must be
        ``expect``. ``args``: another command than ``optimize`` (default ``self.args(trials)``)."""
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        cmd = ([sys.executable, str(HERE / "fault_driver.py"), fault, "--"] if fault
               else [sys.executable, "-m", "calib.cli"]) + (args or self.args(trials))
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout, env=env)
        assert proc.returncode == expect, (f"exit status {proc.returncode}, expected {expect}\n"
                                           f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}")
        return proc

    def ledger(self) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=self.name, storage=self.storage).get_trials()

    def complete(self) -> dict[int, float]:
        return {t.number: t.value for t in self.ledger() if t.state == TrialState.COMPLETE}

    def mlflow_runs(self, tracking_uri: str | None = None) -> list:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri or self.tracking_uri)
        exp = client.get_experiment_by_name(self.name)
        return client.search_runs([exp.experiment_id], max_results=1000) if exp else []

    def check(self, before: dict[int, float], budget: int | None = None, tracking_uri: str | None = None,
              parent: str = "FINISHED") -> list[optuna.trial.FrozenTrial]:
        """The invariants: the completed trials ``before`` are there with their values; no
        trial RUNNING or WAITING; exactly ``budget`` finished trials that count; no MLflow
        run RUNNING, the parent ``parent``, a trial run for each completed trial, at most one
        run per trial, FINISHED for a COMPLETE trial and FAILED for a FAIL one (none KILLED
        or half-written); no LAMMPS process left under the test's folder."""
        trials = self.ledger()
        after = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
        for n, v in before.items():
            assert after.get(n) == v, f"completed trial {n} was lost or changed"
        assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        lost = lost_numbers(trials)
        counted = [t for t in trials if t.state.is_finished() and t.number not in lost]
        assert len(counted) == (budget or self.trials), [(t.number, t.state, t.user_attrs.get("fail_reason"))
                                                           for t in trials]
        runs = self.mlflow_runs(tracking_uri)
        assert not [r.data.tags.get("mlflow.runName") for r in runs if r.info.status == "RUNNING"]
        assert [r.info.status for r in runs if r.data.tags.get("calib.role") == "study"] == [parent]
        trial_runs = [r for r in runs if r.data.tags.get("calib.role") == "trial"]
        logged = {int(r.data.tags["trial_number"]) for r in trial_runs}
        assert set(after) <= logged, f"completed trials without an MLflow run: {set(after) - logged}"
        numbers = [int(r.data.tags["trial_number"]) for r in trial_runs]
        assert len(numbers) == len(set(numbers)), f"a trial with two MLflow runs: {sorted(numbers)}"
        state = {t.number: t.state for t in trials}
        want = {TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED"}
        wrong = [(n, state.get(n), r.info.status) for n, r in zip(numbers, trial_runs)
                 if want.get(state.get(n)) != r.info.status]
        assert not wrong, f"MLflow run states that do not match the ledger (trial, ledger, run): {wrong}"
        assert not lammps_under(self.root), "a LAMMPS process outlived its driver"
        return trials


def wait_for(cond, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- the driver killed


@pytest.mark.parametrize("fault", ["kill-lammps@1", "kill-logging@1", "kill-proposal@2"])
def test_driver_killed_then_resumed(tmp_path: Path, fault: str) -> None:
    """SIGKILL of the driver during trial N's LAMMPS run, while its MLflow run is written,
    or inside the model's proposal: the resumed driver recovers the trial (re-proposing its
    point if it had not been told), completes the MLflow run the dead one left half-written
    (one run per trial, FINISHED, with its files), and meets the budget."""
    study = Study(tmp_path, "killed")
    study.run(fault, expect=-signal.SIGKILL)
    before = study.complete()
    number = int(fault.split("@")[1])
    assert not lammps_under(tmp_path), "LAMMPS outlived the killed driver"
    time.sleep(2.5)  # past the grace period and the MLflow staleness limit (--grace-s 2)
    summary = parse_json_stdout(study.run())
    trials = study.check(before)
    victim = trials[number]
    if fault.startswith("kill-logging"):  # told before it was logged: kept, and its broken run completed
        assert victim.state == TrialState.COMPLETE and number in before
        [run] = [r for r in study.mlflow_runs() if r.data.tags.get("trial_number") == str(number)]
        assert run.info.status == "FINISHED" and "calib.logging_error" not in run.data.tags
        assert "driver stopped" in run.data.tags["calib.logging_completed"]
        assert run.data.tags["calib.logged_late"] == "from the trial's record"
        [objective] = [v for k, v in run.data.metrics.items() if k.startswith("objective_")]
        assert objective == pytest.approx(victim.value, rel=1e-5)  # MLflow shows 6 significant digits
        from mlflow.tracking import MlflowClient

        arts = {a.path for a in MlflowClient(tracking_uri=study.tracking_uri).list_artifacts(run.info.run_id)}
        assert {"log.lammps", "log.lammps.txt", "params.json"} <= arts, arts
    else:  # lost, and its point re-proposed
        assert victim.state == TrialState.FAIL and number in lost_numbers(trials)
        [run] = [r for r in study.mlflow_runs() if r.data.tags.get("trial_number") == str(number)]
        assert run.info.status == "FAILED" and "driver lost" in run.data.tags["fail_reason"]
        redo = [t for t in trials if t.user_attrs.get("calib_reproposed_from") == number]
        if fault.startswith("kill-proposal"):  # died before it had a point: nothing to re-propose
            assert victim.params == {} and redo == []
            assert "never tagged" in run.data.tags["fail_reason"]
        else:
            assert len(redo) == 1 and redo[0].params == pytest.approx(victim.params)
        assert summary["trials_lost_and_reproposed"] == 1


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM during trial 1's LAMMPS run: exit status 143, its jobs cancelled, the trial
    re-queued, every MLflow run ended (the study's KILLED); the resume meets the budget."""
    study = Study(tmp_path, "termed")
    proc = study.run("term-lammps@1", expect=143)
    assert "terminated (SIGTERM)" in proc.stderr and "Rerun the same command" in proc.stderr
    assert not lammps_under(tmp_path)
    before = study.complete()
    trials = study.ledger()
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["calib_lost"] is True
    assert [t.state for t in trials if t.number > 1] == [TrialState.WAITING]  # its point, queued
    runs = study.mlflow_runs()
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if r.data.tags.get("calib.role") == "study"] == ["KILLED"]
    assert [r.info.status for r in runs if r.data.tags.get("trial_number") == "1"] == ["FAILED"]
    study.run()
    study.check(before)


# --------------------------------------------------------------------------- LAMMPS faults


def test_lammps_crash_hang_and_nan_fail_their_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    """One study, one fault per trial: trial 0's LAMMPS hangs (SIGSTOP) until the study's
    time limit kills it, trial 1's LAMMPS crashes (SIGSEGV), trial 2's objective is NaN.
    Each is a FAIL trial with its reason (a FAILED MLflow run) and trial 3 completes. Then a
    ``calib refine`` whose one manual set crashes exits 1 naming the failure."""
    # a shortened smoke trial's LAMMPS takes about a second: 10 s lets the others finish even
    # on a loaded machine and ends the hung one sooner
    study = Study(tmp_path, "faulty", trials=4, trial_timeout_s=10)
    study.run("hang-lammps@0,crash-lammps@1,nan-objective@2")
    trials = study.check({})
    why = [t.user_attrs.get("fail_reason", "") for t in trials]
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.COMPLETE], why
    assert why[0].startswith("timeout"), why[0]
    assert "SIGSEGV" in why[1], why[1]
    assert "not a finite number" in why[2], why[2]
    runs = {r.data.tags.get("trial_number"): r for r in study.mlflow_runs()}
    for n in range(3):
        assert runs[str(n)].info.status == "FAILED" and runs[str(n)].data.tags["fail_reason"] == why[n]
    assert "objective_weighted_sum_sq_error" not in runs["2"].data.metrics
    assert runs["3"].info.status == "FINISHED"
    # the study has an answer (trial 3), but the one set a user asked for failed: exit 1, naming it
    before = study.complete()
    proc = study.run("crash-lammps@4", expect=1, args=[
        "refine", "--study", study.name, "--set", "eps_CBD=20", "--runs-dir", str(study.runs),
        "--storage", study.storage, "--tracking-uri", study.tracking_uri])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("calib: error: every manual set failed (1): trial 4: ") and "SIGSEGV" in last, last
    assert "best trial" in proc.stdout and "manual sets (1):" in proc.stdout, proc.stdout
    assert study.check(before, budget=5)[4].state == TrialState.FAIL


# --------------------------------------------------------------------------- the environment


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs mounted under ``tmp_path`` (unmounted after)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_stops_the_study_after_k_start_failures_and_resumes(tmp_path: Path, small_disk: Path) -> None:
    """Trial directories on a small filesystem that fills up: trials cannot start, and after
    ``stop_after_start_failures`` (3) in a row with the same error the study stops (exit
    status 1, one line) instead of spending its budget; with space again, it resumes."""
    db = tmp_path / "db"
    db.mkdir()
    study = Study(tmp_path, "fulldisk", trials=1, runs=small_disk, storage=f"sqlite:///{db / 'calib.db'}",
                  tracking_uri=f"sqlite:///{db / 'mlflow.db'}")
    study.run()  # one trial, and the study's folder claimed
    before = study.complete()
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    proc = study.run(trials=8, expect=1)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("calib: error: study 'fulldisk' stopped: 3 trials in a row could not start"), last
    assert "No space left on device" in last
    trials = study.ledger()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 3 and all("No space left" in t.user_attrs["fail_reason"] for t in failed)
    runs = study.mlflow_runs()
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if r.data.tags.get("calib.role") == "study"] == ["FAILED"]
    filler.unlink()
    study.run(trials=6)
    study.check(before, budget=6)


def test_mlflow_server_killed_mid_study(tmp_path: Path) -> None:
    """The tracking server dies (SIGKILL) after trial 0: the study goes on and completes
    in the ledger, MLflow failures are warnings; with the server back, a resumed driver
    ends every run the outage left RUNNING."""
    from services import MlflowServer

    root = tmp_path / "mlflow"
    server = MlflowServer(root=root)
    study = Study(tmp_path, "outage", trials=3, tracking_uri=server.url)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    driver = subprocess.Popen([sys.executable, "-m", "calib.cli", *study.args()], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _complete_count(study) >= 1 or driver.poll() is not None, 240, "trial 0")
        assert _complete_count(study) >= 1, (f"the driver exited {driver.returncode} before its first trial:\n"
                                             + driver.communicate()[1][-3000:])
        os.killpg(server._proc.pid, signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        server.stop()
    assert driver.returncode == 0, err[-3000:]
    assert "MLflow logging failed" in err
    before = study.complete()
    assert len(before) == 3
    server = MlflowServer(root=root)  # the same store, a new port
    try:
        study.tracking_uri = server.url
        time.sleep(2.5)
        proc = study.run()
        assert "had no complete MLflow run" in proc.stderr and "logged now" in proc.stderr
        study.check(before, tracking_uri=server.url)
        late = [r for r in study.mlflow_runs(server.url) if r.data.tags.get("calib.logged_late")]
        assert late and all(r.info.status == "FINISHED" and "objective_weighted_sum_sq_error" in r.data.metrics
                            for r in late)
    finally:
        server.stop()


def _complete_count(study: Study) -> int:
    """Completed trials in the ledger, read through a read-only SQLite connection: polling
    with Optuna's storage would create the schema itself while the driver creates it."""
    db = study.runs / "calib.db"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is being created, or the driver holds a lock
        return 0


def test_ledger_locked_for_a_while(tmp_path: Path) -> None:
    """Another process holds the ledger's SQLite database exclusively for 8 s while trials
    run: the driver waits for the lock and completes the study; nothing is lost."""
    study = Study(tmp_path, "locked", trials=3)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    driver = subprocess.Popen([sys.executable, "-m", "calib.cli", *study.args()], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = threading.Event()
    try:
        wait_for(lambda: _complete_count(study) >= 1 or driver.poll() is not None, 240, "trial 0")
        assert _complete_count(study) >= 1, (f"the driver exited {driver.returncode} before its first trial:\n"
                                             + driver.communicate()[1][-3000:])
        con = sqlite3.connect(study.runs / "calib.db", timeout=60, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(8)
        con.execute("COMMIT")
        con.close()
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert held.is_set()
    assert driver.returncode == 0, err[-3000:]
    study.check(study.complete())


def test_sigterm_stops_a_pipeline_and_its_lammps(tmp_path: Path) -> None:
    """``calib pipeline`` gets SIGTERM while its slurry stage's LAMMPS runs: it cancels the
    job, says so in one line and exits 143; no LAMMPS is left and nothing is logged RUNNING."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.Popen([sys.executable, "-m", "calib.cli", "pipeline", "--fidelity", "smoke",
                             "--placements", "1", "--runs-dir", str(tmp_path / "runs"), "--degrees", "0,10"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: bool(lammps_under(tmp_path)), 120, "the pipeline's LAMMPS")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("calib: terminated (SIGTERM); the pipeline's jobs were cancelled")
    assert not lammps_under(tmp_path)
    db = tmp_path / "runs" / "mlflow.db"
    if db.exists():  # the pipeline logs at its end only: nothing of it may be left RUNNING
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        assert not [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
                    if r.info.status == "RUNNING"]
