"""Bad input to the characterisation stage (issue 11): a resolution with fewer than 3 voxels
across the smallest bead, a state file of the wrong stage, a conductivity <= 0, an image
with no SE voxel, a scored series the dataset lacks. One line naming file and field, exit
2, nothing written. No case runs LAMMPS."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ssb_formulation, ssb_system
from sim_backends.lammps.beads import dried_system
from test_bad_input import assert_bad_input
from test_bad_input_electrode import ElectrodeInputs, _state

SYNTHETIC_CONDUCTIVITY = {"unit": "S/m", "points": [{"degree_pct": 0.0, "value": 0.01}, {"degree_pct": 30.0,
                                                                                        "value": 0.02}],
                          "provenance": {"source": "made up for a test of the input checks", "kind": "synthetic"}}


class CharacteriseInputs(ElectrodeInputs):
    """A characterise study (``characterise.yaml``) from a dried smoke-size state, scoring a
    synthetic conductivity series added to the dataset copy."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dried = _state(root / "dried_state.data", dried_system(ssb_system(200), ssb_formulation()))
        data = self.dataset_data()
        data["calendered_conductivity"] = SYNTHETIC_CONDUCTIVITY
        self.write_dataset(data)
        d = self.drying_data()
        d.update(stage="characterise", name="char", upstream={"data_file": "dried_state.data"},
                 objective={"targets": {"calendered_conductivity": 1.0}},
                 calendering={"degrees_pct": [0.0, 30.0]}, parameters={"base": "table-s1-dried", "free": {
                     "eps_AM": {"low": 10.0, "high": 1000.0, "log": True}}})
        self.write_drying(d)

    def char(self):
        return self.dry(stage="characterise")


@pytest.fixture
def cinputs(tmp_path: Path) -> CharacteriseInputs:
    return CharacteriseInputs(tmp_path)


def test_the_characterise_baseline_is_valid(cinputs: CharacteriseInputs):
    """The unmodified characterise study and state pass every check (each case below fails on
    its one defect)."""
    from calib.lineage import resolve_upstream
    from calib.study import load_study

    loaded = load_study(cinputs.drying, fidelity="smoke")
    lineage = resolve_upstream(loaded, "sqlite:///unused.db")
    loaded.stage.check_upstream(loaded, lineage)
    assert loaded.stage.name == "characterise" and loaded.spec.characterise.resolution_um == 0.5


def test_resolution_coarser_than_a_third_of_the_smallest_bead(cinputs: CharacteriseInputs):
    d = cinputs.drying_data()
    d["characterise"] = {"resolution_um": 0.75}  # smallest solid bead: SE, 2 um
    cinputs.write_drying(d)
    err = assert_bad_input(cinputs, cinputs.char, str(cinputs.drying), "characterise.resolution_um")
    assert "(2 um)" in err and "at least 3" in err


def test_state_file_of_the_wrong_stage(cinputs: CharacteriseInputs):
    d = cinputs.drying_data()
    d["upstream"] = {"data_file": "slurry_state.data"}  # slurry beads, not dried ones
    cinputs.write_drying(d)
    assert_bad_input(cinputs, cinputs.char, "slurry_state.data", "Atoms")


@pytest.mark.parametrize("field, value", [("sigma_am_s_m", 0.0), ("sigma_cbd_s_m", -15.93)])
def test_conductivity_not_positive(cinputs: CharacteriseInputs, field, value):
    d = cinputs.drying_data()
    d["characterise"] = {field: value}
    cinputs.write_drying(d)
    assert_bad_input(cinputs, cinputs.char, str(cinputs.drying), f"characterise.{field}")


def test_no_se_phase_means_no_se_voxel(cinputs: CharacteriseInputs):
    data = cinputs.dataset_data()
    del data["system"]["phases"]["SE"]
    data["system"]["phases"]["AM"]["weight_fraction"] = 0.966
    cinputs.write_dataset(data)
    assert_bad_input(cinputs, cinputs.char, str(cinputs.dataset), "system.phases", "SE")


def test_scored_series_missing_from_the_dataset(cinputs: CharacteriseInputs):
    d = cinputs.drying_data()
    d["objective"] = {"targets": {"calendered_se_tortuosity": 1.0}}
    cinputs.write_drying(d)
    assert_bad_input(cinputs, cinputs.char, str(cinputs.drying), "objective.targets.calendered_se_tortuosity")


def test_series_degree_not_simulated(cinputs: CharacteriseInputs):
    d = cinputs.drying_data()
    d["calendering"] = {"degrees_pct": [0.0, 20.0]}  # the series has 30 %
    cinputs.write_drying(d)
    assert_bad_input(cinputs, cinputs.char, str(cinputs.drying), "calendering.degrees_pct", "30")


def test_series_in_the_wrong_unit(cinputs: CharacteriseInputs):
    data = cinputs.dataset_data()
    data["calendered_conductivity"]["unit"] = "mS/cm"
    cinputs.write_dataset(data)
    assert_bad_input(cinputs, cinputs.char, str(cinputs.dataset), "calendered_conductivity.unit")


def test_unknown_stage_is_refused(cinputs: CharacteriseInputs):
    d = cinputs.drying_data()
    d["stage"] = "characterize"
    cinputs.write_drying(d)
    err = assert_bad_input(cinputs, lambda: cinputs.dry(stage="characterize"), "stage", "characterize")
    assert "characterise" in err  # the known stages are listed
