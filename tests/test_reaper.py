"""Every process of a local job (each MPI rank) dies with the job and with its driver, with
the real bundled ``mpirun`` and ``lmp`` (MPICH's launcher puts each rank in a session of its
own; its proxy kills them when ``mpirun`` dies, but another launcher need not: the
``detached_task`` stands in for one whose processes outlive it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sim_backends.backend import JobState, Task
from sim_backends.lammps.install import locate_lammps
from sim_backends.local import LocalBackend
from procs import LAUNCHED, processes_in
from sim_backends.reaper import DRIVER_VAR, kill_tagged, tagged

pytestmark = pytest.mark.lammps

REPO = Path(__file__).resolve().parent.parent
LONG_DECK = """units lj
atom_style atomic
lattice fcc 0.8442
region box block 0 5 0 5 0 5
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create 1.44 87287 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
fix 1 all nve
run 100000000
"""


def lammps_in(folder: Path) -> list[int]:
    """LAMMPS, its launcher and the stand-in "ranks" (``sleep``) running in ``folder``."""
    return processes_in(folder, (*LAUNCHED, "sleep"), below=False)


def wait_for(cond, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def two_rank_task(workdir: Path) -> Task:
    lmp = locate_lammps()
    (workdir / "in.long").write_text(LONG_DECK)
    return Task(workdir, lmp.argv("in.long", "log.lammps", 1, 1), lmp.thread_env(1), ranks=2, threads=1)


def detached_task(workdir: Path) -> Task:
    """A launcher that starts two "ranks" in sessions of their own and waits for them."""
    return Task(workdir, ("bash", "-c", "setsid sleep 600 & setsid sleep 600 & wait"), {}, ranks=1, threads=1)


def test_cancel_kills_processes_in_other_sessions(tmp_path: Path) -> None:
    backend = LocalBackend(cores=2)
    h = backend.submit(detached_task(tmp_path))
    assert wait_for(lambda: len(lammps_in(tmp_path)) == 2)
    backend.cancel(h)
    assert wait_for(lambda: not lammps_in(tmp_path), 5.0), lammps_in(tmp_path)


def test_cancel_kills_every_rank(tmp_path: Path) -> None:
    backend = LocalBackend(cores=2, mpirun=locate_lammps().mpirun)
    h = backend.submit(two_rank_task(tmp_path))
    # the launcher, its proxy and both ranks are up
    assert wait_for(lambda: sum(1 for p in lammps_in(tmp_path)
                                if Path(f"/proc/{p}/comm").read_text().strip() == "lmp") == 2)
    backend.cancel(h)
    assert backend.poll(h) == JobState.CANCELLED
    assert wait_for(lambda: not lammps_in(tmp_path), 5.0), lammps_in(tmp_path)


@pytest.mark.parametrize("task, n", [("two_rank_task", 4), ("detached_task", 2)])
def test_ranks_die_with_a_killed_driver(tmp_path: Path, task: str, n: int) -> None:
    """A driver SIGKILLed while its job runs (2 MPI ranks, or 2 processes in sessions of
    their own): the watchdog kills every process of the job."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        from tests.test_reaper import {task} as task
        from sim_backends.local import LocalBackend
        from sim_backends.lammps.install import locate_lammps
        from sim_backends.reaper import watchdog
        b = LocalBackend(cores=2, mpirun=locate_lammps().mpirun)
        b.submit(task(Path({str(tmp_path)!r})))
        print(watchdog().token, flush=True)
        time.sleep(600)
    """))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    token = driver.stdout.readline().strip()
    try:
        assert token
        assert wait_for(lambda: len(lammps_in(tmp_path)) == n)
        assert len(tagged(DRIVER_VAR, token)) >= n  # every process carries the driver's tag
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        assert wait_for(lambda: not lammps_in(tmp_path), 15.0), lammps_in(tmp_path)
        assert not tagged(DRIVER_VAR, token)
    finally:
        driver.kill()
        kill_tagged(DRIVER_VAR, token or "none")
