"""The Slurm backend beyond the contract (``tests/test_backend_contract.py``): its batch
script and exit records (unit tests), and on a real single-node Slurm: a two-rank LAMMPS
trial through ``srun``, a restarted driver that re-attaches to the job of a trial whose
driver was SIGKILLed while the job ran, and one that collects a job that finished while no
driver was alive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib.core.backend_registry import check
from calib.core.errors import InputError
from calib.spec.study_file import ResourcesSpec, SlurmSpec
from conftest import parse_json_stdout, run_calib, write_study
from sim_backends.backend import JobHandle, JobState, Task
from sim_backends.slurm import (EXIT_RECORD, SlurmBackend, SlurmError, SlurmOptions, batch_script, result_from_record,
                                time_limit_minutes)

# --------------------------------------------------------------------------- pure functions


def test_time_limit_rounds_up_with_a_minute_to_spare():
    assert time_limit_minutes(None) is None
    assert time_limit_minutes(30) == 2  # 30 s + 10 s kill grace -> 1 min, + 1
    assert time_limit_minutes(600) == 12


def test_batch_script_mpi_resources_and_env(tmp_path: Path):
    task = Task(tmp_path, ("lmp", "-in", "in.slurry"), {"OMP_NUM_THREADS": "2", "X": "a b"}, timeout_s=90,
                ranks=4, threads=2, name="s-3-slurry")
    text = batch_script(task, SlurmOptions(partition="short", account="proj1", directives=("--mem=4G",)))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for d in ("--ntasks=4", "--cpus-per-task=2", "--nodes=1", "--partition=short", "--account=proj1", "--mem=4G",
              f"--chdir={tmp_path.resolve()}", f"--output={tmp_path.resolve() / 'stdout.txt'}", "--time=3",
              "--job-name=s-3-slurry"):
        assert f"#SBATCH {d}" in lines, d
    assert "export X='a b'" in lines
    run = next(line for line in lines if "lmp" in line)
    assert run.startswith("timeout --kill-after=10 90 srun --mpi=pmi2 --ntasks=4 --cpus-per-task=2 lmp -in in.slurry")
    one = batch_script(Task(tmp_path, ("sh", "-c", "echo hi")), SlurmOptions())
    assert "srun" not in one and "timeout" not in one and "--time" not in one  # one rank, no limit


def test_exit_records_give_state_code_and_wall():
    assert result_from_record({"rc": 0, "start": 10.0, "end": 12.5, "limit_s": 60}).state is JobState.DONE
    r = result_from_record({"rc": 3, "start": 0, "end": 1, "limit_s": None})
    assert (r.state, r.returncode, r.wall_s) == (JobState.FAILED, 3, 1.0) and "3" in r.reason
    t = result_from_record({"rc": 124, "start": 0, "end": 5.01, "limit_s": 5})
    assert t.state is JobState.TIMEOUT and "timeout" in t.reason
    assert result_from_record({"rc": 124, "start": 0, "end": 1, "limit_s": 5}).state is JobState.FAILED  # its own 124


def test_study_slurm_settings_are_validated():
    with pytest.raises(ValueError, match="not one sbatch option"):
        SlurmSpec(directives=("mem=4G",))
    with pytest.raises(ValueError, match="backend 'pbs' is not one of local, slurm"):
        ResourcesSpec(backend="pbs")


def test_slurm_backend_refused_without_slurm_commands(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="sbatch, squeue, scancel, sinfo not found"):
        check("slurm", "--backend")


def test_unknown_backend_on_the_command_line(tmp_path: Path):
    proc = run_calib("optimize", "--stage", "slurry", "--backend", "pbs", "--runs-dir", str(tmp_path / "runs"),
                     cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "calib: error: --backend: backend: 'pbs' is not one of local, slurm"
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- real Slurm



def _squeue(job_id: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True,
                         text=True).stdout.strip()
    return out or None


def _wait(pred, within_s: float, what: str, poll_s: float = 0.3):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} within {within_s} s")


@pytest.mark.slurm
def test_adopts_a_job_it_did_not_submit(slurm, tmp_path: Path):
    """A backend of a restarted driver polls and collects a job from its handle alone."""
    first = SlurmBackend(SlurmOptions(poll_interval_s=0.2))
    handle = first.submit(Task(tmp_path, ("sh", "-c", "sleep 1; echo done"), name="adopt"))
    other = SlurmBackend(SlurmOptions(poll_interval_s=0.2))
    same = JobHandle("slurm", handle.job_id, tmp_path)
    _wait(lambda: other.poll(same).terminal, 60, "job finished")
    result = other.collect(same)
    assert result.state is JobState.DONE and result.returncode == 0 and result.wall_s >= 1.0
    assert json.loads((tmp_path / EXIT_RECORD.format(job_id=handle.job_id)).read_text())["rc"] == 0


@pytest.mark.slurm
def test_a_queue_outage_is_ridden_out(slurm, tmp_path: Path):
    """The controller goes away while a job runs: polls keep the last state instead of
    failing the driver, and once the controller is back the job's result is read."""
    backend = SlurmBackend(SlurmOptions(poll_interval_s=0.1))
    handle = backend.submit(Task(tmp_path, ("sh", "-c", "sleep 4; echo done"), name="outage"))
    _wait(lambda: backend.poll(handle) is JobState.RUNNING, 60, "job running")
    slurm.stop_controller()
    try:
        for _ in range(1):  # squeue cannot reach the controller (each try takes ~9 s): the last state stands
            time.sleep(0.2)
            assert backend.poll(handle) is JobState.RUNNING
        with pytest.raises(SlurmError, match="squeue"):  # unless the outage outlasts queue_grace_s
            SlurmBackend(SlurmOptions(poll_interval_s=0.1, queue_grace_s=0.0)).poll(handle)
    finally:
        slurm.start_controller()
    _wait(lambda: backend.poll(handle).terminal, 120, "job over after the outage")
    assert backend.collect(handle).state is JobState.DONE
    assert (tmp_path / "stdout.txt").read_text().strip() == "done"


@pytest.mark.slurm
@pytest.mark.lammps
def test_two_rank_trial_through_srun(slurm, tmp_path: Path):
    study = write_study(tmp_path, "slurm_mpi", trials=1, parallel=1,
                        resources={"backend": "slurm", "ranks": 2, "slurm": {"poll_interval_s": 0.5}})
    s = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                    "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", "none", "--json",
                                    cwd=tmp_path))
    assert s["trials_complete"] == 1, s["failures"]
    wd = tmp_path / "runs" / "slurm_mpi" / "trial_00000"
    assert "on 2 procs" in (wd / "log.lammps").read_text()
    trial = optuna.load_study(study_name="slurm_mpi", storage=f"sqlite:///{tmp_path / 'runs' / 'calib.db'}").trials[0]
    (job,) = trial.user_attrs["calib_jobs"]
    assert job["backend"] == "slurm" and job["run"] == "slurry"
    assert json.loads((wd / EXIT_RECORD.format(job_id=job["job_id"])).read_text())["rc"] == 0
    assert "srun --mpi=pmi2 --ntasks=2" in "".join(p.read_text() for p in wd.glob(".calib_slurm_*.sh"))


def _start_driver(tmp_path: Path, args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    err = open(tmp_path / "driver_stderr.txt", "w")
    return subprocess.Popen([sys.executable, "-m", "calib.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)


def _kill_driver_while_a_job_runs(tmp_path: Path, name: str, storage: str, args: list[str]):
    """Start a driver, SIGKILL it while its trial's Slurm job runs; return that trial."""
    driver = _start_driver(tmp_path, args)
    try:
        def running_trial():
            assert driver.poll() is None, (tmp_path / "driver_stderr.txt").read_text()[-3000:]
            try:
                trials = optuna.load_study(study_name=name, storage=storage).get_trials()
            except Exception:
                return None
            for t in trials:
                if t.state == TrialState.RUNNING and t.user_attrs.get("calib_jobs"):
                    if _squeue(t.user_attrs["calib_jobs"][0]["job_id"]) == "RUNNING":
                        return t
            return None

        victim = _wait(running_trial, 180, "a trial's Slurm job running")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    return victim


def _check_reattached(tmp_path: Path, name: str, storage: str, victim, summary: dict) -> None:
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    job_id = victim.user_attrs["calib_jobs"][0]["job_id"]
    assert trials[victim.number].state == TrialState.FAIL
    (redo,) = [t for t in trials if t.user_attrs.get("calib_reproposed_from") == victim.number]
    assert redo.state == TrialState.COMPLETE, redo.user_attrs.get("fail_reason")
    assert redo.user_attrs["calib_reattached"] is True
    assert redo.user_attrs["calib_workdir"] == victim.user_attrs["calib_workdir"]
    assert redo.params == pytest.approx(victim.params)
    # no rerun: the trial directory holds the exit record of the one slurry job and no other
    wd = Path(victim.user_attrs["calib_workdir"])
    assert [p.name for p in wd.glob(".calib_slurm_*.json")] == [EXIT_RECORD.format(job_id=job_id)]
    assert summary["trials_complete"] == 2 and summary["trials_lost_and_reproposed"] == 1
    assert summary["trials_running"] == 0
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    queue = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout.split("\n")
    assert not [q for q in queue if q.strip() and q.split()[1] in ("PENDING", "RUNNING")]


@pytest.mark.slurm
@pytest.mark.lammps
@pytest.mark.parametrize("wait_for_job", [False, True], ids=["job-still-running", "job-finished-meanwhile"])
def test_restarted_driver_reattaches_after_sigkill(slurm, tmp_path: Path, wait_for_job: bool):
    name = "slurm_reattach"
    # trials about twice smoke's length, so the kill lands while the job runs
    study = write_study(tmp_path, name, trials=2, parallel=1, optimizer={"n_initial": 2},
                        resources={"backend": "slurm", "slurm": {"poll_interval_s": 0.5}},
                        fidelities={"smoke": {"equilibration_steps": 30_000}})
    runs = tmp_path / "runs"
    storage = f"sqlite:///{runs / 'calib.db'}"
    args = ["optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", "--runs-dir", str(runs),
            "--storage", storage, "--json"]
    victim = _kill_driver_while_a_job_runs(tmp_path, name, storage, args)
    job_id = victim.user_attrs["calib_jobs"][0]["job_id"]
    assert _squeue(job_id) in ("RUNNING", "COMPLETING", "COMPLETED"), "the job died with its driver"
    if not wait_for_job:  # the case under test: the driver restarts while the job still runs
        assert _squeue(job_id) == "RUNNING", "the job ended before the driver could be restarted"
    if wait_for_job:
        _wait(lambda: _squeue(job_id) == "COMPLETED", 240, "the orphaned job completed")
    summary = parse_json_stdout(run_calib(*args, cwd=tmp_path))
    _check_reattached(tmp_path, name, storage, victim, summary)
