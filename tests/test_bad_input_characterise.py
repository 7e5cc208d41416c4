"""Inputs of the characterisation stage (issue 11) and their baseline: the valid
characterise study and dried state pass every check. The bad-input cases (a resolution with
fewer than 3 voxels across the smallest bead, a state file of the wrong stage, a
conductivity <= 0, an image with no SE voxel, a scored series the dataset lacks, ...) are
the corpus ``tests/data/bad`` (``test_bad_corpus.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import random_state_file, ssb_formulation, ssb_system
from sim_backends.lammps.beads import dried_system
from test_bad_input_electrode import ElectrodeInputs

SYNTHETIC_CONDUCTIVITY = {"unit": "S/m", "points": [{"degree_pct": 0.0, "value": 0.01}, {"degree_pct": 30.0,
                                                                                        "value": 0.02}],
                          "provenance": {"source": "made up for a test of the input checks", "kind": "synthetic"}}


class CharacteriseInputs(ElectrodeInputs):
    """A characterise study (``characterise.yaml``) from a dried smoke-size state, scoring a
    synthetic conductivity series added to the dataset copy."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dried = random_state_file(root / "dried_state.data", dried_system(ssb_system(200), ssb_formulation()))
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
    from calib.study.upstream import resolve_upstream
    from calib.study.load import load_study

    loaded = load_study(cinputs.drying, fidelity="smoke")
    lineage = resolve_upstream(loaded, "sqlite:///unused.db")
    loaded.stage.check_upstream(loaded, lineage)
    assert loaded.stage.name == "characterise" and loaded.spec.characterise.resolution_um == 0.5


