"""Local backend: each job is a subprocess in its own session, in its trial directory.

Every process of a job, MPI ranks included, dies when the job is cancelled or times out
and when the driver dies, however it dies (``sim_backends.reaper``: jobs are tagged in their
environment, and a watchdog kills the tagged processes of a driver that is gone), so a killed
``calib optimize`` leaves no orphan LAMMPS behind; their trials are recovered on the next run.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .backend import STDERR_FILE, STDOUT_FILE, JobHandle, JobResult, JobState, Task
from .reaper import JOB_VAR, kill_tagged, watchdog

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class _Job:
    task: Task
    proc: subprocess.Popen | None = None
    started: float | None = None
    result: JobResult | None = None
    token: str = ""
    """The value of ``JOB_VAR`` in the environment of each of the job's processes."""


class LocalBackend:
    """Runs tasks as local subprocesses on at most ``cores`` cores; a task of several MPI
    ranks through ``mpirun -np`` (``mpirun``: the launcher; default: the one on ``PATH``).

    A task whose ``cores`` do not fit next to the running ones waits as PENDING and starts,
    first come first served, when a later ``poll`` finds room (a task wider than the whole
    budget starts alone). Its time limit counts from its start.
    """

    name = "local"

    def __init__(self, cores: int | None = None, mpirun: str | os.PathLike | None = None) -> None:
        self._cores = cores or (os.cpu_count() or 1)
        self._mpirun = str(mpirun) if mpirun is not None else shutil.which("mpirun")
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self._running: set[str] = set()
        self._n = 0

    @property
    def slots(self) -> int:
        return self._cores

    def submit(self, task: Task) -> JobHandle:
        self._n += 1
        job_id = f"{os.getpid()}.{self._n}"
        self._jobs[job_id] = _Job(task)
        self._queue.append(job_id)
        self._schedule()
        return JobHandle(self.name, job_id, Path(task.workdir))

    def _busy(self) -> int:
        return sum(self._jobs[j].task.cores for j in self._running)

    def _schedule(self) -> None:
        """Start queued jobs in order while they fit."""
        for job_id in list(self._queue):
            job = self._jobs[job_id]
            busy = self._busy()
            if busy and busy + job.task.cores > self._cores:
                break
            self._queue.remove(job_id)
            self._start(job_id, job)

    def _start(self, job_id: str, job: _Job) -> None:
        """Start a job; one that cannot start (no such program, no fork) ends FAILED."""
        workdir = Path(job.task.workdir)
        job.token = f"{watchdog().token}.{job_id}"
        env = {**os.environ, **job.task.env, **watchdog().env(job.token)}
        job.started = time.monotonic()
        argv = list(job.task.argv)
        if job.task.ranks > 1:
            if self._mpirun is None:
                job.result = JobResult(JobState.FAILED, None, 0.0,
                                       f"could not start: mpirun not found for {job.task.ranks} MPI ranks")
                return
            argv = [self._mpirun, "-np", str(job.task.ranks)] + argv
        try:
            with open(workdir / STDOUT_FILE, "wb") as out, open(workdir / STDERR_FILE, "wb") as err:
                job.proc = subprocess.Popen(
                    argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, preexec_fn=_child_setup,
                )
        except (OSError, subprocess.SubprocessError) as exc:
            job.result = JobResult(JobState.FAILED, None, 0.0, f"could not start: {exc}")
            return
        self._running.add(job_id)

    def pid(self, handle: JobHandle) -> int | None:
        """Process id of a started job (None while it is queued)."""
        proc = self._jobs[handle.job_id].proc
        return proc.pid if proc is not None else None

    def _finish(self, job_id: str, state: JobState, reason: str | None) -> None:
        job = self._jobs[job_id]
        self._running.discard(job_id)
        rc = job.proc.returncode if job.proc is not None else None
        wall = time.monotonic() - job.started if job.started is not None else 0.0
        job.result = JobResult(state, rc, wall, reason)

    def _kill(self, job: _Job) -> None:
        if job.proc is None:
            return
        try:
            os.killpg(job.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job.proc.wait()
        kill_tagged(JOB_VAR, job.token)  # MPI ranks live in sessions of their own

    def _update(self, job_id: str) -> JobState:
        job = self._jobs[job_id]
        if job.result is not None:
            return job.result.state
        if job.proc is None:
            return JobState.PENDING
        rc = job.proc.poll()
        if rc is None:
            timeout = job.task.timeout_s
            if timeout is not None and time.monotonic() - job.started > timeout:  # type: ignore[operator]
                self._kill(job)
                self._finish(job_id, JobState.TIMEOUT, f"timeout: wall time exceeded {timeout:g} s")
                return JobState.TIMEOUT
            return JobState.RUNNING
        if rc == 0:
            self._finish(job_id, JobState.DONE, None)
        else:
            kill_tagged(JOB_VAR, job.token)  # a rank the launcher left behind
            self._finish(job_id, JobState.FAILED, f"exit status {rc}")
        return job.result.state  # type: ignore[union-attr]

    def poll(self, handle: JobHandle) -> JobState:
        for job_id in list(self._running):  # free the cores of every job that ended
            self._update(job_id)
        self._schedule()
        return self._update(handle.job_id)

    def cancel(self, handle: JobHandle) -> None:
        """Kill a running job or drop a queued one (queued jobs start only in submit/poll,
        so cancelling a trial's jobs one by one never starts its other queued ones)."""
        job_id = handle.job_id
        job = self._jobs[job_id]
        if job.result is None:
            if job_id in self._queue:
                self._queue.remove(job_id)
            self._kill(job)
            self._finish(job_id, JobState.CANCELLED, "cancelled")

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
