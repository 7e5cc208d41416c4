"""Inputs of the drying and calendering stages and of ``calib pipeline`` (``ElectrodeInputs``,
used by other tests) and their baseline: the valid drying study and state pass every check.
The bad-input cases are the corpus ``tests/data/bad`` (``test_bad_corpus.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, random_state_file, ssb_system
from test_bad_input import Inputs, _cli

DRYING_SRC = REPO / "studies" / "ssb_drying.yaml"


class ElectrodeInputs(Inputs):
    """``Inputs`` plus a drying study (``drying.yaml``) on the same dataset copy, started
    from a valid smoke-size SSB slurry state file (``slurry_state.data``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.state = random_state_file(root / "slurry_state.data", ssb_system(200))
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
    from calib.study.upstream import resolve_upstream
    from calib.study.load import load_study

    loaded = load_study(einputs.drying, fidelity="smoke")
    lineage = resolve_upstream(loaded, "sqlite:///unused.db")
    loaded.stage.check_upstream(loaded, lineage)
    assert lineage.study is None and lineage.state_file == str(einputs.state.resolve())


