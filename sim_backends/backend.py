"""The backend interface: run one command line in one trial directory, somewhere.

A backend knows nothing about slurries or LAMMPS decks: it is given a ``Task`` (a directory,
an argv, an environment, a time limit, resources) and answers ``submit`` with a
``JobHandle`` that can be serialised into the trial ledger, then ``poll``, ``cancel`` and
``collect`` over that handle. ``local`` runs subprocesses; ``slurm`` submits batch jobs
(``sbatch``/``squeue``/``scancel``/``sacct``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol


class JobState(str, enum.Enum):
    """Lifecycle of a job. Terminal states: DONE, FAILED, TIMEOUT, CANCELLED."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED)


@dataclass(frozen=True)
class Task:
    """One command to run in one directory.

    workdir: the trial directory (exists; the command's cwd; stdout/stderr land here).
    argv: the command line.
    env: extra environment variables for the command.
    timeout_s: wall-clock limit (s); None for no limit.
    ranks: MPI ranks: ``argv`` is one rank's command and the backend starts ``ranks`` of
    them with its MPI launcher (``mpirun`` locally, ``srun`` on Slurm).
    threads: OpenMP threads (cores) per rank.
    name: a label for the job (trial name).
    """

    workdir: Path
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    ranks: int = 1
    threads: int = 1
    name: str = "calib"

    @property
    def cores(self) -> int:
        """Cores the task uses (ranks x threads), for scheduling."""
        return self.ranks * self.threads


@dataclass(frozen=True)
class JobHandle:
    """A submitted job: backend name, the backend's job id, and the trial directory."""

    backend: str
    job_id: str
    workdir: Path


@dataclass(frozen=True)
class JobResult:
    """How a finished job ended: state, exit code (None if killed), wall time (s) and a
    short reason for non-DONE states."""

    state: JobState
    returncode: int | None
    wall_s: float
    reason: str | None = None


STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"


class Backend(Protocol):
    """What every backend implements (see tests/test_backend_contract.py)."""

    name: str

    @property
    def slots(self) -> int:
        """How many jobs of ``cores`` = 1 may run at once."""
        ...

    def submit(self, task: Task) -> JobHandle: ...

    def poll(self, handle: JobHandle) -> JobState: ...

    def cancel(self, handle: JobHandle) -> None: ...

    def collect(self, handle: JobHandle) -> JobResult:
        """The result of a job in a terminal state (raises if it is still running)."""
        ...
