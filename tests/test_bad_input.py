"""Bad input to the real ``calib`` CLI: one line naming file (or option) and field, exit
status 2, and nothing written (no ``runs/``, no study database, no MLflow store, no trial
directory).

Every case starts from a copy of ``studies/ssb_slurry.yaml`` whose dataset is a copy of
``experiments_data/ssb_nmc622_lpscl/dataset.yaml`` in ``tmp_path/mydata``, so only the one
defect differs. No case gets as far as LAMMPS.
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
    """The unmodified copies load: each case below differs by its one defect only."""
    from calib.study import load_study

    loaded = load_study(inputs.study, fidelity="smoke")
    assert loaded.dataset_path == inputs.dataset
    assert loaded.spec.stage == "slurry"


def test_harness_detects_writes(tmp_path: Path) -> None:
    before = _listing(tmp_path)
    subprocess.run([sys.executable, "-c", "import pathlib; pathlib.Path('x/y').mkdir(parents=True)"],
                   cwd=tmp_path, check=True)
    assert _listing(tmp_path) - before == {"x", os.path.join("x", "y")}


def test_export_unknown_study_writes_nothing(tmp_path: Path) -> None:
    """Positive control on another command: no study db is created to look a study up."""
    before = _listing(tmp_path)
    proc = _cli(tmp_path, "export", "--study", "nosuch", "--runs-dir", "runs")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, proc.stderr
    assert "--storage" in err or "--study" in err
    assert not (tmp_path / "runs" / "calib.db").exists()
    assert not (tmp_path / "runs").exists()
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- options


def test_unknown_stage_option(inputs: Inputs) -> None:
    assert_bad_input(inputs, lambda: inputs.optimize(stage="drying"), "--stage", "stage", "drying")


def test_unknown_fidelity_option(inputs: Inputs) -> None:
    assert_bad_input(inputs, lambda: inputs.optimize(fidelity="huge"), "--fidelity", "fidelity", "huge")


@pytest.mark.parametrize("url", ["::::", "not-a-url://"])
def test_unparseable_storage(inputs: Inputs, url: str) -> None:
    assert_bad_input(inputs, lambda: inputs.optimize("--storage", url), "--storage", "url")


def test_storage_with_unknown_dialect(inputs: Inputs) -> None:
    assert_bad_input(inputs, lambda: inputs.optimize("--storage", "nosuchdialect://x", "--tracking-uri", "none"),
                     "--storage", "url")


# --------------------------------------------------------------------------- study file


def test_missing_study_file(inputs: Inputs) -> None:
    missing = inputs.root / "nosuch.yaml"
    err = assert_bad_input(inputs, lambda: inputs.optimize(study=missing), str(missing))
    assert "not found" in err


def test_malformed_yaml_study(inputs: Inputs) -> None:
    inputs.study.write_text("name: [unclosed\nstage: slurry\n")
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), "(file)")
    assert "YAML" in err


def test_study_is_a_list(inputs: Inputs) -> None:
    inputs.study.write_text("- name: ssb_slurry\n- stage: slurry\n")
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "(top level)")


def test_empty_study_file(inputs: Inputs) -> None:
    inputs.study.write_text("")
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "(top level)")


def test_unknown_fidelity_in_study(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["fidelity"] = "huge"
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "fidelity", "huge")


def test_unknown_stage_in_study(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["stage"] = "drying"
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "stage", "drying")


def test_unknown_free_parameter_key(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["parameters"]["free"]["eps_XX"] = {"low": 1.0, "high": 2.0}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "parameters.free.eps_XX")


def test_unknown_fixed_parameter_key(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["parameters"]["fixed"] = {"zeta_CBD": 1.0}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "parameters.fixed.zeta_CBD")


@pytest.mark.parametrize("low,high", [(5.0, 1.0), (1.0, 1.0)], ids=["low>high", "low==high"])
def test_bound_low_not_below_high(inputs: Inputs, low: float, high: float) -> None:
    data = inputs.study_data()
    data["parameters"]["free"]["eps_AM"] = {"low": low, "high": high}
    inputs.write_study(data)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), "eps_AM", "low")
    assert "parameters.free.eps_AM" in err


def test_study_dataset_path_missing(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["dataset"] = "nodata/dataset.yaml"
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "dataset", "nodata")


def test_study_dataset_name_unknown(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["dataset"] = "no_such_dataset_xyz"
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "dataset", "no_such_dataset_xyz")


def test_objective_target_stage_does_not_produce(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["objective"]["targets"] = {"viscosity": 1.0}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "objective.targets.viscosity")


def test_objective_target_not_in_dataset(inputs: Inputs) -> None:
    """The stage produces slurry_density but this dataset only has another target."""
    ds = inputs.dataset_data()
    ds["targets"] = {"other_density": ds["targets"]["slurry_density"]}
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "objective.targets.slurry_density")


# --------------------------------------------------------------------------- dataset file


@pytest.mark.parametrize("density", [0, -1])
def test_non_positive_density(inputs: Inputs, density: float) -> None:
    ds = inputs.dataset_data()
    ds["system"]["phases"]["SE"]["density_g_cm3"] = density
    inputs.write_dataset(ds)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "density_g_cm3")
    assert "SE" in err


def test_target_without_provenance(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    del ds["targets"]["slurry_density"]["provenance"]
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "targets.slurry_density.provenance")


def test_malformed_dataset_yaml(inputs: Inputs) -> None:
    inputs.dataset.write_text("name: [unclosed\n")
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "(file)")


def test_non_positive_density_names_exact_field(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    ds["system"]["phases"]["SE"]["density_g_cm3"] = 0
    inputs.write_dataset(ds)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "system.phases.SE.density_g_cm3")
    assert "Value error" not in err
