"""Bad input to the real ``calib`` CLI: one line naming file (or option) and field, exit
status 2, and nothing written (no ``runs/``, no study database, no MLflow store, no trial
directory).

The cases themselves are the corpus ``tests/data/bad`` (``test_bad_corpus.py``). Here: the
harness other tests use (``Inputs``: a copy of ``studies/ssb_slurry.yaml`` whose dataset is a
copy of ``experiments_data/ssb_nmc622_lpscl/dataset.yaml`` in ``tmp_path/mydata``;
``assert_bad_input``), its baselines (the unmodified copies load), and what good input
must give (every shipped study loads; a user CSV's provenance is recorded).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STUDY_SRC = REPO / "studies" / "ssb_slurry.yaml"
DATASET_SRC = REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml"


# --------------------------------------------------------------------------- harness


def _listing(root: Path) -> set[str]:
    """Every path (files and folders) under ``root``, relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, "-m", "calib.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


class Inputs:
    """A study and its dataset in ``tmp_path``: ``study.yaml`` -> ``mydata/dataset.yaml``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.study = root / "study.yaml"
        self.dataset = root / "mydata" / "dataset.yaml"
        self.dataset.parent.mkdir()
        self.dataset.write_text(DATASET_SRC.read_text())
        study = yaml.safe_load(STUDY_SRC.read_text())
        study["dataset"] = "mydata/dataset.yaml"
        self.write_study(study)

    def study_data(self) -> dict:
        return yaml.safe_load(self.study.read_text())

    def dataset_data(self) -> dict:
        return yaml.safe_load(self.dataset.read_text())

    def write_study(self, data) -> None:
        self.study.write_text(yaml.safe_dump(data, sort_keys=False))

    def write_dataset(self, data) -> None:
        self.dataset.write_text(yaml.safe_dump(data, sort_keys=False))

    def optimize(self, *extra: str, fidelity: str = "smoke", study: Path | None = None,
                 stage: str = "slurry") -> subprocess.CompletedProcess:
        args = ["optimize", "--stage", stage, "--study", str(study or self.study),
                "--fidelity", fidelity, "--trials", "1", "--runs-dir", str(self.root / "runs"), *extra]
        return _cli(self.root, *args)


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    return Inputs(tmp_path)


def assert_bad_input(inputs: Inputs, run: Callable[[], subprocess.CompletedProcess], *names: str) -> str:
    """Run ``run``; check exit 2, one stderr line naming every one of ``names``, nothing written."""
    before = _listing(inputs.root)
    proc = run()
    after = _listing(inputs.root)
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "Traceback" not in err
    for name in names:
        assert name in err, f"{name!r} not named in: {err}"
    assert proc.stdout == "", f"unexpected stdout: {proc.stdout!r}"
    assert not (inputs.root / "runs").exists(), "runs dir was created"
    assert after == before, f"new paths written: {sorted(after - before)}"
    return err


# --------------------------------------------------------------------------- harness sanity


def test_inputs_are_valid_baseline(inputs: Inputs) -> None:
    """The unmodified copies load: a case built on them differs by its one defect only."""
    from calib.study.load import load_study

    loaded = load_study(inputs.study, fidelity="smoke")
    assert loaded.dataset_path == inputs.dataset
    assert loaded.spec.stage == "slurry"


def test_harness_detects_writes(tmp_path: Path) -> None:
    before = _listing(tmp_path)
    subprocess.run([sys.executable, "-c", "import pathlib; pathlib.Path('x/y').mkdir(parents=True)"],
                   cwd=tmp_path, check=True)
    assert _listing(tmp_path) - before == {"x", os.path.join("x", "y")}


# --------------------------------------------------------------------------- viscosity curve

GOOD_CSV = "shear_rate [1/s],viscosity [Pa s]\n1,20\n18,7.48\n125,2.86\n"


def _with_curve_objective(inputs: Inputs) -> None:
    """The SSB study scoring the viscosity curve too (its dataset ships no curve)."""
    data = inputs.study_data()
    data["objective"]["targets"]["viscosity_curve"] = 1.0
    inputs.write_study(data)


def test_curve_baseline_loads(inputs: Inputs) -> None:
    """Control: a good CSV with the curve objective loads (the corpus's CSV cases fail on their defect)."""
    from calib.study.load import load_study

    _with_curve_objective(inputs)
    csv = inputs.root / "rheo.csv"
    csv.write_text(GOOD_CSV)
    loaded = load_study(inputs.study, fidelity="smoke", viscosity_csv=csv)
    assert loaded.curve is not None and loaded.curve.viscosity_pa_s == (20.0, 7.48, 2.86)


def test_viscosity_csv_provenance_is_recorded(inputs: Inputs) -> None:
    """A user CSV's path, kind and checksum become the curve's recorded source."""
    from calib.study.load import load_study

    _with_curve_objective(inputs)
    data = inputs.study_data()
    data["viscosity"] = {"csv_kind": "synthetic"}
    inputs.write_study(data)
    csv = inputs.root / "rheo.csv"
    csv.write_text(GOOD_CSV)
    loaded = load_study(inputs.study, fidelity="smoke", viscosity_csv=csv)
    import hashlib

    assert str(csv.resolve()) in loaded.curve_source
    assert "kind synthetic" in loaded.curve_source
    assert hashlib.sha256(csv.read_bytes()).hexdigest() in loaded.curve_source


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_study_file_loads(path: Path) -> None:
    """The study files users copy from are valid (the chained ones load without their
    upstream run: that is checked when the study starts)."""
    from calib.study.load import load_study

    loaded = load_study(path)
    assert loaded.spec.name == path.stem  # the study is found under the name of its file
    assert loaded.spec.fidelity == loaded.spec.ladder[-1]


# --------------------------------------------------------------------------- folders that cannot be written


def _without_root_override(args: list[str]) -> list[str]:
    """``args`` run so that file permissions hold: as root (the tests' user here), without
    the capabilities that let root write anywhere (``setpriv``, util-linux); as another
    user, unchanged."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *args]


@pytest.mark.parametrize("where", ["runs-dir", "tracking-uri", "storage", "export-out"])
def test_a_folder_that_cannot_be_written_is_refused_before_anything_is_written(inputs: Inputs, where: str) -> None:
    """A read-only folder for the runs, the MLflow store, the ledger or the export: one
    line naming the option and the folder, exit 2, nothing written (``os.access`` decides,
    so the test drops root's permission override to mean anything)."""
    ro = inputs.root / "readonly"
    ro.mkdir()
    runs = inputs.root / "runs"
    cases = {
        "runs-dir": (["--runs-dir", str(ro / "runs")], "--runs-dir"),
        "tracking-uri": (["--runs-dir", str(runs), "--tracking-uri", f"sqlite:///{ro / 'mlruns' / 'mlflow.db'}"],
                         "--tracking-uri"),
        "storage": (["--runs-dir", str(runs), "--storage", f"sqlite:///{ro / 'calib.db'}"], "--storage"),
        "export-out": (None, "--out"),
    }
    extra, option = cases[where]
    if extra is None:
        args = ["export", "--study", "ssb_slurry", "--runs-dir", str(runs), "--out", str(ro / "table")]
    else:
        args = ["optimize", "--stage", "slurry", "--study", str(inputs.study), "--fidelity", "smoke",
                "--trials", "1", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    ro.chmod(0o555)
    try:
        err = assert_bad_input(inputs, lambda: subprocess.run(
            _without_root_override([sys.executable, "-m", "calib.cli", *args]), cwd=inputs.root,
            capture_output=True, text=True, env=env, timeout=120), option, str(ro))
    finally:
        ro.chmod(0o755)
    assert "not writable" in err or "cannot be written" in err, err
