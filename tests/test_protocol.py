"""The slurry's protocol as part of the observable: common random numbers (every trial of a
study starts from the same placement), replicates (fresh placements whose mean and spread
are the trial's density and its uncertainty), and the protocol recorded with every value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from calib.session import trial_seed
from calib.stages.base import TrialContext
from calib.study import load_study
from conftest import DEFAULT_STUDY, parse_json_stdout, run_calib, write_study
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY


def _trial(tmp_path: Path, name: str, replicates: int):
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = loaded.spec.fidelity_spec().model_copy(update={"replicates": replicates})
    workdir = tmp_path / name
    workdir.mkdir()
    return loaded.stage.make_trial(TrialContext(workdir, loaded, fid, TABLE_S1_SLURRY, trial_seed(0)))


def test_trials_share_their_placement_and_replicates_do_not(tmp_path: Path):
    a, b = _trial(tmp_path, "trial_a", 3), _trial(tmp_path, "trial_b", 3)
    runs_a, runs_b = a.first_runs(), b.first_runs()
    assert [r.key for r in runs_a] == ["slurry", "slurry_01", "slurry_02"]
    data_a = [(r.workdir / "system.data").read_text() for r in runs_a]
    data_b = [(r.workdir / "system.data").read_text() for r in runs_b]
    assert data_a == data_b  # common random numbers: same placements, trial by trial
    assert len(set(data_a)) == 3  # each replicate a placement of its own
    decks = [(r.workdir / "in.slurry").read_text() for r in runs_a]
    velocity = [next(ln for ln in d.splitlines() if ln.startswith("velocity")) for d in decks]
    assert len(set(velocity)) == 3  # and velocities of its own
    assert trial_seed(0) == trial_seed(0) and trial_seed(1) != trial_seed(0)


@pytest.mark.lammps
def test_replicates_are_averaged_and_their_spread_reported(tmp_path: Path):
    """Two trials at smoke with two replicates each: every trial's density is the mean of its
    two placements, the spread is reported, both trials ran the same two placements, and the
    protocol is recorded with the value."""
    study = write_study(tmp_path, "reps", trials=2, parallel=1, optimizer={"n_initial": 2},
                        fidelities={"smoke": {"replicates": 2}})
    runs = tmp_path / "runs"
    out = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                      "--runs-dir", str(runs), "--tracking-uri", "none", "--json", cwd=tmp_path))
    assert out["trials_complete"] == 2
    trials = optuna.load_study(study_name="reps", storage=f"sqlite:///{runs / 'calib.db'}").get_trials()
    for t in trials:
        reps = t.user_attrs["density_replicates_g_cm3"]
        assert len(reps) == 2 and reps[0] != reps[1]
        obs = t.user_attrs["observables"]
        assert obs["density_g_cm3"] == pytest.approx(np.mean(reps), rel=1e-12)
        assert obs["density_spread_g_cm3"] == pytest.approx(np.std(reps, ddof=1), rel=1e-12)
        assert obs["density_sem_g_cm3"] == pytest.approx(np.std(reps, ddof=1) / np.sqrt(2), rel=1e-12)
        assert t.user_attrs["density_protocol"].startswith("seed: 0 -> 1 atm over 20,000,000 steps")
        assert "compressed k = 1000" in t.user_attrs["density_protocol"]
    dirs = [Path(t.user_attrs["calib_workdir"]) for t in trials]
    for sub in (".", "replicate_01"):
        assert (dirs[0] / sub / "system.data").read_text() == (dirs[1] / sub / "system.data").read_text()
    best = out["best_observables"]
    assert best["density_protocol"] == trials[out["best_trial"]].user_attrs["density_protocol"]
    assert len(best["density_replicates_g_cm3"]) == 2
