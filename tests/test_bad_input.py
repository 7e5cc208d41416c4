"""Bad input to the real ``calib`` CLI: one line naming file (or option) and field, exit
status 2, and nothing written (no ``runs/``, no study database, no MLflow store, no trial
directory).

Every case starts from a copy of ``studies/ssb_slurry.yaml`` whose dataset is a copy of
``experiments_data/ssb_nmc622_lpscl/dataset.yaml`` in ``tmp_path/mydata``, so only the one
defect differs. No case gets as far as LAMMPS.
"""

from __future__ import annotations

import json

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
    assert_bad_input(inputs, lambda: inputs.optimize(stage="mixing"), "--stage", "stage", "mixing")


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
    data["stage"] = "mixing"
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "stage", "mixing")


def test_unknown_sampler(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["optimizer"] = {"sampler": "annealing"}
    inputs.write_study(data)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), "optimizer.sampler", "annealing")
    assert "composite" in err  # the known names


MF = {"sampler": "composite", "multi_fidelity": {"ladder": ["smoke", "dev"],
                                                "costs_core_s": {"smoke": 3.0, "dev": 32.0}}}


@pytest.mark.parametrize("change, field, words", [
    (lambda mf: mf["multi_fidelity"].pop("costs_core_s"), "optimizer.multi_fidelity.costs_core_s", "no cost"),
    (lambda mf: mf["multi_fidelity"]["costs_core_s"].pop("dev"), "optimizer.multi_fidelity.costs_core_s", "'dev'"),
    (lambda mf: mf["multi_fidelity"]["costs_core_s"].update(dev=2.0), "optimizer.multi_fidelity.costs_core_s",
     "rise"),
    (lambda mf: mf["multi_fidelity"]["costs_core_s"].update(dev=float("inf")),
     "optimizer.multi_fidelity.costs_core_s", "finite"),
    (lambda mf: mf["multi_fidelity"].update(ladder=["smoke", "huge"], costs_core_s={"smoke": 3.0, "huge": 32.0}),
     "optimizer.multi_fidelity.ladder", "huge"),
    (lambda mf: mf.update(sampler="tpe"), "optimizer.multi_fidelity", "composite"),
])
def test_bad_multi_fidelity_section(inputs: Inputs, change, field: str, words: str) -> None:
    data = inputs.study_data()
    data["fidelity"] = "dev"
    data["optimizer"] = json.loads(json.dumps(MF))
    change(data["optimizer"])
    inputs.write_study(data)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), field)
    assert words in err


def test_target_fidelity_outside_the_ladder(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["fidelity"] = "paper"
    data["optimizer"] = MF
    inputs.write_study(data)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), "fidelity", "outside the study's ladder")
    assert "smoke, dev" in err
    data["fidelity"] = "dev"
    inputs.write_study(data)
    assert_bad_input(inputs, lambda: inputs.optimize(fidelity="paper"), "--fidelity", "fidelity", "outside")


@pytest.mark.parametrize("q", [0, -2])
def test_batch_size_below_one(inputs: Inputs, q: int) -> None:
    data = inputs.study_data()
    data["optimizer"] = {"q": q}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "optimizer.q")


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


@pytest.mark.parametrize("phase, field", [("CBD", "dried_diameter_um"), ("CBD", "dried_density_g_cm3"),
                                          ("AM", "slurry_diameter_factor"), ("SE", "slurry_diameter_factor")])
def test_dataset_lacking_a_value_the_bead_convention_needs(inputs: Inputs, phase: str, field: str) -> None:
    """The solid CBD bead counts the CBD beads and the shell factor sizes AM/SE: without them
    no bead system can be built (the CBD pair must be dropped together)."""
    ds = inputs.dataset_data()
    del ds["system"]["phases"][phase][field]
    if field.startswith("dried_"):
        ds["system"]["phases"]["CBD"].pop("dried_diameter_um", None)
        ds["system"]["phases"]["CBD"].pop("dried_density_g_cm3", None)
        field = "dried_diameter_um"
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), f"system.phases.{phase}.{field}")


@pytest.mark.parametrize("field", ["slurry_diameter_factor", "dried_diameter_factor"])
@pytest.mark.parametrize("value", [0, -1.14])
def test_non_positive_shell_factor(inputs: Inputs, field: str, value: float) -> None:
    ds = inputs.dataset_data()
    ds["system"]["phases"]["AM"][field] = value
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), f"system.phases.AM.{field}")


def test_solid_cbd_heavier_than_its_slurry_bead(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    ds["system"]["phases"]["CBD"]["dried_diameter_um"] = 9.0
    inputs.write_dataset(ds)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "system.phases.CBD.dried_density_g_cm3")
    assert "negative" in err


def test_averaging_window_shorter_than_convergence_window(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["fidelities"] = {"smoke": {"averaging_steps": 10000, "density_window_steps": 20000,
                                    "density_max_steps": 20000}}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "fidelities", "density_window_steps")


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


# --------------------------------------------------------------------------- viscosity curve

GOOD_CSV = "shear_rate [1/s],viscosity [Pa s]\n1,20\n18,7.48\n125,2.86\n"


def _with_curve_objective(inputs: Inputs) -> None:
    """The SSB study scoring the viscosity curve too (its dataset ships no curve)."""
    data = inputs.study_data()
    data["objective"]["targets"]["viscosity_curve"] = 1.0
    inputs.write_study(data)


def test_curve_baseline_loads(inputs: Inputs) -> None:
    """Control: a good CSV with the curve objective loads, so each case below fails on its defect."""
    from calib.study import load_study

    _with_curve_objective(inputs)
    csv = inputs.root / "rheo.csv"
    csv.write_text(GOOD_CSV)
    loaded = load_study(inputs.study, fidelity="smoke", viscosity_csv=csv)
    assert loaded.curve is not None and loaded.curve.viscosity_pa_s == (20.0, 7.48, 2.86)


@pytest.mark.parametrize("text, where", [
    ("", "(file)"),
    ("shear_rate [1/s],viscosity [Pa s]\n", "(file)"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n0,1\n", "row 3"),
    ("shear_rate [1/s],viscosity [Pa s]\n-1,2\n", "row 2"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n2,-1\n", "row 3"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n1,1\n", "row 3"),
    ("shear_rate [1/s],viscosity [Pa s]\n2,2\n1,1\n", "row 3"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,nan\n", "row 2"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n3,\n", "row 3"),
    ("shear_rate [rpm],viscosity [Pa s]\n1,2\n", "row 1"),
    ("shear_rate [1/s],viscosity [poise per bar]\n1,2\n", "row 1"),
    ("shear_rate,viscosity\n1,2\n", "row 1"),
])
def test_bad_viscosity_csv(inputs: Inputs, text: str, where: str) -> None:
    _with_curve_objective(inputs)
    csv = inputs.root / "rheo.csv"
    csv.write_text(text)
    assert_bad_input(inputs, lambda: inputs.optimize("--viscosity-csv", str(csv)), str(csv), where)


def test_viscosity_csv_units_mismatch_study(inputs: Inputs) -> None:
    """Header says mPa s, the study file says Pa s: refused, not silently converted."""
    _with_curve_objective(inputs)
    data = inputs.study_data()
    data["viscosity"] = {"csv_viscosity_unit": "Pa s"}
    inputs.write_study(data)
    csv = inputs.root / "rheo.csv"
    csv.write_text("shear_rate [1/s],viscosity [mPa s]\n1,2000\n")
    assert_bad_input(inputs, lambda: inputs.optimize("--viscosity-csv", str(csv)), str(csv), "row 1", "match")


def test_missing_viscosity_csv(inputs: Inputs) -> None:
    _with_curve_objective(inputs)
    missing = inputs.root / "nosuch.csv"
    assert_bad_input(inputs, lambda: inputs.optimize("--viscosity-csv", str(missing)), str(missing), "not found")


def test_curve_objective_without_curve(inputs: Inputs) -> None:
    _with_curve_objective(inputs)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.study), "objective.targets.viscosity_curve")
    assert "--viscosity-csv" in err


def test_viscosity_csv_without_curve_objective(inputs: Inputs) -> None:
    csv = inputs.root / "rheo.csv"
    csv.write_text(GOOD_CSV)
    assert_bad_input(inputs, lambda: inputs.optimize("--viscosity-csv", str(csv)), "--viscosity-csv")


@pytest.mark.parametrize("rates", [[18.0, 18.0], [125.0, 18.0], [-1.0, 18.0], [0.0]])
def test_study_shear_rates_must_be_positive_and_increasing(inputs: Inputs, rates) -> None:
    _with_curve_objective(inputs)
    data = inputs.study_data()
    data["viscosity"] = {"shear_rates_per_s": rates}
    inputs.write_study(data)
    csv = inputs.root / "rheo.csv"
    csv.write_text(GOOD_CSV)
    assert_bad_input(inputs, lambda: inputs.optimize("--viscosity-csv", str(csv)), str(inputs.study),
                     "viscosity.shear_rates_per_s")


def test_unknown_not_converged_policy(inputs: Inputs) -> None:
    data = inputs.study_data()
    data["viscosity"] = {"not_converged": "ignore"}
    inputs.write_study(data)
    assert_bad_input(inputs, inputs.optimize, str(inputs.study), "viscosity.not_converged")


def test_dataset_curve_with_unknown_unit(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    ds["curves"] = {"viscosity_curve": {"viscosity_unit": "poise per bar", "points": [
        {"shear_rate": 1.0, "viscosity": 2.0}], "provenance": {"source": "test", "kind": "measured"}}}
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "curves.viscosity_curve.viscosity_unit")


def test_dataset_curve_points_not_increasing(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    ds["curves"] = {"viscosity_curve": {"points": [{"shear_rate": 10.0, "viscosity": 2.0},
                                                   {"shear_rate": 1.0, "viscosity": 3.0}],
                                        "provenance": {"source": "test", "kind": "measured"}}}
    inputs.write_dataset(ds)
    err = assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "curves.viscosity_curve.points")
    assert "row 2" in err or "increase" in err


def test_dataset_curve_without_measured_or_synthetic_kind(inputs: Inputs) -> None:
    ds = inputs.dataset_data()
    ds["curves"] = {"viscosity_curve": {"points": [{"shear_rate": 1.0, "viscosity": 2.0}],
                                        "provenance": {"source": "read off a figure", "kind": "assumed"}}}
    inputs.write_dataset(ds)
    assert_bad_input(inputs, inputs.optimize, str(inputs.dataset), "curves.viscosity_curve")


def test_viscosity_csv_provenance_is_recorded(inputs: Inputs) -> None:
    """A user CSV's path, kind and checksum become the curve's recorded source."""
    from calib.study import load_study

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
    from calib.study import load_study

    loaded = load_study(path)
    assert loaded.spec.name == path.stem  # the study is found under the name of its file
    assert loaded.spec.fidelity == loaded.spec.ladder[-1]
