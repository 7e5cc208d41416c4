"""End to end: ``calib refine``, ``calib predict`` and ``calib report`` on a stored smoke
study (real LAMMPS, Optuna and MLflow stores): manual sets become trials of the study with
their tag, the next model proposal learns from them, the model's uncertainty is smaller
where it has data, the report renders every section and is logged to the parent run, and
bad input writes nothing."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import SHORT, parse_json_stdout, run_calib, write_study
from mlflow_checks import assert_png, assert_runs_match_ledger, download

pytestmark = pytest.mark.lammps
NAME = "e2e_refine"


@pytest.fixture(scope="module")
def refined(tmp_path_factory) -> dict:
    """3 trials (2 Sobol, 1 model), then one ``calib refine``: 1 manual set outside the
    bounds (``--file``) and 2 of a scan, then 1 more model trial."""
    tmp = tmp_path_factory.mktemp("refine")
    study = write_study(tmp, NAME, trials=3, parallel=1, optimizer={"n_initial": 2}, fidelities=SHORT)
    runs = tmp / "runs"
    common = ["--runs-dir", str(runs)]
    run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", *common, cwd=tmp)
    sets = tmp / "sets.yaml"
    sets.write_text("- {eps_CBD: 2000}\n")
    refine = ["refine", "--study", NAME, "--file", str(sets), "--scan", "sigma_AM=0.92:1.08:2",
              "--allow-outside-bounds", *common]
    scan = parse_json_stdout(run_calib(*refine, "--json", cwd=tmp))
    final = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity",
                                        "smoke", "--trials", "7", "--json", *common, cwd=tmp))
    return {"tmp": tmp, "study": study, "runs": runs, "common": common, "scan": scan, "sets": sets,
            "final": final, "storage": final["storage"]}


def _trials(refined) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=NAME, storage=refined["storage"]).get_trials()


def test_manual_sets_are_trials_of_the_study_tagged_manual(refined):
    trials = _trials(refined)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7
    manual = [t for t in trials if t.user_attrs.get("calib_manual")]
    assert [t.number for t in manual] == [3, 4, 5]
    assert manual[0].params["eps_CBD"] == 2000.0 and manual[0].user_attrs["calib_outside_bounds"] == ["eps_CBD"]
    assert [t.params["sigma_AM"] for t in manual[1:]] == pytest.approx([0.92, 1.08])
    best_before = min(trials[:3], key=lambda t: t.value)
    for t in manual[1:]:  # the other keys from the best trial
        assert {k: v for k, v in t.params.items() if k != "sigma_AM"} == pytest.approx(
            {k: v for k, v in best_before.params.items() if k != "sigma_AM"})
    assert manual[1].user_attrs["calib_outside_bounds"] == []
    rows = refined["scan"]["manual_trials"]
    assert [r["trial"] for r in rows] == [3, 4, 5] and rows[0]["outside_bounds"] == ["eps_CBD"]
    assert "calib_manual" not in trials[6].user_attrs  # trial 6: a model proposal

    client = MlflowClient(tracking_uri=f"sqlite:///{refined['runs'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    assert len([r for r in runs if r.data.tags.get("calib.role") == "study"]) == 1  # the same parent run
    kind = {int(r.data.tags["trial_number"]): r.data.tags["calib.proposal"] for r in runs
            if r.data.tags.get("calib.role") == "trial"}
    scan = "manual (--scan sigma_AM=0.92:1.08:2)"
    assert kind == {0: "initial design", 1: "initial design", 2: "model", 3: f"manual (--file {refined['sets']})",
                    4: scan, 5: scan, 6: "model"}
    r3 = next(r for r in runs if r.data.tags.get("trial_number") == "3")
    assert r3.data.tags["calib.outside_bounds"] == "eps_CBD" and "outside bounds (eps_CBD)" in r3.data.tags["calib.flags"]
    # after optimize, refine and optimize again: no run left RUNNING, the one parent FINISHED,
    # one FINISHED trial run per COMPLETE ledger trial
    assert len(assert_runs_match_ledger(f"sqlite:///{refined['runs'] / 'mlflow.db'}", NAME, refined["storage"])) == 7


def test_the_next_model_proposal_learns_from_manual_trials(refined):
    """Trial 6's point is what the study's sampler proposes from trials 0-5; without the
    manual trials 3-5 it would have proposed another point."""
    from calib.optimize.sampler_registry import make_sampler
    from calib.study.space import ParameterSpace
    from calib.study.load import load_study

    spec = load_study(refined["study"], fidelity="smoke").spec
    space = ParameterSpace.from_spec(spec.parameters)
    trials = _trials(refined)
    assert trials[6].user_attrs.get("calib_manual") is None

    def proposal(history):
        sampler = make_sampler(spec, space, spec.seed, 1)
        return space.from_unit(sampler._propose_batch(history, 6)[0])

    with_manual = proposal(trials[:6])
    without = proposal([t for t in trials[:6] if not t.user_attrs.get("calib_manual")])
    assert with_manual == pytest.approx(trials[6].params, rel=1e-4)
    assert without != pytest.approx(trials[6].params, rel=1e-2)


def test_predict_is_surer_where_the_study_has_data(refined):
    r = refined
    best = r["final"]["best_params"]
    sets = r["tmp"] / "sets.yaml"  # the best trial's set, and the far corner of the bounds
    sets.write_text(yaml.safe_dump([{k: best[k] for k in ("eps_AM", "sigma_AM", "eps_SE", "sigma_SE", "eps_CBD")},
                                    {"eps_AM": 3000, "sigma_AM": 1.1, "eps_SE": 10, "sigma_SE": 0.9, "eps_CBD": 0.1}]))
    res = parse_json_stdout(run_calib("predict", "--study", NAME, "--json", "--file", str(sets),
                                      "--allow-outside-bounds", *r["common"], cwd=r["tmp"]))  # the best may be trial 5
    assert res["trials_fitted"] == 7
    p_at, p_far = res["predictions"]
    assert p_at["params"] == pytest.approx({k: best[k] for k in p_at["params"]})
    d_at, d_far = p_at["outputs"]["slurry_density"], p_far["outputs"]["slurry_density"]
    assert d_at["unit"] == "g/cm^3" and d_at["target"] == pytest.approx(1.90)
    assert d_at["sd"] < d_far["sd"] / 2, (d_at, d_far)
    observed = r["final"]["best_observables"]["slurry_density"]["simulated"]
    assert abs(d_at["value"] - observed) < max(3 * d_at["sd"], 0.01)
    assert p_at["outputs"]["objective"]["low"] <= p_at["outputs"]["objective"]["value"] <= \
        p_at["outputs"]["objective"]["high"]
    from typer.testing import CliRunner

    from calib.cli import app

    text = CliRunner().invoke(app, ["predict", "--study", NAME, "--scan", "eps_CBD=1:100:3", *r["common"]]).stdout
    assert text.count("  slurry_density  ") == 3 and "model fitted to 7 complete trials" in text
    assert "slurry_density: the last 3 trials predicted from the ones before each" in text  # its held-out record
    assert "warning: fitted on only 7 trials for 5 free keys (fewer than 10)" in text


def test_report_renders_every_section_and_is_logged(refined):
    r = refined
    out = r["tmp"] / "report"
    text = run_calib("report", "--study", NAME, "--out", str(out), *r["common"], cwd=r["tmp"]).stdout
    _check_report(out / "report.html", text, pareto="single objective")
    client = MlflowClient(tracking_uri=f"sqlite:///{r['runs'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    (parent,) = [x for x in client.search_runs([exp.experiment_id]) if x.data.tags.get("calib.role") == "study"]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/convergence.png", "report/profiles.png", "report/posterior.png"} <= logged
    # the posterior (7 trials, 5 keys): in the report, on the parent run, in --json
    assert re.search(r"^  posterior\s+\d of 5 directions not separated", text, re.M), text
    assert "posterior.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    post = r["final"]["posterior"]
    assert set(post["intervals"]) == {"eps_AM", "eps_SE", "eps_CBD", "sigma_AM", "sigma_SE"}
    for key, i in post["intervals"].items():
        assert i["low"] <= i["median"] <= i["high"], key
        assert parent.data.metrics[f"posterior.{key}.median"] == pytest.approx(i["median"], rel=1e-5)
    assert post["targets"]["slurry_density"]["source"] == "assumed" and post["n_trials"] == 7
    # the logged files are the rendered ones
    dl = r["tmp"] / "dl_report"
    logged_html = download(client, parent.info.run_id, "report/report.html", dl).read_text()
    assert logged_html == (out / "report.html").read_text()
    for name in ("convergence.png", "profiles.png"):
        png = download(client, parent.info.run_id, f"report/{name}", dl)
        assert_png(png)
        assert png.read_bytes() == (out / name).read_bytes()
    assert parent.info.status == "FINISHED"  # logging the report reopened and closed it
    html = (out / "report.html").read_text()
    assert "manual: 3" in html and "model: 2" in html  # trials by how they were proposed


def _check_report(page: Path, stdout: str, pareto: str) -> None:
    """Every section is in the page with content, every figure a real embedded PNG; the
    CLI lists each section's status."""
    from calib.review.html_report import SECTIONS

    html = page.read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in html, key
        assert re.search(rf"^  {key}\s+\S", stdout, re.M), (key, stdout)
    assert re.search(rf"^  pareto\s+{pareto}", stdout, re.M), stdout
    # importances need 10 complete trials (calib.review.report_sections.MIN_IMPORTANCE_TRIALS); this study has fewer
    assert re.search(r"^  importances\s+not computed$", stdout, re.M), stdout
    assert "importances need at least 10 complete trials at the target fidelity" in html
    rest = "\n".join(line for line in stdout.splitlines() if not line.startswith("  importances"))
    assert "not computed" not in rest and "empty" not in rest, stdout
    assert '<section id="caveats"' in html and html.index('id="caveats"') < html.index('id="summary"')
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 5
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html  # opens offline: nothing fetched
    pngs = list(page.parent.glob("*.png"))
    assert len(pngs) >= 2, pngs
    for png in pngs:
        assert_png(png)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("args, message", [
    (["refine", "--study", "nope", "--set", "eps_CBD=1"], "--study: study: no study named 'nope'"),
    (["refine", "--study", NAME, "--set", "eps_FOO=1"], "--set: eps_FOO: 'eps_FOO' is not a Table S1 key"),
    (["refine", "--study", NAME, "--set", "kn=1"], "--set: kn: kn is fixed at 0.1"),
    (["refine", "--study", NAME, "--set", "eps_CBD=5000"], "--set: eps_CBD: eps_CBD = 5000 is outside the study's "
                                                            "bounds [0.1, 1000] (--allow-outside-bounds"),
    (["refine", "--study", NAME, "--scan", "eps_CBD=1:2"], "--scan: eps_CBD=1:2: expected KEY=LOW:HIGH:N"),
    (["refine", "--study", NAME, "--scan", "eps_CBD=2:1:3"], "--scan: eps_CBD=2:1:3: LOW must be below HIGH"),
    (["refine", "--study", NAME], "nothing to run"),
    (["predict", "--study", NAME, "--set", "eps_CBD=-1"], "--set: eps_CBD: eps_CBD = -1 is not physical"),
    (["report", "--study", "nope"], "--study: study: no study named 'nope'"),
    (["export", "--study", NAME, "--trial", "99"], "--trial: trial: study 'e2e_refine' has no trial 99"),
    (["export", "--study", NAME, "--pareto"], "--pareto: pareto: study 'e2e_refine' has one "
                                                                     "objective"),
    (["export", "--study", NAME, "--top", "2", "--pareto"], "--top and --pareto pick the sets in different ways"),
])
def test_bad_input_one_line_exit_2_nothing_written(refined, args, message):
    from typer.testing import CliRunner

    from calib.cli import app

    r = refined
    before = _snapshot(r["tmp"])
    proc = CliRunner().invoke(app, [*args, *r["common"]])  # in this process: the real CLI, without its imports' time
    assert proc.exit_code == 2, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calib: error: ") and message in lines[0], proc.stderr
    assert _snapshot(r["tmp"]) == before


def test_report_out_that_is_a_file_is_refused(refined):
    r = refined
    f = r["tmp"] / "a_file"
    f.write_text("x")
    proc = run_calib("report", "--study", NAME, "--out", str(f), *r["common"], cwd=r["tmp"], check=False)
    assert proc.returncode == 2 and "--out: out:" in proc.stderr and "is a file" in proc.stderr


def test_predict_needs_two_complete_trials(tmp_path):
    study = write_study(tmp_path, "one_trial", trials=1, parallel=1, fidelities=SHORT)
    common = ["--runs-dir", str(tmp_path / "runs")]
    run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", *common, cwd=tmp_path)
    from typer.testing import CliRunner

    from calib.cli import app

    proc = CliRunner().invoke(app, ["predict", "--study", "one_trial", *common])  # the real CLI, in this process
    assert proc.exit_code == 2
    assert proc.stderr.strip() == ("calib: error: --study: study: study 'one_trial' has 1 complete trial at its target "
                                   "fidelity; the model needs at least 2")
    report = CliRunner().invoke(app, ["report", "--study", "one_trial", "--tracking-uri", "none", *common]).stdout
    assert re.search(r"^  profiles\s+not computed", report, re.M)  # the page still renders, saying why


def test_export_a_manual_trial_and_the_top_sets(refined):
    """``--trial N`` exports a manual trial (its provenance says so); ``--top 3`` the three
    lowest objectives of the ledger, best first, with their observables."""
    r = refined
    doc = json.loads(run_calib("export", "--study", NAME, "--trial", "3", "--format", "json", *r["common"],
                               cwd=r["tmp"]).stdout)
    (col,) = doc["columns"]
    t3 = _trials(r)[3]
    assert col["trial"] == 3 and col["params"] == t3.user_attrs["table_s1"] and col["params"]["eps_CBD"] == 2000.0
    assert f"manual (--file {r['sets']})" in col["provenance"]["trial"]
    doc = json.loads(run_calib("export", "--study", NAME, "--top", "3", "--format", "json", *r["common"],
                               cwd=r["tmp"]).stdout)
    done = sorted((t for t in _trials(r) if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert [c["trial"] for c in doc["columns"]] == [t.number for t in done[:3]]
    assert [c["title"] for c in doc["columns"]] == [f"trial {t.number}" for t in done[:3]]
    for c, t in zip(doc["columns"], done):
        assert c["objective"] == t.value and c["params"] == t.user_attrs["table_s1"]
        (dens,) = c["observables"]
        assert dens["name"] == "slurry_density" and dens["simulated"] == t.user_attrs["errors"]["slurry_density"]["simulated"]
    assert f"rank 1 of {len(done)} by objective" in doc["columns"][0]["provenance"]["trial"]
