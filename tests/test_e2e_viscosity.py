"""End to end: a slurry study scoring density and a 3-rate viscosity curve (the Li-ion
example study at smoke size): real LAMMPS NPT then SLLOD runs, Optuna ledger, MLflow
store, ParEGO proposals and the Pareto front; and the not-converged policies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, parse_json_stdout, run_calib, run_study
from mlflow_checks import assert_finished_lammps_log, assert_png, assert_runs_match_ledger, download, read_blocks

pytestmark = pytest.mark.lammps

LIB_STUDY = REPO / "studies" / "lib_nmc_slurry.yaml"


def lib_study(tmp: Path, name: str, **overrides) -> Path:
    spec = yaml.safe_load(LIB_STUDY.read_text())
    spec["name"] = name
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def curve_study(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("e2e_curve")
    study = lib_study(tmp, "e2e_curve", trials=3, parallel=1, optimizer={"n_initial": 2},
                      objective={"targets": {"slurry_density": 1.0, "viscosity_curve": 1.0},
                                 "scalarisation": "parego"},
                      # shorter shear runs than smoke's 240,000 steps: the plumbing is under test here;
                      # segments of 0.25 strain keep two segments (a standard error) at 18 1/s
                      viscosity={"segment_strain": 0.25},
                      fidelities={"smoke": {"initial_box_scale": 0.36, "shear_max_steps": 40000}})
    proc = run_study("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(tmp / "runs"), "--json", cwd=tmp)
    return tmp, parse_json_stdout(proc)


def _wall_window(log: Path) -> tuple[float, float]:
    """(start, end) of a LAMMPS run: log mtime minus its 'Total wall time'."""
    m = re.search(r"Total wall time: (\d+):(\d+):(\d+)", log.read_text())
    assert m, f"no wall time in {log}"
    wall = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    end = log.stat().st_mtime
    return end - wall, end


def test_three_rate_curve_in_the_summary(curve_study):
    tmp, s = curve_study
    assert s["trials_complete"] >= 1, s["failures"]
    obs = s["best_observables"]
    rates = obs["viscosity_pa_s"]
    assert [r["shear_rate_per_s"] for r in rates] == [18.0, 50.0, 125.0]
    assert [r["simulated_rate_per_us"] for r in rates] == pytest.approx([0.018, 0.05, 0.125])
    for r in rates:
        assert r["viscosity_pa_s"] > 0 and r["sem_pa_s"] >= 0
        assert r["steps"] > 0 and r["strain"] == pytest.approx(r["simulated_rate_per_us"] * r["steps"] * 0.001)
        assert isinstance(r["converged"], bool)
    assert obs["viscosity_curve_rms_log_error"] > 0
    assert obs["slurry_density"]["target"] == 2.30
    assert "lib_nmc111_nmp" in s["viscosity_curve_source"] and "kind measured" in s["viscosity_curve_source"]


def test_pareto_list(curve_study):
    tmp, s = curve_study
    front = s["pareto"]
    assert 1 <= len(front) <= s["trials_complete"]
    for p in front:
        assert set(p["objectives"]) == {"slurry_density", "viscosity_curve"}
    # no listed trial is dominated by any completed trial of the ledger
    study = optuna.load_study(study_name="e2e_curve", storage=s["storage"])
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    pts = {t.number: [abs(t.user_attrs["objective_errors"][k]) for k in ("slurry_density", "viscosity_curve")]
           for t in done}
    def dominates(o, mine):
        return all(a <= b for a, b in zip(o, mine)) and o != mine

    for p in front:
        mine = pts[p["trial"]]
        assert not any(dominates(o, mine) for o in pts.values())
    # ... and every non-dominated completed trial is listed, with its ledger errors and value
    non_dominated = {n for n, mine in pts.items() if not any(dominates(o, mine) for o in pts.values())}
    assert [p["trial"] for p in front] == sorted(non_dominated)
    by_number = {t.number: t for t in done}
    for p in front:
        assert [p["objectives"][k] for k in ("slurry_density", "viscosity_curve")] == pts[p["trial"]]
        assert p["value"] == by_number[p["trial"]].value
    # the best trial (lowest weighted sum of squared errors plus penalty) is on the front,
    # unless only trials carrying a larger penalty (unconverged density or viscosity)
    # dominate it: without penalties the minimum of a sum increasing in every |error|
    # cannot be dominated
    best = by_number[s["best_trial"]]
    assert best.value == min(t.value for t in done)
    dominating = [n for n, o in pts.items() if dominates(o, pts[best.number])]
    if not any(t.user_attrs["penalty"] for t in done):
        assert best.number in {p["trial"] for p in front}
    for n in dominating:
        assert by_number[n].user_attrs["penalty"] > best.user_attrs["penalty"], (n, best.number)


def test_export_pareto_sets_side_by_side(curve_study):
    """``calib export --pareto``: one column per trial of the front the summary lists, best
    objective first, each with its ledger values and both objectives' scores."""
    tmp, s = curve_study
    doc = json.loads(run_calib("export", "--study", "e2e_curve", "--storage", s["storage"], "--pareto",
                               "--format", "json", cwd=tmp).stdout)
    study = optuna.load_study(study_name="e2e_curve", storage=s["storage"])
    front = sorted((study.trials[p["trial"]] for p in s["pareto"]), key=lambda t: t.value)
    assert [c["trial"] for c in doc["columns"]] == [t.number for t in front]
    for c, t in zip(doc["columns"], front):
        assert c["params"] == t.user_attrs["table_s1"] and c["objective"] == t.value
        assert {o["name"] for o in c["observables"]} == {"slurry_density", "viscosity_curve"}
        curve = next(o for o in c["observables"] if o["name"] == "viscosity_curve")
        assert curve["error"] == t.user_attrs["errors"]["viscosity_curve"]["error"]
        assert "Pareto front" in c["provenance"]["trial"]
    md = run_calib("export", "--study", "e2e_curve", "--storage", s["storage"], "--pareto", cwd=tmp).stdout
    assert "| parameter | unit | " + " | ".join(f"trial {t.number}" for t in front) + " |" in md
    assert "| viscosity_curve |" in md and "| slurry_density |" in md

def test_shear_runs_share_the_restart_and_run_concurrently(curve_study):
    tmp, s = curve_study
    trial = tmp / "runs" / "e2e_curve" / f"trial_{s['best_trial']:05d}"
    shear = sorted(trial.glob("shear_*"))
    assert [d.name for d in shear] == ["shear_00", "shear_01", "shear_02"]
    for d in shear:
        assert "read_restart ../final.restart" in (d / "in.shear").read_text()
        assert (d / "shear_blocks.txt").is_file()
        # the -P_xy block means: one finite value per block, steps increasing; the run ended normally
        columns, rows = read_blocks(d / "shear_blocks.txt")
        assert columns == ["TimeStep", "v_mpxy"] and len(rows) >= 2, (d, columns, len(rows))
        steps = [r[0] for r in rows]
        assert steps == sorted(set(steps))
        assert_finished_lammps_log((d / "log.lammps").read_text(), f"{d.name}/log.lammps")
    (s0, e0), (s1, e1) = _wall_window(shear[0] / "log.lammps"), _wall_window(shear[1] / "log.lammps")
    overlap = min(e0, e1) - max(s0, s1)
    assert overlap > 0.5, f"shear_00 and shear_01 did not overlap ({overlap:.1f} s)"


def test_mlflow_per_rate_metrics_plot_and_pareto(curve_study):
    tmp, s = curve_study
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e_curve")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`calib.role` = 'trial'")
    best = next(r for r in runs if r.data.tags["trial_number"] == str(s["best_trial"]))
    m = best.data.metrics
    for rate in ("18", "50", "125"):
        for what in ("viscosity_pa_s", "sem_pa_s", "strain", "converged"):
            assert f"shear/{rate}_per_s/{what}" in m
    names = {a.path for a in client.list_artifacts(best.info.run_id)}
    assert "viscosity_curve.png" in names and "shear_00" in names
    assert {a.path for a in client.list_artifacts(best.info.run_id, "shear_00")} >= {"shear_00/log.lammps",
                                                                                      "shear_00/in.shear"}
    parent = client.search_runs([exp.experiment_id], filter_string="tags.`calib.role` = 'study'")[0]
    assert "pareto.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    # the logged files' contents
    dl, workdir = tmp / "dl", Path(best.data.tags["calib.workdir"])
    assert_png(download(client, best.info.run_id, "viscosity_curve.png", dl))
    log = download(client, best.info.run_id, "shear_00/log.lammps", dl).read_text()
    assert_finished_lammps_log(log, "shear_00/log.lammps")
    assert log == (workdir / "shear_00" / "log.lammps").read_text()
    deck = download(client, best.info.run_id, "shear_00/in.shear", dl).read_text()
    assert deck == (workdir / "shear_00" / "in.shear").read_text()
    erate = re.search(r"^fix shear_box all deform 1 xy erate (\S+) remap v$", deck, re.M)
    assert erate and float(erate[1]) == pytest.approx(0.018, rel=1e-12)  # 18 1/s in 1/us
    front = json.loads(download(client, parent.info.run_id, "pareto.json", dl).read_text())
    assert front == s["pareto"]


def test_mlflow_runs_ended_with_their_ledger_states(curve_study):
    tmp, s = curve_study
    assert_runs_match_ledger(f"sqlite:///{tmp / 'runs' / 'mlflow.db'}", "e2e_curve", s["storage"])


def test_parego_proposal_used_the_gp(curve_study):
    """Trial 2 (after 2 Sobol points) was proposed by the GP on ParEGO-scalarised values,
    not by the Sobol sequence."""
    from calib.optimize.botorch_sampler import sobol_point
    from calib.study.space import ParameterSpace
    from calib.study.load import load_study

    tmp, s = curve_study
    study = optuna.load_study(study_name="e2e_curve", storage=s["storage"])
    first = study.trials[:2]
    for t in first:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert set(t.user_attrs["objective_errors"]) == {"slurry_density", "viscosity_curve"}
    space = ParameterSpace.from_spec(load_study(tmp / "e2e_curve.yaml").spec.parameters)
    sobol = space.from_unit(sobol_point(space.dim, 2, 0))
    t2 = study.trials[2].params
    differs = any(abs(t2[k] - sobol[k]) > 1e-9 * max(1.0, abs(sobol[k])) for k in sobol)
    # with two completed trials the GP proposes; with fewer the sampler stays on Sobol
    assert differs == all(t.state == optuna.trial.TrialState.COMPLETE for t in first)


@pytest.mark.parametrize("policy", ["penalty", "fail"])
def test_not_converged_policy(tmp_path, policy):
    """Runs too short to reach min_strain: every rate is 'not converged'; the study's policy
    makes that a penalty on a COMPLETE trial or a FAIL trial with its reason."""
    study = lib_study(tmp_path, f"nc_{policy}", trials=1,
                      viscosity={"shear_rates_per_s": [18.0, 125.0], "min_strain": 5.0, "max_strain": 10.0,
                                 "not_converged": policy, "penalty": 0.5},
                      fidelities={"smoke": {"initial_box_scale": 0.36, "shear_max_steps": 8000}})
    s = parse_json_stdout(run_study("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                    "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", "none", "--json",
                                    cwd=tmp_path))
    study_obj = optuna.load_study(study_name=f"nc_{policy}", storage=s["storage"])
    t = study_obj.trials[0]
    if policy == "penalty":
        assert s["trials_complete"] == 1
        # 0.5 for the unconverged curve, plus the slurry's own penalty (1.0) if its density
        # did not converge in the smoke run
        density_penalty = 0.0 if t.user_attrs["density_converged"] else 1.0
        assert t.user_attrs["penalty"] == pytest.approx(0.5 + density_penalty)
        assert all(not r["converged"] for r in s["best_observables"]["viscosity_pa_s"])
        base = t.value - 0.5 - density_penalty
        assert base == pytest.approx(sum(e ** 2 for e in t.user_attrs["objective_errors"].values()))
    else:
        assert s["trials_failed"] == 1 and s["trials_complete"] == 0
        reason = s["failures"]["0"]
        assert "not converged" in reason and "18 1/s" in reason and "125 1/s" in reason
        assert len(t.user_attrs["viscosity"]) == 2  # the measurements are kept with the failed trial


def test_report_renders_every_section_for_a_curve_study(curve_study):
    """``calib report`` on the two-objective (density + viscosity curve) study: every
    section, the measured and simulated curves, and the Pareto front."""
    from test_e2e_refine import _check_report

    tmp, s = curve_study
    out = tmp / "report"
    text = run_calib("report", "--study", "e2e_curve", "--out", str(out), "--runs-dir", str(tmp / "runs"),
                     cwd=tmp).stdout
    _check_report(out / "report.html", text, pareto=r"\d+ non-dominated")
    assert_png(out / "viscosity_curve.png")
    assert_png(out / "pareto.png")
    html = (out / "report.html").read_text()
    # the observables section shows the best trial's simulated curve against the measured one, and names the latter
    section = html.split('<section id="observables">', 1)[1].split("</section>", 1)[0]
    assert 'alt="simulated viscosity curve of the best trial against the measured one"' in section
    assert "(viscosity_curve.png)</figcaption>" in section and "Measured curve: " in section
    assert "Measured curve: n/a" not in section
