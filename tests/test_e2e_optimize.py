"""End to end: ``calib optimize`` with real LAMMPS, Optuna (SQLite) and MLflow (SQLite),
then ``calib export`` of the stored study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import parse_json_stdout, run_calib, write_study
from mlflow_checks import (RESTART_MAGIC, assert_finished_lammps_log, assert_png, assert_runs_match_ledger,
                           data_file_atoms, download, read_blocks)
from sim_backends.lammps.forcefield import TABLE_S1_KEYS

pytestmark = pytest.mark.lammps
OBJ = "objective_weighted_sum_sq_error"


@pytest.fixture(scope="module")
def optimized(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("e2e")
    study = write_study(tmp, "e2e_smoke", trials=3, parallel=2, optimizer={"n_initial": 2})
    proc = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(tmp / "runs"), "--json", cwd=tmp)
    return tmp, parse_json_stdout(proc)


def test_summary_json(optimized):
    tmp, s = optimized
    assert s["study"] == "e2e_smoke"
    assert s["storage"].startswith("sqlite:///") and s["storage"].endswith("calib.db")
    assert s["trials_complete"] + s["trials_failed"] == 3
    assert s["trials_complete"] >= 1
    assert set(s["best_params"]) == set(TABLE_S1_KEYS)
    dens = s["best_observables"]["slurry_density"]
    assert dens["target"] == 1.90 and dens["unit"] == "g/cm^3"
    assert 0.5 < dens["simulated"] < 5.0
    assert dens["rel_error"] == pytest.approx((dens["simulated"] - 1.90) / 1.90)
    # the objective is the squared relative error (the default study flags an unconverged
    # density without a penalty: slurry.penalty 0)
    conv = s["best_observables"]["density_converged"]
    assert isinstance(conv, bool) and s["best_observables"]["density_convergence"]
    assert s["best_value"] == pytest.approx(dens["rel_error"] ** 2)


def test_trial_directories_keep_deck_log_and_state(optimized):
    tmp, s = optimized
    dirs = sorted((tmp / "runs" / "e2e_smoke").glob("trial_*"))
    assert len(dirs) == 3
    for d in dirs:
        assert (d / "in.slurry").is_file() and (d / "log.lammps").is_file()
        assert "LAMMPS (22 Jul 2025" in (d / "log.lammps").read_text()
    best = tmp / "runs" / "e2e_smoke" / f"trial_{s['best_trial']:05d}"
    assert (best / "final.data").is_file() and (best / "final.restart").is_file()
    assert json.loads((best / "params.json").read_text()) == pytest.approx(s["best_params"])
    # what the files hold, for every trial of the ledger (each its own directory)
    trials = optuna.load_study(study_name="e2e_smoke", storage=s["storage"]).get_trials()
    assert sorted(Path(t.user_attrs["calib_workdir"]).name for t in trials) == [d.name for d in dirs]
    for t in trials:
        d = Path(t.user_attrs["calib_workdir"])
        table = json.loads((d / "params.json").read_text())
        assert table == t.user_attrs["table_s1"] and set(table) == set(TABLE_S1_KEYS)
        assert {k: table[k] for k in t.params} == t.params  # the proposal's free keys, as proposed
        deck = (d / "in.slurry").read_text().splitlines()
        assert "units micro" in deck and "read_data system.data" in deck and deck[-1] == "write_restart final.restart"
        am = next(ln for ln in deck if ln.startswith("pair_coeff 1 1 lj/cut ")).split()  # AM, d = 10 um
        assert float(am[4]) == pytest.approx(table["eps_AM"] * 10.0, rel=1e-5)
        assert float(am[5]) == pytest.approx(table["sigma_AM"] * 10.0, rel=1e-5)
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        assert_finished_lammps_log((d / "log.lammps").read_text(), f"{d.name}/log.lammps")
        assert data_file_atoms((d / "final.data").read_text()) == 200  # smoke: 200 beads, none lost
        restart = (d / "final.restart").read_bytes()
        assert restart.startswith(RESTART_MAGIC) and len(restart) > 10_000
        columns, rows = read_blocks(d / "density_blocks.txt")
        # smoke: the seed protocol compressed 1000-fold, 20,000 steps in 200 blocks of 100
        assert columns == ["TimeStep", "v_rho"] and len(rows) == 200
        assert [r[0] for r in rows] == [100.0 * (i + 1) for i in range(len(rows))]
        assert all(r[1] > 0 for r in rows)
        assert_png(d / "density_trajectory.png")


def test_optuna_ledger(optimized):
    tmp, s = optimized
    study = optuna.load_study(study_name="e2e_smoke", storage=s["storage"])
    trials = study.get_trials()
    assert len(trials) == 3
    best = min((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.number == s["best_trial"]
    assert "density_g_cm3" in best.user_attrs["observables"]
    assert set(best.params) == {"eps_AM", "eps_SE", "eps_CBD", "sigma_AM", "sigma_SE"}


def test_mlflow_parent_and_nested_runs(optimized):
    tmp, s = optimized
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e_smoke")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("calib.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("calib.role") == "trial"]
    assert len(parents) == 1 and len(trials) == 3
    ledger = {t.number: t for t in optuna.load_study(study_name="e2e_smoke", storage=s["storage"]).get_trials()}
    pid = parents[0].info.run_id
    for r in trials:
        assert r.data.tags["mlflow.parentRunId"] == pid
        assert set(TABLE_S1_KEYS) <= set(r.data.params)
        for tag in ("stage", "fidelity", "dataset", "lammps_version", "trial_number", "state"):
            assert tag in r.data.tags, tag
        assert r.data.tags["fidelity"] == "smoke" and r.data.tags["lammps_version"].startswith("22 Jul 2025")
        if r.data.tags["state"] == "COMPLETE":
            for m in ("density_g_cm3", "slurry_density_rel_error", OBJ, "wall_time_s", "atom_steps_per_s"):
                assert m in r.data.metrics, m
            assert "objective" not in r.data.metrics  # named for what it is: a weighted sum of squared errors
            arts = {a.path for a in client.list_artifacts(r.info.run_id)}
            assert {"in.slurry", "log.lammps", "final.data"} <= arts
            assert {"system.data", "params.json", "final.restart", "density_blocks.txt"} <= arts  # to rerun it
            assert {"in.slurry.txt", "log.lammps.txt"} <= arts  # copies the UI previews
            assert "density_trajectory.png" in arts  # every density trial has its plot
            local = Path(client.download_artifacts(r.info.run_id, "log.lammps.txt", str(tmp / "dl")))
            assert local.read_text() == (Path(r.data.tags["calib.workdir"]) / "log.lammps").read_text()
            # the logged files' contents: what the trial ran and measured, not just their names
            workdir, dl = Path(r.data.tags["calib.workdir"]), tmp / "dl_content"
            ledger_trial = ledger[int(r.data.tags["trial_number"])]
            assert_finished_lammps_log(download(client, r.info.run_id, "log.lammps", dl).read_text())
            logged_params = json.loads(download(client, r.info.run_id, "params.json", dl).read_text())
            assert logged_params == ledger_trial.user_attrs["table_s1"]
            assert {k: logged_params[k] for k in ledger_trial.params} == ledger_trial.params
            assert all(float(r.data.params[k]) == pytest.approx(v, rel=1e-5) for k, v in logged_params.items())
            for name in ("in.slurry", "in.slurry.txt"):
                assert download(client, r.info.run_id, name, dl).read_text() == (workdir / "in.slurry").read_text()
            assert data_file_atoms(download(client, r.info.run_id, "final.data", dl).read_text()) == 200
            assert download(client, r.info.run_id, "final.restart", dl).read_bytes() == \
                (workdir / "final.restart").read_bytes()
            columns, rows = read_blocks(download(client, r.info.run_id, "density_blocks.txt", dl))
            assert columns == ["TimeStep", "v_rho"] and all(v > 0 for _, v in rows)
            # the reported density is the end of the protocol: the mean of its last 2 of 200 blocks, g/cm^3
            # (MLflow shows it to 6 significant digits; the ledger keeps it in full)
            assert r.data.metrics["density_g_cm3"] == pytest.approx(sum(v for _, v in rows[-2:]) / 2, rel=1e-5)
            assert ledger_trial.user_attrs["observables"]["density_g_cm3"] == pytest.approx(
                sum(v for _, v in rows[-2:]) / 2, rel=1e-9)
            assert_png(download(client, r.info.run_id, "density_trajectory.png", dl))
            assert r.data.tags["calib.equilibrated"] == ("yes" if ledger_trial.user_attrs["equilibrated"] else "NO")
            assert ("not equilibrated" in r.data.tags["calib.flags"]) == (r.data.tags["calib.equilibrated"] == "NO")
        # the targets, through MLflow's dataset API
        (inp,) = r.inputs.dataset_inputs
        assert inp.dataset.name == "ssb_nmc622_lpscl" and [t.value for t in inp.tags] == ["targets"]
        assert json.loads(inp.dataset.profile)["num_rows"] == 1 and '"provenance_kind"' in inp.dataset.schema

        # review: how it was proposed, bounds, keys at a bound, readable values, a run spanning the simulation
        assert r.data.tags["calib.proposal"] in ("initial design", "model")
        assert r.data.tags["calib.free_keys"] == "eps_AM, sigma_AM, eps_SE, sigma_SE, eps_CBD"
        assert "eps_CBD=[" in r.data.tags["calib.bounds"] and r.data.tags["calib.at_bound"]
        assert all(len(v) <= 12 for v in r.data.params.values())
        if r.data.tags["state"] == "COMPLETE":
            assert (r.info.end_time - r.info.start_time) / 1000 >= r.data.metrics["wall_time_s"]
    # the parent run names the best trial, with a best-so-far series over the trials told
    parent = client.get_run(pid)
    best_runs = [r for r in trials if r.data.tags.get("calib.best") == "true"]
    assert len(best_runs) == 1 and best_runs[0].data.tags["trial_number"] == str(s["best_trial"])
    assert parent.data.tags["calib.best_trial"] == str(s["best_trial"])
    assert parent.data.tags["calib.best_run_id"] == best_runs[0].info.run_id
    assert parent.data.tags["calib.best_run"] == (f"#/experiments/{exp.experiment_id}/runs/{best_runs[0].info.run_id}"
                                                  "?workflowType=machine_learning")
    assert float(parent.data.tags["best.eps_AM"]) == pytest.approx(s["best_params"]["eps_AM"], rel=1e-5)
    series = client.get_metric_history(pid, f"best_{OBJ}")
    values = [m.value for m in sorted(series, key=lambda m: m.step)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(s["best_value"], rel=1e-5)
    assert sorted(m.step for m in series) == sorted(int(r.data.tags["trial_number"]) for r in trials
                                                    if int(r.data.tags["trial_number"]) >= series[0].step)
    assert parent.data.metrics["target.slurry_density"] == pytest.approx(1.90)
    assert parent.data.metrics["best.slurry_density"] == pytest.approx(
        s["best_observables"]["slurry_density"]["simulated"], rel=1e-5)
    assert f"**Best trial: {s['best_trial']}**" in parent.data.tags["mlflow.note.content"]
    assert len(client.get_metric_history(pid, f"trial_{OBJ}")) == 3
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"metrics.{OBJ}" in exp.tags["mlflow.note.content"]
    # the parent's Pareto front file is the summary's (one objective: the best trial alone)
    front = json.loads(download(client, pid, "pareto.json", tmp / "dl_content").read_text())
    assert front == s["pareto"] and [p["trial"] for p in front] == [s["best_trial"]]


def test_mlflow_runs_ended_with_their_ledger_states(optimized):
    """After the study: no MLflow run is left RUNNING, the parent run FINISHED, one trial run
    per finished ledger trial, FINISHED for COMPLETE and FAILED for FAIL trials."""
    tmp, s = optimized
    by_number = assert_runs_match_ledger(f"sqlite:///{tmp / 'runs' / 'mlflow.db'}", "e2e_smoke", s["storage"])
    assert len(by_number) == s["trials_complete"] + s["trials_failed"] == 3


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json", "latex", "lammps"])
def test_export_best(optimized, fmt):
    """Without --trial/--top/--pareto, export prints the best trial's set (one column)."""
    tmp, s = optimized
    out = run_calib("export", "--study", "e2e_smoke", "--storage", s["storage"], "--format", fmt, cwd=tmp).stdout
    if fmt == "json":
        (col,) = json.loads(out)["columns"]
        assert col["trial"] == s["best_trial"] and col["params"] == pytest.approx(s["best_params"])
    elif fmt == "lammps":
        assert f"# trial: {s['best_trial']} (the best trial;" in out
        lines = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
        assert lines[0] == "comm_modify vel yes" and lines[1].startswith("pair_style hybrid/overlay lj/cut")
        am = [ln for ln in lines if ln.startswith("pair_coeff 1 1 ")][0].split()
        assert float(am[4]) == pytest.approx(s["best_params"]["eps_AM"] * 10.0, rel=1e-5)
    elif fmt == "csv":
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(out)))
        mult = [r for r in rows if r["key"] == "eps_AM" and r["section"] == "multiplier"]
        res = [r for r in rows if r["key"] == "eps_AM" and r["section"] == "resolved"]
        assert len(mult) == 1 and float(mult[0]["value"]) == pytest.approx(s["best_params"]["eps_AM"])
        assert len(res) == 1 and float(res[0]["value"]) == pytest.approx(s["best_params"]["eps_AM"] * 10.0)
        assert {r["trial"] for r in rows} == {str(s["best_trial"])}
    else:  # markdown, latex: the best multipliers appear to 6 significant digits
        for key in ("eps_AM", "eps_SE", "sigma_SE"):
            assert f"{s['best_params'][key]:.6g}" in out, key
        name = "e2e\\_smoke" if fmt == "latex" else "e2e_smoke"
        assert f"study {name}, trial {s['best_trial']}" in out
