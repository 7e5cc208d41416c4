"""Early stopping of seed-protocol slurry trials (``slurry.early_stop_band_rel``): the
forecast exponent, and a real smoke study whose out-of-band trials stop, are kept as data
and never become its answer. The LAMMPS side (a run stops at the first block above the band,
a run inside it completes unchanged) is in ``tests/test_slurry_lammps.py``."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from calib import ledger
from calib.stages.slurry_results import END_FORECAST_EXPONENT, end_forecast_exponent
from conftest import parse_json_stdout, run_study, write_study


def test_forecast_exponent_interpolates_the_measured_table_in_log_k():
    assert end_forecast_exponent(1) == END_FORECAST_EXPONENT[1]
    assert end_forecast_exponent(1000) == END_FORECAST_EXPONENT[1000]
    mid = end_forecast_exponent(round(10 ** 1.5))  # between k = 10 and 100
    assert mid == pytest.approx((END_FORECAST_EXPONENT[10] + END_FORECAST_EXPONENT[100]) / 2, abs=1e-3)
    assert end_forecast_exponent(5000) == END_FORECAST_EXPONENT[1000]  # beyond the table: the nearest


@pytest.mark.lammps
def test_a_study_with_a_band_stops_out_of_band_trials_and_answers_from_whole_runs(tmp_path: Path):
    band = 0.3
    study_file = write_study(tmp_path, "band", trials=4, parallel=2, fidelity="smoke",
                             optimizer={"sampler": "sobol"}, slurry={"early_stop_band_rel": band})
    runs = tmp_path / "runs"
    summary = parse_json_stdout(run_study("optimize", "--stage", "slurry", "--study", str(study_file),
                                          "--runs-dir", str(runs), "--tracking-uri", "none", "--json",
                                          cwd=tmp_path))
    study = optuna.load_study(study_name="band", storage=f"sqlite:///{(runs / 'calib.db').resolve()}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    stopped = [t for t in trials if t.user_attrs.get(ledger.STOPPED_ATTR)]
    whole = [t for t in trials if not t.user_attrs.get(ledger.STOPPED_ATTR)]
    assert stopped and whole, [t.user_attrs["observables"]["density_g_cm3"] for t in trials]
    thr = 1.90 * (1 + band)
    for t in stopped:
        obs = t.user_attrs["observables"]
        assert obs["density_g_cm3"] > thr and 0 < obs["stopped_fraction"] < 1
        k = obs["compression"]
        assert obs["density_forecast_g_cm3"] == pytest.approx(
            obs["density_g_cm3"] * obs["stopped_fraction"] ** -end_forecast_exponent(int(k)))
        # scored on the forecast: data for the proposer
        assert t.user_attrs["errors"]["slurry_density"]["simulated"] == pytest.approx(obs["density_forecast_g_cm3"])
        assert "stopped at" in t.user_attrs[ledger.STOPPED_ATTR]
        assert obs["atom_steps"] < min(w.user_attrs["observables"]["atom_steps"] for w in whole)
    for t in whole:
        assert t.user_attrs["observables"]["density_g_cm3"] <= thr * 1.0002  # the rise is monotone
    best = min(whole, key=lambda t: t.value)
    assert summary["best_trial"] == best.number and ledger.best_trial(study).number == best.number
    assert {t.number for t in ledger.at_target(study)} == {t.number for t in whole}
    assert not math.isnan(summary["best_value"])


@pytest.mark.lammps
def test_with_two_placements_each_stopped_replicate_is_forecast_on_its_own(tmp_path: Path):
    """replicates: 2 and a band: a replicate that stopped is forecast from its own block and
    fraction, one that ran the whole protocol keeps its end density, and the trial scores
    their mean (a stopped replicate makes the trial a stopped one)."""
    import numpy as np

    from sim_backends.lammps.slurry import density_trajectory

    study_file = write_study(tmp_path, "band2", trials=2, parallel=1, fidelity="rep2",
                             fidelities={"rep2": {"n_beads": 200, "compression": 1000, "replicates": 2,
                                                 "equilibration_steps": 10_000, "averaging_steps": 10_000}},
                             optimizer={"sampler": "sobol"}, slurry={"early_stop_band_rel": 0.3})
    runs = tmp_path / "runs"
    run_study("optimize", "--stage", "slurry", "--study", str(study_file), "--runs-dir", str(runs),
              "--tracking-uri", "none", "--json", cwd=tmp_path)
    study = optuna.load_study(study_name="band2", storage=f"sqlite:///{(runs / 'calib.db').resolve()}")
    b = end_forecast_exponent(1000)
    seen_stopped = False
    for t in study.get_trials():
        folder = runs / "band2" / f"trial_{t.number:05d}"
        want, any_stopped = [], False
        for d in (folder, folder / "replicate_01"):
            _, rho = density_trajectory(d)
            if len(rho) < 200:  # this placement stopped above the band
                any_stopped = True
                want.append(rho[-1] * (len(rho) / 200) ** -b)
            else:
                want.append(rho[-2:].mean())
        obs = t.user_attrs["observables"]
        assert bool(t.user_attrs.get(ledger.STOPPED_ATTR)) == any_stopped
        if any_stopped:
            seen_stopped = True
            assert obs["density_forecast_g_cm3"] == pytest.approx(float(np.mean(want)), rel=1e-9)
        assert t.user_attrs["errors"]["slurry_density"]["simulated"] == pytest.approx(float(np.mean(want)), rel=1e-9)
    assert seen_stopped
