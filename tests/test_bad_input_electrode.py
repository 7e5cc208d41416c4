"""Bad input to the drying and calendering stages and to ``calib pipeline``: one line
naming file (or option) and field, exit status 2, nothing written. No case runs LAMMPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, ssb_system
from test_bad_input import Inputs, _cli, assert_bad_input
from sim_backends.lammps.beads import Formulation, Phase, SizeClass, build_slurry_system
from sim_backends.lammps.placement import Placement, write_data_file

DRYING_SRC = REPO / "studies" / "ssb_drying.yaml"


def _state(path: Path, system) -> Path:
    types = np.concatenate([np.full(t.count, t.type_id) for t in system.types])
    diam = np.concatenate([np.full(t.count, t.diameter_um) for t in system.types])
    dens = np.concatenate([np.full(t.count, t.lammps_density) for t in system.types])
    pos = np.random.default_rng(1).uniform(0, 50.0, size=(len(types), 3))
    write_data_file(path, Placement((50.0, 50.0, 50.0), types, diam, dens, pos), n_types=len(system.types))
    return path


class ElectrodeInputs(Inputs):
    """``Inputs`` plus a drying study (``drying.yaml``) on the same dataset copy, started
    from a valid smoke-size SSB slurry state file (``slurry_state.data``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.state = _state(root / "slurry_state.data", ssb_system(200))
        self.drying = root / "drying.yaml"
        d = yaml.safe_load(DRYING_SRC.read_text())
        d["dataset"] = "mydata/dataset.yaml"
        d["upstream"] = {"data_file": "slurry_state.data"}
        self.write_drying(d)

    def drying_data(self) -> dict:
        return yaml.safe_load(self.drying.read_text())

    def write_drying(self, data: dict) -> None:
        self.drying.write_text(yaml.safe_dump(data, sort_keys=False))

    def dry(self, *extra: str, stage: str = "drying"):
        return self.optimize(*extra, study=self.drying, stage=stage)

    def pipeline(self, *extra: str):
        return _cli(self.root, "pipeline", "--study", str(self.study), "--fidelity", "smoke",
                    "--runs-dir", str(self.root / "runs"), *extra)


@pytest.fixture
def einputs(tmp_path: Path) -> ElectrodeInputs:
    return ElectrodeInputs(tmp_path)


def test_the_drying_baseline_is_valid(einputs: ElectrodeInputs):
    """The unmodified drying study and state pass every check (so each case below fails on
    its one defect)."""
    from calib.lineage import resolve_upstream
    from calib.study import load_study

    loaded = load_study(einputs.drying, fidelity="smoke")
    lineage = resolve_upstream(loaded, "sqlite:///unused.db")
    loaded.stage.check_upstream(loaded, lineage)
    assert lineage.study is None and lineage.state_file == str(einputs.state.resolve())


def test_drying_without_upstream(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    del d["upstream"]
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, str(einputs.drying), "upstream")


def test_upstream_study_missing(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    d["upstream"] = {"study": "never_ran"}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, str(einputs.drying), "upstream.study", "never_ran")


def test_upstream_study_and_file_together(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    d["upstream"] = {"study": "x", "data_file": "slurry_state.data"}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, str(einputs.drying), "upstream", "exactly one")


def test_upstream_state_file_missing(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    d["upstream"] = {"data_file": "nowhere.data"}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, str(einputs.drying), "upstream.data_file", "nowhere.data")


def test_state_file_from_another_composition(einputs: ElectrodeInputs):
    lib = build_slurry_system(Formulation((Phase("AM", 0.96, 4.65, (SizeClass(12.0, 1.0),), 1.14),
                                           Phase("CBD", 0.04, 1.8, (SizeClass(3.0, 1.0),)))), 200)
    _state(einputs.root / "lib_state.data", lib)
    d = einputs.drying_data()
    d["upstream"] = {"data_file": "lib_state.data"}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, "lib_state.data", "Atoms")


def test_state_file_that_is_not_a_data_file(einputs: ElectrodeInputs):
    (einputs.root / "junk.data").write_text("this is not LAMMPS\n")
    d = einputs.drying_data()
    d["upstream"] = {"data_file": "junk.data"}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, "junk.data")


def test_resolution_that_needs_too_much_memory(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    d["drying"] = {"resolution_um": 0.01}
    einputs.write_drying(d)
    assert_bad_input(einputs, einputs.dry, str(einputs.drying), "drying.resolution_um", "GiB")


@pytest.mark.parametrize("degrees", [[0, 60], [-5, 10], [30, 20]])
def test_calendering_degrees_outside_range_or_unordered(einputs: ElectrodeInputs, degrees):
    d = einputs.drying_data()
    d["stage"] = "calendering"
    d["objective"] = {"targets": {"calendered_porosity": 1.0}}
    d["calendering"] = {"degrees_pct": degrees}
    einputs.write_drying(d)
    assert_bad_input(einputs, lambda: einputs.dry(stage="calendering"), str(einputs.drying),
                     "calendering.degrees_pct")


def test_calendered_porosity_target_without_data(einputs: ElectrodeInputs):
    d = einputs.drying_data()
    d["stage"] = "calendering"
    d["objective"] = {"targets": {"calendered_porosity": 1.0}}
    einputs.write_drying(d)
    assert_bad_input(einputs, lambda: einputs.dry(stage="calendering"), str(einputs.drying),
                     "objective.targets.calendered_porosity")


@pytest.mark.parametrize("command", ["optimize", "pipeline"])
def test_dataset_without_dried_cbd(einputs: ElectrodeInputs, command):
    data = einputs.dataset_data()
    for key in ("dried_diameter_um", "dried_density_g_cm3"):
        del data["system"]["phases"]["CBD"][key]
    einputs.write_dataset(data)
    run = einputs.dry if command == "optimize" else einputs.pipeline
    assert_bad_input(einputs, run, str(einputs.dataset), "dried_diameter_um")


def test_calendering_has_no_default_study(einputs: ElectrodeInputs):
    proc = lambda: _cli(einputs.root, "optimize", "--stage", "calendering", "--runs-dir", str(einputs.root / "runs"))
    assert_bad_input(einputs, proc, "--study")


@pytest.mark.parametrize("degrees, what", [("0,30,60", "60"), ("10,x", "x"), ("-10", "-10")])
def test_pipeline_bad_degrees(einputs: ElectrodeInputs, degrees, what):
    assert_bad_input(einputs, lambda: einputs.pipeline("--degrees", degrees), "--degrees", what)


@pytest.mark.parametrize("params", ["table-s2", "best:only_one", "best:missing_a,missing_b"])
def test_pipeline_bad_params(einputs: ElectrodeInputs, params):
    assert_bad_input(einputs, lambda: einputs.pipeline("--params", params), "--params")


def test_pipeline_resolution_that_needs_too_much_memory(einputs: ElectrodeInputs):
    data = einputs.study_data()
    data["drying"] = {"resolution_um": 0.01}
    einputs.write_study(data)
    assert_bad_input(einputs, einputs.pipeline, str(einputs.study), "drying.resolution_um")
