"""End to end, on a smoke study (real LAMMPS, Optuna and MLflow stores): what ``calib
optimize`` writes to a stderr that is not a terminal.

With stderr redirected to a file, ``calib optimize`` writes plain lines: no MLflow or
alembic log lines, no progress bar (its last frame would stay in the file), each trial's line
whole on one line whatever the width rich assumes (``COLUMNS=40`` here: rich, which wraps
at ``COLUMNS`` when not on a terminal, would cut smoke's short lines)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import write_study

pytestmark = pytest.mark.lammps
NAME = "e2e_cli"
SHORT = {"smoke": {"equilibration_steps": 2000, "averaging_steps": 4000, "density_window_steps": 4000,
                   "density_max_steps": 4000}}
"""Smoke, shortened (as in ``test_e2e_refine``): the command line is under test, not the density."""
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "MLFLOW_LOGGING_LEVEL", "LD_LIBRARY_PATH")
"""Variables that would make rich take a file for a terminal, or set MLflow's log level."""


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict:
    """A 2-trial smoke study, run by its study file with stderr to a file and stdout to another."""
    tmp = tmp_path_factory.mktemp("cli")
    study = tmp / f"settings_of_{NAME}.yaml"
    shutil.move(write_study(tmp, NAME, trials=2, parallel=1, optimizer={"n_initial": 2}, fidelities=SHORT), study)
    runs = tmp / "runs"
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    env["COLUMNS"] = "40"
    err, out = tmp / "stderr.txt", tmp / "stdout.txt"
    with err.open("w") as err_file, out.open("w") as out_file:
        proc = subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study",
                               str(study), "--fidelity", "smoke", "--runs-dir", str(runs)], cwd=tmp, env=env,
                              stdout=out_file, stderr=err_file, timeout=600)
    assert proc.returncode == 0, err.read_text()[-3000:]
    return {"tmp": tmp, "study": study, "runs": runs, "common": ["--runs-dir", str(runs)],
            "storage": f"sqlite:///{runs / 'calib.db'}", "stderr": err.read_text(), "stdout": out.read_text()}


# --------------------------------------------------------------------------- stderr, not a terminal


def test_stderr_to_a_file_carries_plain_whole_lines(stored):
    err = stored["stderr"]
    notes = [line for line in err.splitlines() if line.startswith("note: ")]  # calib's own, before the study
    assert err.splitlines()[:len(notes)] == notes, err
    lines = err.splitlines()[len(notes):]
    assert lines[0] == f"{NAME} [slurry/smoke]: 0 of 2 trials finished", err
    assert not [line for line in lines if re.search(r"mlflow\.store|alembic|\bINFO\b", line)], err
    assert not re.search("[\u2500-\u259f]", err), err  # box drawing and blocks: a progress bar's frame
    trial_lines = [line for line in lines if line.startswith("  trial ")]
    assert len(trial_lines) == 2, err
    for line in trial_lines:  # each whole: from its number to its objective
        assert re.fullmatch(r"  trial \d: density \d\.\d+ g/cm\^3 \(objective [\d.e+-]+\)", line), err
    assert lines[1:] == trial_lines, err  # nothing else: no warning was raised by this study
    assert f"study {NAME} " in stored["stdout"]  # the summary on stdout
