"""Every process of a local job dies with its job and with its driver, MPI ranks included.

MPICH's launcher puts its proxy and each MPI rank in a session of its own (``setsid``), so
neither the job's process group nor ``PR_SET_PDEATHSIG`` on ``mpirun`` reaches the ranks:
measured with the bundled ``mpirun -np 2 lmp``, ``killpg`` of ``mpirun`` left the proxy and
both ranks running. What every process of a job does keep is its environment, so each job
is tagged with two variables (``DRIVER_VAR``: this driver process, ``JOB_VAR``: the job)
and killed by tag, found with psutil.

A driver killed outright (SIGKILL) cannot clean up, so the first tagged job starts a small
watchdog (``python -m sim_backends.reaper TOKEN``) whose stdin is a pipe from the driver:
when the driver dies the pipe closes, and the watchdog kills every process tagged with the
driver's token and exits.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

DRIVER_VAR = "CALIB_DRIVER_TOKEN"
JOB_VAR = "CALIB_JOB_TOKEN"


def tagged(var: str, value: str) -> list[int]:
    """Process ids whose environment holds ``var=value`` (this process excluded)."""
    me = os.getpid()
    out = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):  # gone, or not ours
            continue
        if env.get(var) == value:
            out.append(proc.pid)
    return out


def kill_tagged(var: str, value: str, patience_s: float = 5.0) -> int:
    """SIGKILL every process tagged ``var=value`` until none is left (a launcher may start
    a rank while the first ones die) or ``patience_s`` passes; returns how many were sent
    the signal."""
    killed: set[int] = set()
    deadline = time.monotonic() + patience_s
    while True:
        pids = [p for p in tagged(var, value) if not _zombie(p)]
        if not pids or time.monotonic() > deadline:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    """A dead process not yet reaped by its parent (it holds no resources), or one gone."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


class Watchdog:
    """This driver's token and its watchdog process (started on first use)."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()

    def env(self, job_token: str) -> dict[str, str]:
        """The variables that tag a job of this driver; starts the watchdog if needed."""
        self.ensure()
        return {DRIVER_VAR: self.token, JOB_VAR: job_token}

    def ensure(self) -> None:
        if os.getpid() != self._pid:  # a forked child: its own token and watchdog
            self.__init__()
        if self._proc is not None and self._proc.poll() is None:
            return
        env = {k: v for k, v in os.environ.items() if k not in (DRIVER_VAR, JOB_VAR)}
        self._proc = subprocess.Popen([sys.executable, "-m", "sim_backends.reaper", self.token],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=env, start_new_session=True,  # a Ctrl-C to the terminal does not reach it
                                      cwd=Path(__file__).resolve().parent.parent)


_WATCHDOG: Watchdog | None = None


def watchdog() -> Watchdog:
    """The process-wide ``Watchdog``."""
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = Watchdog()
    return _WATCHDOG


def _watch(token: str) -> None:
    """The watchdog's body: wait for the driver's pipe to close, then kill its jobs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    kill_tagged(DRIVER_VAR, token)


if __name__ == "__main__":
    _watch(sys.argv[1])
