"""The same seed gives the same proposals, with two trials running at once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from conftest import SHORT, run_study, write_study

pytestmark = pytest.mark.lammps


def _params(tmp_path: Path, name: str, seed: int, trials: int = 4, **overrides) -> list[dict]:
    study = write_study(tmp_path, name, trials=trials, parallel=2, seed=seed, optimizer={"n_initial": 2},
                        fidelities=SHORT, **overrides)
    runs = tmp_path / name
    run_study("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", "--runs-dir", str(runs),
              "--tracking-uri", "none", "--json", cwd=tmp_path)
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'calib.db'}").get_trials()
    return [t.params for t in sorted(trials, key=lambda t: t.number)]


def test_same_seed_same_proposals_in_parallel(tmp_path: Path):
    a = _params(tmp_path, "rep_a", seed=5)
    b = _params(tmp_path, "rep_b", seed=5)
    assert len(a) == 4
    assert a == b  # includes the two GP proposals (trials 2 and 3)
    # the study's seed reaches the sampler: another seed, another first point (one trial,
    # failed at once by its timeout: only its parameters matter here)
    c = _params(tmp_path, "rep_c", seed=6, trials=1, trial_timeout_s=0.5)
    assert c[0] != a[0]
