"""Every ``optimizer.sampler`` runs a 3-trial smoke study end to end (real LAMMPS and Optuna;
MLflow off here, it is tested with the loop elsewhere), its third trial proposed by the
sampler's model where it has one (n_initial 2)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib.spec.study_file import SAMPLERS
from conftest import parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_smoke_study(tmp_path: Path, sampler: str):
    name = f"s_{sampler}"
    # smoke: the seed protocol compressed 1000-fold (20,000 steps); the samplers' proposals
    # are under test here, not the density
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
        # one placement per trial (common to all: the objective is deterministic) measures no spread
        assert t.user_attrs["residual_sd"]["slurry_density"] == [None]


def test_a_multi_fidelity_study_screens_cheaply_and_answers_at_its_target(tmp_path: Path):
    """Ladder tiny -> smoke (the same 200 beads, the seed protocol compressed 2000-fold
    instead of 1000-fold): the Sobol start runs at tiny, model-based proposals choose their
    fidelity, each trial's deck is its fidelity's, and the answer (best trial, Pareto front)
    comes from target-fidelity trials only."""
    tiny = {"n_beads": 200, "compression": 2000, "equilibration_steps": 4000, "averaging_steps": 4000}
    # trials 2 and 3 are model proposals run at the target (MIN_TRANSFER_TRIALS at transfer_rung, the target of a two-rung ladder)
    study_file = write_study(tmp_path, "mf", trials=4, parallel=1, fidelity="smoke", fidelities={"tiny": tiny},
                             optimizer={"sampler": "composite", "n_initial": 2, "num_restarts": 2, "raw_samples": 64,
                                        "multi_fidelity": {"ladder": ["tiny", "smoke"],
                                                           "costs_core_s": {"tiny": 1.0, "smoke": 2.0}}})
    runs = tmp_path / "runs"
    summary = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study_file),
                                          "--runs-dir", str(runs), "--tracking-uri", "none", "--json",
                                          cwd=tmp_path))
    trials = optuna.load_study(study_name="mf", storage=f"sqlite:///{(runs / 'calib.db').resolve()}").get_trials()
    fids = [t.user_attrs["calib_fidelity"] for t in trials]
    assert fids[:2] == ["tiny", "tiny"]
    assert fids[2:] == ["smoke", "smoke"], fids
    decks = {f: (Path(t.user_attrs["calib_workdir"]) / "in.slurry").read_text() for f, t in zip(fids, trials)}
    assert "run 10000" in decks["tiny"] and "run 20000" in decks["smoke"] and "run 10000" not in decks["smoke"]
    at_target = [t for t in trials if t.user_attrs["calib_fidelity"] == "smoke" and t.state == TrialState.COMPLETE]
    assert summary["best_trial"] == min(at_target, key=lambda t: t.value).number
    assert {p["trial"] for p in summary["pareto"]} <= {t.number for t in at_target}
    assert summary["target_fidelity"] == "smoke"
    assert set(summary["trials_by_fidelity"]) == set(fids)
    assert all(row["core_s"] > 0 for row in summary["trials_by_fidelity"].values())
