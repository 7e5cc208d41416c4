"""End to end, smoke size, real LAMMPS / MLflow: ``calib pipeline``, one parameter set
through slurry -> drying -> calendering -> characterisation (moved out of
``test_e2e_electrode.py`` so that it runs beside that module's chained studies on the other
pytest-xdist worker)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, parse_json_stdout, run_calib
from mlflow_checks import assert_no_running_runs, assert_png, download

pytestmark = pytest.mark.lammps

PIPELINE = REPO / "studies" / "ssb_pipeline.yaml"


def test_pipeline_table_s1_smoke_json(tmp_path: Path):
    proc = run_calib("pipeline", "--params", "table-s1", "--fidelity", "smoke", "--json", "--placements", "1",
                     "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    s = parse_json_stdout(proc)
    degs = s["degrees"]
    assert [d["degree_pct"] for d in degs] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    # 50 % runs (issue 27): a bead whose centre ends beyond the calendering plane fails its degree
    # (sim_backends.lammps.calendering), and the pipeline left none out
    assert s["failed_degrees"] == {} and "failed" not in s
    for d in degs:
        assert {"degree_pct", "thickness_um", "porosity"} <= set(d)
        assert 0 < d["porosity"] < 1
        t0 = d["thickness_before_um"]
        # the plane held at (1 - degree) T0; the film's top presses into it by less than the
        # largest bead radius (AM, 1.02 x 10 um / 2)
        assert d["plane_um"] == pytest.approx((1 - d["degree_pct"] / 100) * t0, rel=1e-6)
        assert d["thickness_held_um"] - d["plane_um"] < 5.1
        if d["degree_pct"] > 0:  # compressed films press on the plane (at 0 % the top may settle below it)
            assert d["thickness_held_um"] >= d["plane_um"]
        # the characterisation of each calendered film (issue 11)
        assert d["conductivity_s_m"] >= 0 and 0 <= d["se_connected_fraction"] <= 1
        assert 0 <= d["se_diffusivity_rel"] <= d["se_volume_fraction"]
        tau = d["se_tortuosity"]
        assert (tau is None) == (d["se_diffusivity_rel"] == 0) and (tau is None or tau >= 1)
        assert 0 < d["analysed_thickness_um"] <= d["thickness_um"]
    assert any(d["conductivity_s_m"] > 0 for d in degs) and any(d["se_tortuosity"] for d in degs)
    assert s["table_s1"]["dried"]["eps_AM"] == 100.0 and s["table_s1"]["slurry"]["eps_AM"] == 1.0
    assert s["slurry"]["density_g_cm3"] > 0 and 0 < s["dried"]["porosity"] < 1
    with open(s["files"]["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["degree_pct"]) for r in rows] == [d["degree_pct"] for d in degs]
    assert Path(s["files"]["porosity_plot"]).stat().st_size > 0 and Path(s["files"]["profile_plot"]).stat().st_size > 0
    assert Path(s["files"]["characterisation_vs_degree"]).stat().st_size > 0
    for key in ("porosity_plot", "profile_plot", "characterisation_vs_degree"):
        assert_png(Path(s["files"][key]))
    # the CSV: the JSON's degrees, one row each, with finite thickness and porosity equal to
    # the JSON's (written to 6 significant digits)
    assert {"degree_pct", "thickness_um", "porosity"} <= set(rows[0])
    for r, d in zip(rows, degs):
        for col in ("thickness_um", "porosity"):
            assert math.isfinite(float(r[col])) and float(r[col]) == pytest.approx(d[col], rel=1e-5), (col, r)
    prof = json.loads(Path(s["files"]["profiles"]).read_text())
    assert set(prof) == {"dried", "0", "10", "20", "30", "40", "50"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("calib-pipeline")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == s["mlflow_run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == s["mlflow_run_id"]]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == sorted(
        ["slurry", "drying", "characterise"] + [f"characterise_{d:g}pct" for d in (0, 10, 20, 30, 40, 50)])
    arts = {a.path for a in client.list_artifacts(s["mlflow_run_id"])}
    assert {"pipeline.csv", "porosity_vs_degree.png", "profiles.png", "pipeline.json",
            "characterisation_vs_degree.png"} <= arts
    dl = tmp_path / "dl"
    logged = json.loads(download(client, s["mlflow_run_id"], "pipeline.json", dl).read_text())
    assert logged["degrees"] == degs and logged["dried"] == s["dried"]
    assert download(client, s["mlflow_run_id"], "pipeline.csv", dl).read_text() == Path(s["files"]["csv"]).read_text()
    for name in ("porosity_vs_degree.png", "profiles.png", "characterisation_vs_degree.png"):
        assert_png(download(client, s["mlflow_run_id"], name, dl))
    assert_no_running_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "calib-pipeline")
    assert all(r.info.status == "FINISHED" for r in children)
    per_degree = {r.info.run_name: r for r in children}["characterise_30pct"]
    assert per_degree.data.metrics["conductivity_s_m"] == pytest.approx(degs[3]["conductivity_s_m"], rel=1e-5)
    # as a study's runs: metrics to 6 significant digits, numbers as .6g parameters, and a
    # description that says what the run is and what calib pipeline printed
    for run in children:
        for k, v in run.data.metrics.items():
            assert v == float(f"{v:.6g}"), (run.info.run_name, k, v)
    assert parent[0].data.params["dried.eps_AM"] == "100" and parent[0].data.params["slurry.eps_AM"] == "1"
    note = parent[0].data.tags["mlflow.note.content"]
    assert note.startswith(f"**calib pipeline `{parent[0].info.run_name}`**") and "slurry density" in note
    assert "30 %: thickness" in note and "pipeline.json" in note


def test_pipeline_failing_stage_keeps_what_it_measured(tmp_path: Path):
    """With the seed's own (soft) walls the calendering stage fails: exit 1 naming the stage
    (and the placement: two by default), and the slurry and drying results of the failing
    placement stay in pipeline.json and in a FAILED MLflow run."""
    spec = yaml.safe_load(PIPELINE.read_text())
    del spec["drying"]["wall"], spec["calendering"]["wall"]
    study = tmp_path / "soft_walls.yaml"
    study.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run_calib("pipeline", "--study", str(study), "--degrees", "0,40", "--fidelity", "smoke", "--json",
                     "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    # calendering runs inside the characterise stage (calendering, then characterisation)
    assert ("pipeline failed at characterise: placement 1: calendering at 0 %" in proc.stderr
            or "pipeline failed at characterise: placement 1: calendering at 40 %" in proc.stderr), proc.stderr
    s = parse_json_stdout(proc)
    assert s["failed"]["stage"] == "characterise"
    assert s["slurry"]["density_g_cm3"] > 0 and 0 < s["dried"]["porosity"] < 1 and s["degrees"] == []
    saved = json.loads((Path(s["workdir"]) / "pipeline.json").read_text())
    assert saved["dried"] == s["dried"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.get_run(s["mlflow_run_id"])
    assert run.info.status == "FAILED" and "calendering" in run.data.tags["fail_reason"]
    assert "**Failed** at stage characterise" in run.data.tags["mlflow.note.content"]
