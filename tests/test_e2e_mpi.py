"""A trial with two MPI ranks through MPICH's mpirun (resources.ranks in the study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHORT, parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps


def test_two_rank_trial(tmp_path: Path):
    study = write_study(tmp_path, "mpi_smoke", trials=1, parallel=1, resources={"ranks": 2, "threads": 1},
                        fidelities=SHORT)
    s = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                    "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", "none", "--json",
                                    cwd=tmp_path))
    assert s["trials_complete"] == 1, s["failures"]
    log = (tmp_path / "runs" / "mpi_smoke" / "trial_00000" / "log.lammps").read_text()
    assert "on 2 procs" in log
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # --tracking-uri none
