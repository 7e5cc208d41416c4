"""Live processes found under ``/proc`` by their working directory and name: what a test
checks to say that no LAMMPS (or MPI launcher) outlived its job or its driver."""

from __future__ import annotations

import os
from pathlib import Path

LAUNCHED = ("lmp", "mpirun", "mpiexec", "mpiexec.hydra", "hydra_pmi_proxy")
"""Process names of a LAMMPS run and its MPI launcher."""


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat[stat.rfind(")") + 2:].startswith(("Z", "X"))


def processes_in(root: Path, names: tuple[str, ...] | None = LAUNCHED, below: bool = True) -> list[int]:
    """Pids of live processes named in ``names`` (None: any) whose working directory is
    ``root`` or, with ``below``, a folder under it."""
    root_s = str(root)
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        inside = cwd == root_s or (below and cwd.startswith(root_s + os.sep))
        if inside and (names is None or comm in names) and alive(int(entry.name)):
            out.append(int(entry.name))
    return out
