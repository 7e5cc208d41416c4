"""Every ``optimizer.sampler`` runs a 3-trial smoke study end to end (real LAMMPS and Optuna;
MLflow off here, it is tested with the loop elsewhere), its third trial proposed by the
sampler's model where it has one (n_initial 2)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib.study import SAMPLERS
from conftest import parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_smoke_study(tmp_path: Path, sampler: str):
    name = f"s_{sampler}"
    study_file = write_study(tmp_path, name, trials=3, parallel=2, fidelity="smoke",
                             optimizer={"sampler": sampler, "n_initial": 2})
    runs = tmp_path / "runs"
    summary = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study_file),
                                          "--runs-dir", str(runs), "--tracking-uri", "none", "--json",
                                          cwd=tmp_path))
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{(runs / 'calib.db').resolve()}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert summary["trials_complete"] == 3 and summary["best_trial"] is not None
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 3  # three different proposals
    for t in trials:
        assert t.user_attrs["proposal_s"] >= 0
        assert t.user_attrs["residuals"]["slurry_density"][0] == pytest.approx(
            t.user_attrs["objective_errors"]["slurry_density"])
        assert t.user_attrs["residual_sd"]["slurry_density"][0] > 0  # the density's blocking SEM, normalised
