"""End to end, smoke size, real LAMMPS / Optuna / MLflow: a slurry study, a drying study
chained to it (lineage in JSON, ledger and MLflow), calendering of its dried state (30 %
reduces the thickness by 30 % and lowers the porosity; the seed's soft walls let beads
through and the trial FAILs with that reason), a calendering study against synthetic
porosity data, upstream faults, and ``calib export`` of the lineage (``calib pipeline``:
``test_e2e_pipeline.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from calib import __version__ as calib_version
from sim_backends.lammps.outputs import thermo_rows
from conftest import REPO, parse_json_stdout, run_calib, run_study, write_study
from mlflow_checks import (assert_finished_lammps_log, assert_png, assert_runs_match_ledger,
                           data_file_atoms, download)

pytestmark = pytest.mark.lammps

SLURRY = REPO / "studies" / "ssb_slurry.yaml"
DRYING = REPO / "studies" / "ssb_drying.yaml"
PIPELINE = REPO / "studies" / "ssb_pipeline.yaml"
PUB_WALL = yaml.safe_load(PIPELINE.read_text())["calendering"]["wall"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """A one-trial smoke slurry study, then a two-trial drying study chained to it."""
    tmp = tmp_path_factory.mktemp("e2e_chain")
    runs = tmp / "runs"
    slurry = write_study(tmp, src=SLURRY, name="up_slurry", trials=1, parallel=1)
    run_study("optimize", "--stage", "slurry", "--study", str(slurry), "--fidelity", "smoke", "--runs-dir", str(runs),
              cwd=tmp)
    drying = write_study(tmp, src=DRYING, name="up_drying", trials=2, parallel=2, upstream={"study": "up_slurry"})
    proc = run_study("optimize", "--stage", "drying", "--study", str(drying), "--fidelity", "smoke",
                     "--runs-dir", str(runs), "--json", cwd=tmp)
    return {"tmp": tmp, "runs": runs, "drying_json": parse_json_stdout(proc)}


def test_chained_drying_study_records_its_lineage(chain):
    s, runs = chain["drying_json"], chain["runs"]
    assert s["trials_complete"] == 2, s["failures"]
    slurry_trial = runs / "up_slurry" / "trial_00000"
    state = slurry_trial / "final.data"
    want = {"stage": "slurry", "study": "up_slurry", "trial": 0,
            "mlflow_run_id": (slurry_trial / "mlflow_run_id").read_text().strip(),
            "state_file": str(state.resolve()), "sha256": hashlib.sha256(state.read_bytes()).hexdigest()}
    assert s["lineage"] == want
    study = optuna.load_study(study_name="up_drying", storage=f"sqlite:///{runs / 'calib.db'}")
    for t in study.trials:
        assert t.user_attrs["lineage"] == want
    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("up_drying")
    trial_runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("calib.role") == "trial"]
    assert len(trial_runs) == 2
    for r in trial_runs:
        assert r.data.tags["upstream.study"] == "up_slurry"
        assert r.data.tags["upstream.trial"] == "0"
        assert r.data.tags["upstream.mlflow_run_id"] == want["mlflow_run_id"]
        assert r.data.tags["upstream.sha256"] == want["sha256"]
        assert 0 < r.data.metrics["porosity"] < 1
        arts = {f.path for f in client.list_artifacts(r.info.run_id)}
        assert {"in.drying", "log.lammps", "final.data", "profiles.png"} <= arts
        # their contents: the trial's own deck, a finished log, all 200 beads, a real figure
        rid, workdir, dl = r.info.run_id, Path(r.data.tags["calib.workdir"]), chain["tmp"] / "dl_drying"
        for name in ("in.drying", "log.lammps", "final.data"):
            assert download(client, rid, name, dl).read_bytes() == (workdir / name).read_bytes(), name
        deck = (workdir / "in.drying").read_text().splitlines()
        assert "units micro" in deck and "read_data upstream.data" in deck
        assert_finished_lammps_log((workdir / "log.lammps").read_text(), "in.drying's log.lammps")
        assert data_file_atoms((workdir / "final.data").read_text()) == 200
        assert_png(download(client, rid, "profiles.png", dl))
    # both studies ended: no MLflow run left RUNNING, each trial run in its ledger trial's state
    for name in ("up_slurry", "up_drying"):
        assert_runs_match_ledger(f"sqlite:///{runs / 'mlflow.db'}", name, f"sqlite:///{runs / 'calib.db'}")


def test_drying_summary_as_text(chain):
    """Without --json the summary names the dried film and where it started (a rerun of the
    finished study runs no trial)."""
    drying = chain["tmp"] / "up_drying.yaml"
    proc = run_study("optimize", "--stage", "drying", "--study", str(drying), "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), cwd=chain["tmp"])
    assert "2 complete, 0 failed" in proc.stdout
    assert "dried_porosity:" in proc.stdout and "dried film: thickness" in proc.stdout
    assert "started from: up_slurry trial 0" in proc.stdout


def test_drying_shrinks_cbd_and_mounts_the_film_on_the_collector(chain):
    from sim_backends.lammps.placement import read_sphere_data

    s, runs = chain["drying_json"], chain["runs"]
    before = read_sphere_data(runs / "up_slurry" / "trial_00000" / "final.data")
    after = read_sphere_data(runs / "up_drying" / f"trial_{s['best_trial']:05d}" / "final.data")
    assert len(after.types) == len(before.types)
    cbd_type = 7  # AM 1 class, SE 5 classes, CBD last
    assert set(before.diameters[before.types == cbd_type]) == {7.5}
    assert set(after.diameters[after.types == cbd_type]) == {3.0}
    # AM loses its solvent shell: 1.14 x 10 um in the slurry, 1.02 x 10 um dried (public exp_par)
    assert before.diameters[before.types == 1] == pytest.approx(11.4)
    assert after.diameters[after.types == 1] == pytest.approx(10.2)
    # zlo is the current collector: every bead centre above it; beads touching it overlap
    # the (Hertzian, Table S1 kn = 100) wall by less than a quarter of their diameter
    bottoms = after.positions[:, 2] - after.diameters / 2
    assert (after.positions[:, 2] > after.lo[2]).all()
    overlap = after.lo[2] - bottoms
    assert (overlap < after.diameters / 4).all()
    assert overlap.max() > 0  # the film rests on the collector
    dried = s["best_observables"]["dried"]
    assert dried["thickness_um"] == pytest.approx((after.positions[:, 2] + after.diameters / 2).max() - after.lo[2])
    assert 0.2 < dried["porosity"] < 0.8
    assert sum(v for k, v in dried.items() if k.startswith("fraction_")) == pytest.approx(1.0)


def _calender(chain, name: str, wall: dict | None, degrees, trials: int = 1) -> tuple[Path, dict]:
    tmp = chain["tmp"]
    data = yaml.safe_load((REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml").read_text())
    data["calendered_porosity"] = {
        "points": [{"degree_pct": 0.0, "porosity": 0.5}, {"degree_pct": 30.0, "porosity": 0.4, "uncertainty": 0.02}],
        "provenance": {"source": "test fixture: made-up porosities to exercise the objective", "kind": "synthetic"}}
    (tmp / f"{name}_data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    extra = {"calendering": {"degrees_pct": list(degrees), **({"wall": wall} if wall else {})}}
    study = write_study(tmp, src=DRYING, name=name, stage="calendering", dataset=f"{name}_data.yaml", trials=trials,
                        parallel=1, upstream={"study": "up_drying"},
                        objective={"targets": {"calendered_porosity": 1.0}}, optimizer={"n_initial": 2}, **extra)
    proc = run_study("optimize", "--stage", "calendering", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), "--json", cwd=tmp)
    return study, parse_json_stdout(proc)


@pytest.fixture(scope="module")
def cal_pub(chain) -> dict:
    """A two-trial calendering study with the public inputs' walls, chained to up_drying."""
    return _calender(chain, "cal_pub", PUB_WALL, (0.0, 30.0), trials=2)[1]


@pytest.fixture(scope="module")
def cal_seed_walls(chain) -> dict:
    """A one-trial calendering study with the seed's soft walls: its trial FAILs."""
    return _calender(chain, "cal_seed_walls", None, (0.0, 30.0))[1]


def test_calendering_by_30_percent_cuts_thickness_by_30_percent_and_lowers_porosity(chain, cal_pub):
    s = cal_pub
    assert s["trials_complete"] == 2, s["failures"]
    assert s["lineage"]["study"] == "up_drying" and s["lineage"]["trial"] == chain["drying_json"]["best_trial"]
    best_dir = chain["runs"] / "cal_pub" / f"trial_{s['best_trial']:05d}"
    assert (best_dir / "porosity_vs_degree.png").stat().st_size > 0 and (best_dir / "profiles.png").exists()
    assert (best_dir / "calender_01" / "calender_status.txt").exists()
    assert_png(best_dir / "porosity_vs_degree.png")
    assert_png(best_dir / "profiles.png")
    rows = {r["degree_pct"]: r for r in s["best_observables"]["calendering"]}
    # what the 30 % deck recorded (calender_01) is what the summary reports: no bead beyond the plane
    from sim_backends.lammps.calendering import read_calender_status

    st = read_calender_status(best_dir / "calender_01")
    assert st.beyond == 0
    assert (st.t0_um, st.held_um, st.piston_um) == pytest.approx(
        (rows[30.0]["thickness_before_um"], rows[30.0]["thickness_held_um"], rows[30.0]["plane_um"]))
    assert_finished_lammps_log((best_dir / "calender_01" / "log.lammps").read_text(), "calender_01/log.lammps")
    t0 = rows[30.0]["thickness_before_um"]
    assert t0 == pytest.approx(rows[0.0]["thickness_before_um"])
    # the plane held at 70 % of T0; the film's top presses into the Hertzian plane by less
    # than the largest bead radius (AM, 1.02 x 10 um / 2), no bead centre beyond it
    assert rows[30.0]["plane_um"] == pytest.approx(0.7 * t0, rel=1e-6)
    assert 0 <= rows[30.0]["thickness_held_um"] - rows[30.0]["plane_um"] < 5.1
    assert rows[30.0]["porosity"] < rows[0.0]["porosity"]
    assert rows[30.0]["thickness_um"] < rows[0.0]["thickness_um"]
    err = s["best_observables"]["calendered_porosity_error"]
    assert err == pytest.approx(((((rows[0.0]["porosity"] - 0.5) / 0.5) ** 2
                                  + ((rows[30.0]["porosity"] - 0.4) / 0.02) ** 2) / 2) ** 0.5)


def test_seed_walls_let_beads_through_and_the_trial_fails_with_the_reason(chain, cal_seed_walls):
    s = cal_seed_walls
    assert s["trials_complete"] == 0 and s["trials_failed"] == 1
    (reason,) = s["failures"].values()
    # a bead pushed through the plane, or through the collector and out of the box
    assert "calendering at 30 %" in reason
    assert "escaped through the calendering wall" in reason or "Lost atoms" in reason
    (run,) = assert_runs_match_ledger(f"sqlite:///{chain['runs'] / 'mlflow.db'}", "cal_seed_walls",
                                      s["storage"]).values()
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == reason


def _bad(chain, study: Path, stage: str = "drying") -> str:
    before = sorted(p.name for p in chain["runs"].rglob("*"))
    proc = run_calib("optimize", "--stage", stage, "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), cwd=chain["tmp"], check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert sorted(p.name for p in chain["runs"].rglob("*")) == before
    return proc.stderr


def test_upstream_of_the_wrong_stage_or_only_failed_trials_is_refused(chain):
    wrong = write_study(chain["tmp"], src=DRYING, name="dry_from_dry", upstream={"study": "up_drying"})
    err = _bad(chain, wrong)
    assert "upstream.study" in err and "'drying' study" in err
    failed = write_study(chain["tmp"], src=SLURRY, name="slurry_all_fail", trials=1, parallel=1, trial_timeout_s=0.5)
    proc = run_study("optimize", "--stage", "slurry", "--study", str(failed), "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), "--json", cwd=chain["tmp"])
    assert parse_json_stdout(proc)["trials_complete"] == 0
    dry = write_study(chain["tmp"], src=DRYING, name="dry_from_failed", upstream={"study": "slurry_all_fail"})
    err = _bad(chain, dry)
    assert "upstream.study" in err and "no completed trial" in err
    # swapped studies for the pipeline's best sets
    before = sorted(p.name for p in chain["runs"].rglob("*"))
    proc = run_calib("pipeline", "--params", "best:up_drying,up_slurry", "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), cwd=chain["tmp"], check=False)
    assert proc.returncode == 2 and "--params" in proc.stderr and "'drying' study" in proc.stderr, proc.stderr
    # a study file names its study too (as for every --study); a missing one is refused naming --params
    optuna.create_study(study_name="not_calib", storage=f"sqlite:///{chain['runs'] / 'calib.db'}")
    before = sorted(p.name for p in chain["runs"].rglob("*"))
    for params, why in ((f"best:{chain['tmp'] / 'up_drying.yaml'},up_slurry", "'drying' study"),
                        ("best:up_slurry,missing/up_drying.yaml", "no such study file: missing/up_drying.yaml"),
                        ("best:not_calib,up_drying", "was not made by calib")):
        proc = run_calib("pipeline", "--params", params, "--fidelity", "smoke", "--runs-dir", str(chain["runs"]),
                         cwd=chain["tmp"], check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("calib: error: --params: params: "), proc.stderr
        assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in chain["runs"].rglob("*")) == before


def test_a_drying_trial_whose_height_test_fails_is_not_equilibrated_and_follows_the_policy(chain):
    """Issue 26, honest verdicts: a drying run too short for its film height to settle (4
    blocks of 1000 steps, tolerance 1e-6) is kept but flagged not equilibrated, with the
    study's penalty added (policy ``penalty``), or becomes a FAIL trial naming the height test
    (policy ``fail``)."""
    short = {"smoke": {"drying_steps": 4000}}
    tight = {"density_tolerance_rel": 1e-6}
    out = {}
    for policy in ("penalty", "fail"):
        study = write_study(chain["tmp"], src=DRYING, name=f"dry_unsettled_{policy}", trials=1, parallel=1,
                            upstream={"study": "up_slurry"}, fidelities=short, slurry=tight,
                            drying={"resolution_um": 0.5, "not_converged": policy, "penalty": 0.75})
        proc = run_study("optimize", "--stage", "drying", "--study", str(study), "--fidelity", "smoke",
                         "--runs-dir", str(chain["runs"]), "--json", cwd=chain["tmp"])
        out[policy] = (parse_json_stdout(proc), _ledger_trial(chain, f"dry_unsettled_{policy}", 0))
    summary, trial = out["penalty"]
    assert summary["trials_complete"] == 1, summary["failures"]
    assert trial.user_attrs["equilibrated"] is False and trial.user_attrs["penalty"] == 0.75
    assert "film's height was still changing" in trial.user_attrs["drying_convergence"]
    assert trial.value == pytest.approx(trial.user_attrs["objective_errors"]["dried_porosity"] ** 2 + 0.75)
    summary, trial = out["fail"]
    assert summary["trials_complete"] == 0 and trial.state == optuna.trial.TrialState.FAIL
    assert "film's height was still changing" in json.dumps(summary["failures"])


def test_a_drying_trial_whose_porosity_drifts_past_the_end_of_its_protocol_is_not_equilibrated(chain):
    """Issue 26, point 6: the run-on past the end of the drying protocol (a second LAMMPS run,
    20 % of its steps at the set pressure) records the porosity it reaches; with a drift
    tolerance no film meets (1e-9) and the height test loose, the trial is flagged not
    equilibrated under ``penalty`` with the drift as its only reason, or becomes a FAIL trial
    naming it under ``fail``."""
    loose = {"density_tolerance_rel": 0.5}
    out = {}
    for policy in ("penalty", "fail"):
        study = write_study(chain["tmp"], src=DRYING, name=f"dry_drift_{policy}", trials=1, parallel=1,
                            upstream={"study": "up_slurry"}, slurry=loose,
                            drying={"resolution_um": 0.5, "not_converged": policy, "penalty": 0.5,
                                    "drift_hold_fraction": 0.2, "drift_tolerance_rel": 1e-9})
        proc = run_study("optimize", "--stage", "drying", "--study", str(study), "--fidelity", "smoke",
                         "--runs-dir", str(chain["runs"]), "--json", cwd=chain["tmp"])
        out[policy] = (parse_json_stdout(proc), _ledger_trial(chain, f"dry_drift_{policy}", 0))
    summary, trial = out["penalty"]
    assert summary["trials_complete"] == 1, summary["failures"]
    obs = trial.user_attrs["observables"]
    assert trial.user_attrs["equilibrated"] is False and trial.user_attrs["penalty"] == 0.5
    note = trial.user_attrs["drying_convergence"]
    assert "past the end of the protocol" in note and "height" not in note
    drift = obs["porosity_past_end"] / obs["porosity"] - 1
    assert obs["porosity_drift_rel_past_end"] == pytest.approx(drift, rel=1e-9) and drift != 0
    assert f"{drift:+.2%}" in trial.user_attrs["drying_drift"]
    workdir = Path(trial.user_attrs["calib_workdir"])
    hold = (workdir / "in.drying_hold").read_text()
    assert "run 4000\n" in hold  # 20 % of smoke's 20,000 drying steps
    assert "lz_hold" in (workdir / "drying_status.txt").read_text()
    summary, trial = out["fail"]
    assert summary["trials_complete"] == 0 and trial.state == optuna.trial.TrialState.FAIL
    assert "past the end of the protocol" in json.dumps(summary["failures"])


def test_a_slurry_state_is_not_a_dried_state(chain):
    """A calendering study pointed at a slurry state (7.5 um CBD beads) is refused."""
    data = yaml.safe_load((REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml").read_text())
    data["calendered_porosity"] = {"points": [{"degree_pct": 30.0, "porosity": 0.4}],
                                   "provenance": {"source": "test fixture", "kind": "synthetic"}}
    (chain["tmp"] / "cal_state_data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    state = chain["runs"] / "up_slurry" / "trial_00000" / "final.data"
    study = write_study(chain["tmp"], src=DRYING, name="cal_wrong_state", stage="calendering",
                        dataset="cal_state_data.yaml", upstream={"data_file": str(state)},
                        objective={"targets": {"calendered_porosity": 1.0}})
    err = _bad(chain, study, stage="calendering")
    assert "final.data" in err and "another composition or stage" in err


def test_characterise_study_scores_conductivity_like_porosity(chain):
    """A characterise study (issue 11): calendering at each degree, then one characterisation
    job per calendered film; a synthetic conductivity series is an objective like the
    calendered porosity, its error computed from the stored characterisation."""
    tmp = chain["tmp"]
    data = yaml.safe_load((REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml").read_text())
    data["calendered_conductivity"] = {
        "unit": "S/m", "points": [{"degree_pct": 0.0, "value": 1e-3}, {"degree_pct": 30.0, "value": 2e-3,
                                                                        "uncertainty": 5e-4}],
        "provenance": {"source": "test fixture: made-up conductivities to exercise the objective", "kind": "synthetic"}}
    (tmp / "char_data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    study = write_study(tmp, src=DRYING, name="char", stage="characterise", dataset="char_data.yaml", trials=1,
                        parallel=1, upstream={"study": "up_drying"},
                        objective={"targets": {"calendered_conductivity": 1.0}},
                        calendering={"degrees_pct": [0.0, 30.0], "wall": PUB_WALL})
    proc = run_study("optimize", "--stage", "characterise", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(chain["runs"]), "--json", cwd=tmp)
    s = parse_json_stdout(proc)
    assert s["trials_complete"] == 1, s["failures"]
    rows = {r["degree_pct"]: r for r in s["best_observables"]["characterisation"]}
    # a smoke film (200 beads) may have no conducting path from collector to top: 0 S/m
    assert set(rows) == {0.0, 30.0} and all(r["conductivity_s_m"] >= 0 for r in rows.values())
    assert {r["degree_pct"] for r in s["best_observables"]["calendering"]} == {0.0, 30.0}
    expect = ((((rows[0.0]["conductivity_s_m"] - 1e-3) / 1e-3) ** 2
               + ((rows[30.0]["conductivity_s_m"] - 2e-3) / 5e-4) ** 2) / 2) ** 0.5
    assert s["best_observables"]["calendered_conductivity_error"] == pytest.approx(expect)
    assert s["best_value"] == pytest.approx(expect**2)
    best = chain["runs"] / "char" / f"trial_{s['best_trial']:05d}"
    for k in (0, 1):
        assert (best / f"characterise_{k:02d}" / "characterisation.json").is_file()
        assert "done in" in (best / f"characterise_{k:02d}" / "characterise.log").read_text()
        # each job's result file holds the conductivity the summary reports for its degree
        result = json.loads((best / f"characterise_{k:02d}" / "characterisation.json").read_text())
        assert result["conductivity_s_m"] == pytest.approx(rows[(0.0, 30.0)[k]]["conductivity_s_m"])
    assert (best / "characterisation_vs_degree.png").stat().st_size > 0
    assert_png(best / "characterisation_vs_degree.png")
    client = MlflowClient(tracking_uri=f"sqlite:///{chain['runs'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("char")
    (run,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("calib.role") == "trial"]
    assert run.data.metrics["characterise/30_pct/conductivity_s_m"] == pytest.approx(rows[30.0]["conductivity_s_m"],
                                                                                     rel=1e-5)  # 6 digits shown
    assert_runs_match_ledger(f"sqlite:///{chain['runs'] / 'mlflow.db'}", "char", s["storage"])
    assert run.data.metrics["calendered_conductivity_rms_point_error"] == pytest.approx(expect, rel=1e-5)


# ------------------------------------------------------------------ calib export of the lineage


def _export(chain, *args: str, check: bool = True):
    return run_calib("export", *args, "--runs-dir", str(chain["runs"]), cwd=chain["tmp"], check=check)


def _ledger_trial(chain, study: str, number: int) -> optuna.trial.FrozenTrial:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{chain['runs'] / 'calib.db'}").trials[number]


def test_export_of_a_lineage_has_one_column_per_stage_from_the_ledger(chain, cal_pub):
    """Given in any order, three chained studies make one table: calendering's best trial,
    the drying trial it started from and the slurry trial that one started from, each with
    the values, scores and state checksums the ledger holds."""
    doc = json.loads(_export(chain, "--study", "cal_pub", "--study", "up_slurry", "--study", "up_drying",
                             "--format", "json").stdout)
    cols = doc["columns"]
    assert [c["study"] for c in cols] == ["up_slurry", "up_drying", "cal_pub"]
    assert [c["title"] for c in cols] == ["slurry", "dried electrode (drying)", "dried electrode (calendering)"]
    assert cols[2]["trial"] == cal_pub["best_trial"]
    cal = _ledger_trial(chain, "cal_pub", cal_pub["best_trial"])
    dry = _ledger_trial(chain, "up_drying", cal.user_attrs["lineage"]["trial"])
    slurry = _ledger_trial(chain, "up_slurry", dry.user_attrs["lineage"]["trial"])
    for col, t in zip(cols, (slurry, dry, cal)):
        assert col["trial"] == t.number and col["params"] == t.user_attrs["table_s1"]
        assert col["objective"] == t.value
        for o in col["observables"]:
            e = t.user_attrs["errors"][o["name"]]
            if o["points"]:  # a calendering series: simulated vs measured per degree
                assert [(p["simulated"], p["target"]) for p in o["points"]] == list(zip(e["simulated"], e["measured"]))
                assert [p["at"] for p in o["points"]] == [f"{d:g} %" for d in e["degree_pct"]]
                assert o["error"] == e["error"]
            else:
                assert o["simulated"] == e["simulated"] and o["target"] == e["target"]
    assert cols[1]["trial"] == chain["drying_json"]["best_trial"]
    state = chain["runs"] / "up_slurry" / f"trial_{slurry.number:05d}" / "final.data"
    sha = hashlib.sha256(state.read_bytes()).hexdigest()
    assert cols[1]["provenance"]["calibrated on state"] == (f"{state.resolve()} (sha256 {sha}; slurry study up_slurry "
                                                            f"trial {slurry.number})")
    assert cols[0]["provenance"]["state left by the trial"] == f"{state.resolve()} (sha256 {sha})"
    assert {o["name"] for o in cols[0]["observables"]} == {"slurry_density"}
    assert {o["name"] for o in cols[1]["observables"]} == {"dried_porosity"}
    assert {o["name"] for o in cols[2]["observables"]} == {"calendered_porosity"}
    # the same lineage as a two-column markdown Table S1, slurry and dried electrode
    md = _export(chain, "--study", "up_drying", "--study", "up_slurry").stdout
    assert "| parameter | unit | slurry | dried electrode |" in md
    main = md.split("Resolved per bead type")[0]  # the Table S1 itself, before the per-type table
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[3:5]] for ln in main.splitlines()
            if ln.startswith("| eps_") or ln.startswith("| kn |")}
    assert float(rows["eps_AM"][0].split()[0]) == pytest.approx(slurry.user_attrs["table_s1"]["eps_AM"], rel=1e-5)
    assert float(rows["eps_AM"][1].split()[0]) == pytest.approx(dry.user_attrs["table_s1"]["eps_AM"], rel=1e-5)
    assert float(rows["kn"][1]) == dry.user_attrs["table_s1"]["kn"]
    # --trial picks the drying trial; the slurry column is still the state it started from
    other = 1 - chain["drying_json"]["best_trial"]
    doc = json.loads(_export(chain, "--study", "up_slurry", "--study", "up_drying", "--trial", str(other),
                             "--format", "json").stdout)
    assert [(c["study"], c["trial"]) for c in doc["columns"]] == [("up_slurry", slurry.number), ("up_drying", other)]
    assert doc["columns"][1]["params"] == _ledger_trial(chain, "up_drying", other).user_attrs["table_s1"]


def test_export_refuses_an_edited_dataset_and_never_overwrites(chain, cal_pub):
    """A study whose dataset changed since it ran (here its calendered porosity target) is
    refused, and ``--out`` never replaces a file: exit 2, nothing written."""
    data = chain["tmp"] / "cal_pub_data.yaml"
    original = data.read_text()
    edited = yaml.safe_load(original)
    edited["calendered_porosity"]["points"][1]["porosity"] = 0.35
    try:
        data.write_text(yaml.safe_dump(edited, sort_keys=False))
        before = _snapshot(chain["tmp"])
        proc = _export(chain, "--study", "cal_pub", check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip() == (f"calib: error: --study: dataset: study 'cal_pub' was calibrated on another "
                                       f"version of {data}: what it uses from the file (bead sizes, targets) changed "
                                       "since; restore the file to export this study")
        assert _snapshot(chain["tmp"]) == before
    finally:
        data.write_text(original)
    out = chain["tmp"] / "taken"
    out.mkdir()
    (out / "table_s1.md").write_text("mine\n")
    before = _snapshot(chain["tmp"])
    proc = _export(chain, "--study", "cal_pub", "--out", str(out), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"--out: out: {out / 'table_s1.md'} exists (export never overwrites" in proc.stderr
    assert _snapshot(chain["tmp"]) == before and (out / "table_s1.md").read_text() == "mine\n"


def test_export_out_writes_include_files_that_run_on_the_trials_own_states(chain):
    """``--out``: one include file per stage with its provenance, and the table in every
    format; each include, read after the state its trial left, is accepted by LAMMPS."""
    from sim_backends.lammps.install import locate_lammps

    out = chain["tmp"] / "published"
    proc = _export(chain, "--study", "up_slurry", "--study", "up_drying", "--format", "latex", "--out", str(out))
    assert proc.stdout.startswith("% Table S1 written by calib export")
    d = chain["drying_json"]["best_trial"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"drying_trial{d}.in", "slurry_trial0.in", "table_s1.csv", "table_s1.json",
                            "table_s1.md", "table_s1.tex"])
    assert (out / "table_s1.tex").read_text() == proc.stdout
    inst = locate_lammps()
    for stage, study, trial in (("slurry", "up_slurry", 0), ("drying", "up_drying", d)):
        inc = (out / f"{stage}_trial{trial}.in").read_text()
        head = dict(ln[2:].split(": ", 1) for ln in inc.splitlines() if ln.startswith("# ") and ": " in ln)
        assert head["study"].startswith(f"{study} ({stage} stage")
        assert head["trial"].startswith(f"{trial} (")
        assert head["dataset"].startswith("ssb_nmc622_lpscl: ") and "sha256 " in head["dataset"]
        assert head["fidelity"] == "smoke, 200 beads"
        assert head["calib"] == calib_version
        assert head["LAMMPS"].startswith("22 Jul 2025")
        workdir = chain["runs"] / study / f"trial_{trial:05d}"
        (workdir / "in.include_check").write_text(
            "units micro\natom_style sphere\nread_data final.data\n"
            f"include {out / f'{stage}_trial{trial}.in'}\nthermo_style custom step pe\nrun 0\n"
            'print "PE $(pe:%.12g)"\n')
        run = subprocess.run([str(inst.executable), "-in", "in.include_check", "-log", "log.include_check",
                              "-nocite", "-screen", "none"], cwd=workdir, env={**os.environ, **inst.env},
                             capture_output=True, text=True, timeout=120)
        log = (workdir / "log.include_check").read_text()
        (workdir / "in.include_check").unlink()
        (workdir / "log.include_check").unlink()
        assert run.returncode == 0 and "ERROR" not in log, log[-2000:]
        assert "Loop time of" in log and "200 atoms" in log
        # the force field is the trial's own: on the state the trial wrote at its last step,
        # the potential energy is the one the trial's log printed there (8 digits)
        trial_log = (workdir / "log.lammps").read_text()
        last = [r for r in thermo_rows(trial_log) if "PotEng" in r][-1]
        pe = float(re.search(r"^PE (\S+)$", log, re.M).group(1))
        assert pe == pytest.approx(float(last["PotEng"]), rel=1e-6), (stage, pe, last)
        assert pe != 0.0


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("args, message", [
    (["--study", "up_slurry", "--study", "cal_pub"], "are not one lineage: 'cal_pub' started from study "
                                                     "'up_drying', which is not given (add --study up_drying)"),
    (["--study", "up_drying", "--study", "cal_pub", "--study", "cal_seed_walls"],  # two calendering studies of one drying
     "not one lineage: 'cal_pub' and 'cal_seed_walls' each end a chain"),
    (["--study", "up_slurry", "--study", "up_drying", "--format", "lammps"], "--format: format: lammps prints one "
                                                                            "include file, and this export has 2"),
    (["--study", "up_drying", "--study", "up_drying"], "study 'up_drying' is given twice"),
    (["--study", "cal_seed_walls", "--trial", "0"], "--trial: trial: trial 0 of study 'cal_seed_walls' did not "
                                                    "complete (FAIL: calendering at 30 %"),
    (["--study", "up_drying", "--trial", "9"], "--trial: trial: study 'up_drying' has no trial 9 (its trials are 0 to 1)"),
    (["--study", "up_drying", "--pareto"], "--pareto: pareto: study 'up_drying' has one objective (dried_porosity)"),
    (["--study", "up_slurry", "--study", "up_drying", "--top", "2"], "--top: top: --top picks sets of one study"),
    (["--study", "up_drying", "--top", "0"], "--top: top: must be at least 1"),
])
def test_export_bad_input_one_line_exit_2_nothing_written(chain, cal_pub, cal_seed_walls, args, message):
    before = _snapshot(chain["tmp"])
    proc = _export(chain, *args, "--out", str(chain["tmp"] / "never"), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calib: error: ") and message in lines[0], proc.stderr
    assert proc.stdout == ""
    assert _snapshot(chain["tmp"]) == before and not (chain["tmp"] / "never").exists()
