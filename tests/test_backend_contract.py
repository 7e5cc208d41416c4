"""Contract every backend (``sim_backends.backend.Backend``) must keep, run with real
subprocesses in ``tmp_path`` work directories.

To add a backend, append a ``pytest.param`` to ``BACKENDS`` (a factory taking the pytest
request, so that it can start its scheduler through a fixture, and returning a fresh
backend). Slurm runs on a real single-node cluster the ``slurm`` fixture starts. Tests use only the four
calls of the protocol (``submit``, ``poll``, ``cancel``, ``collect``), never ``wait``.
``test_local_job_dies_with_driver`` is specific to the local backend (a Slurm job is meant
to outlive its driver).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest

from sim_backends.backend import STDERR_FILE, STDOUT_FILE, Backend, JobHandle, JobResult, JobState, Task
from sim_backends.local import LocalBackend
from sim_backends.slurm import SlurmBackend, SlurmOptions

def _slurm(request) -> Backend:
    request.getfixturevalue("slurm")
    return SlurmBackend(SlurmOptions(poll_interval_s=0.2))


BACKENDS = [
    pytest.param(lambda request: LocalBackend(cores=2), id="local"),
    pytest.param(_slurm, id="slurm", marks=pytest.mark.slurm),
]

TERMINAL_WAIT_S = 10.0


# --------------------------------------------------------------------------- helpers


def _proc_state(pid: int) -> str | None:
    """State letter from /proc/<pid>/stat, or None if the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for its (new) parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists under another user: pid reused, ours is gone
        return True
    return _proc_state(pid) in (None, "Z", "X")


def _wait_gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _wait_file(path: Path, within_s: float) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {within_s} s")


class Harness:
    """A backend under test plus fresh work directories; cancels what is left at teardown."""

    def __init__(self, backend: Backend, root: Path) -> None:
        self.backend = backend
        self.root = root
        self.handles: list[JobHandle] = []
        self._n = 0

    def submit(self, *argv: str, env: dict[str, str] | None = None, timeout_s: float | None = None) -> JobHandle:
        self._n += 1
        workdir = self.root / f"trial_{self._n:03d}"
        workdir.mkdir()
        handle = self.backend.submit(Task(workdir=workdir, argv=tuple(argv), env=env or {},
                                          timeout_s=timeout_s, name=f"contract_{self._n}"))
        self.handles.append(handle)
        return handle

    def wait_terminal(self, handle: JobHandle, within_s: float = TERMINAL_WAIT_S) -> JobState:
        deadline = time.monotonic() + within_s
        state = self.backend.poll(handle)
        while not state.terminal and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self.backend.poll(handle)
        assert state.terminal, f"job {handle.job_id} still {state} after {within_s} s"
        return state

    def run(self, *argv: str, **kw) -> tuple[JobHandle, JobResult]:
        handle = self.submit(*argv, **kw)
        self.wait_terminal(handle)
        return handle, self.backend.collect(handle)

    def cleanup(self) -> None:
        for h in self.handles:
            try:
                if not self.backend.poll(h).terminal:
                    self.backend.cancel(h)
            except Exception:
                pass


@pytest.fixture(params=BACKENDS)
def harness(request, tmp_path: Path):
    factory: Callable[..., Backend] = request.param
    h = Harness(factory(request), tmp_path)
    yield h
    h.cleanup()


# --------------------------------------------------------------------------- contract


def test_slots_positive(harness: Harness) -> None:
    assert harness.backend.slots >= 1
    assert isinstance(harness.backend.name, str) and harness.backend.name


def test_done(harness: Harness) -> None:
    handle, result = harness.run("sh", "-c", "echo hi; exit 0")
    assert handle.backend == harness.backend.name
    assert handle.workdir == harness.root / "trial_001"
    assert result.state is JobState.DONE
    assert result.returncode == 0
    assert result.wall_s >= 0
    assert "hi" in (handle.workdir / STDOUT_FILE).read_text()


def test_stderr_lands_in_workdir(harness: Harness) -> None:
    handle, result = harness.run("sh", "-c", "echo oops >&2")
    assert result.state is JobState.DONE
    assert "oops" in (handle.workdir / STDERR_FILE).read_text()
    assert "oops" not in (handle.workdir / STDOUT_FILE).read_text()


def test_failed_exit_status(harness: Harness) -> None:
    _, result = harness.run("sh", "-c", "exit 3")
    assert result.state is JobState.FAILED
    assert result.returncode == 3
    assert result.reason and "3" in result.reason


def test_terminal_state_is_stable(harness: Harness) -> None:
    handle, first = harness.run("sh", "-c", "exit 0")
    harness.backend.cancel(handle)  # cancelling a finished job changes nothing
    assert harness.backend.poll(handle) is JobState.DONE
    assert harness.backend.collect(handle) == first


def test_timeout_kills_process(harness: Harness) -> None:
    t0 = time.monotonic()
    handle = harness.submit("sh", "-c", "echo $$ > job.pid; exec sleep 30", timeout_s=0.5)
    pid = int(_wait_file(handle.workdir / "job.pid", 5.0))
    state = harness.wait_terminal(handle, within_s=5.0)
    assert state is JobState.TIMEOUT
    assert time.monotonic() - t0 < 5.0
    result = harness.backend.collect(handle)
    assert result.state is JobState.TIMEOUT
    assert result.reason and "timeout" in result.reason.lower()
    assert _wait_gone(pid, 5.0), _proc_state(pid)


def test_cancel_kills_process(harness: Harness) -> None:
    handle = harness.submit("sh", "-c", "echo $$ > job.pid; exec sleep 30")
    pid = int(_wait_file(handle.workdir / "job.pid", 5.0))
    assert harness.backend.poll(handle) in (JobState.PENDING, JobState.RUNNING)
    harness.backend.cancel(handle)
    assert harness.wait_terminal(handle, within_s=5.0) is JobState.CANCELLED
    assert harness.backend.collect(handle).state is JobState.CANCELLED
    assert _wait_gone(pid, 5.0), _proc_state(pid)


def test_cancel_kills_grandchildren(harness: Harness) -> None:
    """mpirun-style jobs: the job's own children die with it, not only its leader."""
    handle = harness.submit("sh", "-c", "sleep 30 & echo $! > child.pid; wait")
    child = int(_wait_file(handle.workdir / "child.pid", 5.0))
    assert not _gone(child)
    harness.backend.cancel(handle)
    assert harness.wait_terminal(handle, within_s=5.0) is JobState.CANCELLED
    assert _wait_gone(child, 5.0), _proc_state(child)


def test_collect_running_raises(harness: Harness) -> None:
    handle = harness.submit("sleep", "30")
    with pytest.raises(RuntimeError):
        harness.backend.collect(handle)
    harness.backend.cancel(handle)


def test_env_reaches_child(harness: Harness) -> None:
    handle, result = harness.run("sh", "-c", "echo $FOO", env={"FOO": "bar-123"})
    assert result.state is JobState.DONE
    assert (handle.workdir / STDOUT_FILE).read_text().strip() == "bar-123"


def test_child_cwd_is_workdir(harness: Harness) -> None:
    handle, result = harness.run("pwd")
    assert result.state is JobState.DONE
    out = (handle.workdir / STDOUT_FILE).read_text().strip()
    assert os.path.realpath(out) == os.path.realpath(handle.workdir)


def test_jobs_run_concurrently(harness: Harness) -> None:
    a = harness.submit("sleep", "30")
    b = harness.submit("sh", "-c", "echo second")
    assert a.job_id != b.job_id
    assert harness.wait_terminal(b) is JobState.DONE
    assert harness.backend.poll(a) in (JobState.PENDING, JobState.RUNNING)
    harness.backend.cancel(a)


def test_jobs_beyond_the_core_budget_wait(harness: Harness) -> None:
    """More one-core jobs than slots: the extra ones wait (PENDING) and all finish."""
    n = harness.backend.slots + 1
    handles = [harness.submit("sh", "-c", "sleep 0.5; echo ok") for _ in range(n)]
    assert harness.backend.poll(handles[-1]) is JobState.PENDING
    assert not (handles[-1].workdir / STDOUT_FILE).exists()
    for h in handles:
        assert harness.wait_terminal(h) is JobState.DONE
        assert (h.workdir / STDOUT_FILE).read_text().strip() == "ok"


def test_pending_job_can_be_cancelled(harness: Harness) -> None:
    blockers = [harness.submit("sleep", "30") for _ in range(harness.backend.slots)]
    waiting = harness.submit("sh", "-c", "echo ran > ran.txt")
    assert harness.backend.poll(waiting) is JobState.PENDING
    harness.backend.cancel(waiting)
    assert harness.backend.poll(waiting) is JobState.CANCELLED
    for b in blockers:
        harness.backend.cancel(b)
    time.sleep(0.3)
    assert not (waiting.workdir / "ran.txt").exists()


def test_command_that_cannot_start_fails(harness: Harness) -> None:
    handle, result = harness.run("/no/such/program-calib")
    assert result.state is JobState.FAILED
    assert result.reason


# --------------------------------------------------------------------------- local only


def test_local_cancelling_queued_jobs_starts_none(tmp_path: Path) -> None:
    """Cancelling a trial's jobs one by one must not start its other queued jobs."""
    backend = LocalBackend(cores=1)
    dirs = [tmp_path / f"j{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    handles = [backend.submit(Task(d, ("sh", "-c", "echo started > started.txt; sleep 30"))) for d in dirs]
    _wait_file(dirs[0] / "started.txt", 5.0)
    for h in handles:
        backend.cancel(h)
    time.sleep(0.3)
    assert [backend.poll(h) for h in handles] == [JobState.CANCELLED] * 3
    assert not (dirs[1] / "started.txt").exists() and not (dirs[2] / "started.txt").exists()

DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sim_backends.backend import Task
    from sim_backends.local import LocalBackend

    backend = LocalBackend(cores=1)
    handle = backend.submit(Task(workdir=Path(sys.argv[1]), argv=("sleep", "60")))
    print(backend.pid(handle), flush=True)
    time.sleep(60)
""")


def test_local_job_dies_with_driver(tmp_path: Path) -> None:
    """A SIGKILLed ``calib optimize`` leaves no orphan simulation (PR_SET_PDEATHSIG)."""
    workdir = tmp_path / "trial"
    workdir.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(workdir)], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        line = driver.stdout.readline()
        assert line.strip(), "driver printed no job id"
        child = int(line)
        assert not _gone(child)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=5)
        assert _wait_gone(child, 5.0), f"job {child} outlived its driver (state {_proc_state(child)})"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if child is not None and not _gone(child):
            try:
                os.killpg(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.stdout.close()
