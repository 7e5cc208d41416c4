"""Local backend: each job is a subprocess in its own session, in its trial directory.

Jobs die with the driver (``PR_SET_PDEATHSIG``), so a killed ``calib optimize`` leaves no
orphan LAMMPS behind; their trials are recovered as failed on the next run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .backend import STDERR_FILE, STDOUT_FILE, JobHandle, JobResult, JobState, Task

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class _Running:
    proc: subprocess.Popen
    task: Task
    started: float
    result: JobResult | None = None


class LocalBackend:
    """Runs tasks as local subprocesses. ``cores`` is the machine share it may use."""

    name = "local"

    def __init__(self, cores: int | None = None) -> None:
        self._cores = cores or (os.cpu_count() or 1)
        self._jobs: dict[str, _Running] = {}

    @property
    def slots(self) -> int:
        return self._cores

    def submit(self, task: Task) -> JobHandle:
        workdir = Path(task.workdir)
        env = {**os.environ, **task.env}
        with open(workdir / STDOUT_FILE, "wb") as out, open(workdir / STDERR_FILE, "wb") as err:
            proc = subprocess.Popen(
                list(task.argv), cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, preexec_fn=_child_setup,
            )
        job_id = str(proc.pid)
        self._jobs[job_id] = _Running(proc, task, time.monotonic())
        return JobHandle(self.name, job_id, workdir)

    def _finish(self, run: _Running, state: JobState, reason: str | None) -> None:
        run.result = JobResult(state, run.proc.returncode, time.monotonic() - run.started, reason)

    def _kill(self, run: _Running) -> None:
        try:
            os.killpg(run.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.proc.wait()

    def poll(self, handle: JobHandle) -> JobState:
        run = self._jobs[handle.job_id]
        if run.result is not None:
            return run.result.state
        rc = run.proc.poll()
        if rc is None:
            timeout = run.task.timeout_s
            if timeout is not None and time.monotonic() - run.started > timeout:
                self._kill(run)
                self._finish(run, JobState.TIMEOUT, f"timeout: wall time exceeded {timeout:g} s")
                return JobState.TIMEOUT
            return JobState.RUNNING
        if rc == 0:
            self._finish(run, JobState.DONE, None)
        else:
            self._finish(run, JobState.FAILED, f"exit status {rc}")
        return run.result.state  # type: ignore[union-attr]

    def cancel(self, handle: JobHandle) -> None:
        run = self._jobs[handle.job_id]
        if run.result is None:
            self._kill(run)
            self._finish(run, JobState.CANCELLED, "cancelled")

    def collect(self, handle: JobHandle) -> JobResult:
        state = self.poll(handle)
        if not state.terminal:
            raise RuntimeError(f"job {handle.job_id} is still {state.value}")
        return self._jobs[handle.job_id].result  # type: ignore[return-value]

    def wait(self, handle: JobHandle, poll_s: float = 0.2) -> JobResult:
        """Block until the job is terminal and return its result."""
        while not self.poll(handle).terminal:
            time.sleep(poll_s)
        return self.collect(handle)
