"""The slurry's seed protocol as part of the observable: replicates (fresh placements whose
mean and spread are the trial's density and its uncertainty), the protocol recorded with
every value, and a target comparable only under another protocol refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from calib.execution.session_types import trial_seed
from calib.stages.base import TrialContext
from calib.study.load import load_study
from conftest import DEFAULT_STUDY, parse_json_stdout, run_calib, write_study
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY


def _trial(tmp_path: Path, name: str, replicates: int):
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke").with_section("slurry", protocol="seed")
    fid = loaded.spec.fidelity_spec().model_copy(update={"replicates": replicates})
    workdir = tmp_path / name
    workdir.mkdir()
    return loaded.stage.make_trial(TrialContext(workdir, loaded, fid, TABLE_S1_SLURRY, trial_seed(0, 0)))


def test_replicates_have_placements_of_their_own(tmp_path: Path):
    a, b = _trial(tmp_path, "trial_a", 3), _trial(tmp_path, "trial_b", 3)
    runs_a, runs_b = a.first_runs(), b.first_runs()
    assert [r.key for r in runs_a] == ["slurry", "slurry_01", "slurry_02"]
    data_a = [(r.workdir / "system.data").read_text() for r in runs_a]
    data_b = [(r.workdir / "system.data").read_text() for r in runs_b]
    assert data_a == data_b  # the same seed, the same placements, replicate by replicate
    assert len(set(data_a)) == 3  # each replicate a placement of its own
    decks = [(r.workdir / "in.slurry").read_text() for r in runs_a]
    velocity = [next(ln for ln in d.splitlines() if ln.startswith("velocity")) for d in decks]
    assert len(set(velocity)) == 3  # and velocities of its own


def test_common_random_numbers_give_every_trial_the_study_seed():
    assert {trial_seed(3, n) for n in range(5)} == {3 * 10_007 + 1}
    assert trial_seed(3, 0) != trial_seed(4, 0)  # the study's seed still chooses the placement
    assert len({trial_seed(3, n, common=False) for n in range(5)}) == 5


def test_a_target_of_another_protocol_is_refused_unless_the_study_consents():
    from calib.core.errors import InputError
    from calib.stages.slurry_settings import check_protocol

    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    target = loaded.dataset.targets["slurry_density"].model_copy(update={"protocol": "seed"})
    dataset = loaded.dataset.model_copy(update={"targets": {**loaded.dataset.targets, "slurry_density": target}})
    ramp = loaded.with_section("slurry", protocol="ramp_hold").model_copy(update={"dataset": dataset})
    with pytest.raises(InputError) as err:
        check_protocol(ramp)
    assert err.value.field == "slurry.protocol" and "comparable only under protocol 'seed'" in str(err.value)
    check_protocol(ramp.with_section("slurry", allow_protocol_mismatch=True))
    check_protocol(ramp.with_section("slurry", protocol="seed"))


@pytest.mark.lammps
def test_replicates_are_averaged_and_their_spread_reported(tmp_path: Path):
    """Two trials at smoke with two replicates each: every trial's density is the mean of its
    two placements, the spread is reported, and the protocol is recorded with the value."""
    study = write_study(tmp_path, "reps", trials=2, parallel=1, optimizer={"n_initial": 2},
                        fidelities={"smoke": {"replicates": 2}}, slurry={"protocol": "seed"})
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
    for t in trials:
        d = Path(t.user_attrs["calib_workdir"])
        assert (d / "system.data").read_text() != (d / "replicate_01" / "system.data").read_text()
    # common random numbers: both trials start from the same placements, replicate by replicate
    d0, d1 = (Path(t.user_attrs["calib_workdir"]) for t in trials)
    assert trials[0].user_attrs["calib_seed"] == trials[1].user_attrs["calib_seed"]
    for sub in (".", "replicate_01"):
        assert (d0 / sub / "system.data").read_text() == (d1 / sub / "system.data").read_text()
    best = out["best_observables"]
    assert best["density_protocol"] == trials[out["best_trial"]].user_attrs["density_protocol"]
    assert len(best["density_replicates_g_cm3"]) == 2
