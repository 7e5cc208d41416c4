"""End to end: the caveats of a calibrated set reach every output that shows it (the
terminal summary, ``--json``, ``calib report``, the MLflow parent run's description and the
exported include file), in one wording; a key at its bound is named; and a study without a
completed trial exits non-zero with the reason and what to do (real LAMMPS, Optuna, MLflow)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import SHORT, parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps
NAME = "e2e_caveats"


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> dict:
    """A 2-trial study whose trials both come from the initial design (n_initial 3)."""
    tmp = tmp_path_factory.mktemp("caveats")
    study = write_study(tmp, NAME, trials=2, parallel=1, optimizer={"n_initial": 3}, fidelities=SHORT)
    runs = tmp / "runs"
    first = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                      "--runs-dir", str(runs), cwd=tmp)
    again = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                      "--runs-dir", str(runs), "--json", cwd=tmp)
    return {"tmp": tmp, "runs": runs, "study": study, "terminal": first, "summary": parse_json_stdout(again)}


def test_every_output_carries_the_same_caveats(done):
    s, runs, tmp = done["summary"], done["runs"], done["tmp"]
    lines = s["caveats"]["lines"]
    assert lines[0] == "holds only at: fidelity smoke (protocol compressed k = 1000); another protocol or fidelity " \
                       "gives other values (docs/model.md#slurry-protocol)"
    assert any(x.startswith("confirmed at the full protocol: no: calibrated at k = 1000") for x in lines)
    assert any(x.startswith("at a bound: ") for x in lines) and any(x.startswith("convergence: ") for x in lines)
    assert "proposals: all 2 complete trials came from the initial design (optimizer.n_initial = 3): the model " \
           "never proposed a set; run more trials" in lines
    assert s["caveats"]["converged"] is not None and s["caveats"]["model_proposals"] == 0
    # the terminal: under "caveats:", and the start warns that the model will not be reached
    out = done["terminal"].stdout
    assert "\ncaveats:\n" + "".join(f"  {x}\n" for x in lines) in out
    assert "2 trials <= optimizer.n_initial (3): every trial comes from the initial design" in done["terminal"].stderr
    # calib report: a box above the sections
    run_calib("report", "--study", NAME, "--runs-dir", str(runs), cwd=tmp)
    page = (runs / NAME / "report" / "report.html").read_text()
    box = re.search(r'<section id="caveats".*?</section>', page, re.S)
    assert box and page.index('id="caveats"') < page.index('id="summary"')
    assert [html.unescape(x) for x in re.findall(r"<li>(.*?)</li>", box.group(0))] == lines
    # the MLflow parent run's description
    client = MlflowClient(tracking_uri=s["mlflow"]["tracking_uri"])
    note = client.get_run(s["mlflow"]["parent_run_id"]).data.tags["mlflow.note.content"]
    assert "**Caveats**\n\n" + "\n".join(f"- {x}" for x in lines) in note
    # the exported include file's header
    inc = run_calib("export", "--study", NAME, "--runs-dir", str(runs), "--format", "lammps", cwd=tmp).stdout
    assert [x.removeprefix("# caveat: ") for x in inc.splitlines() if x.startswith("# caveat: ")] == lines
    doc = json.loads(run_calib("export", "--study", NAME, "--runs-dir", str(runs), "--format", "json", cwd=tmp).stdout)
    assert doc["columns"][0]["provenance"]["caveat"] == lines  # every one, in order


def test_a_key_at_its_bound_is_named(done):
    """A manual set at eps_CBD's lower bound (0.1 in the default study): its export names it."""
    tmp, runs = done["tmp"], done["runs"]
    r = parse_json_stdout(run_calib("refine", "--study", NAME, "--runs-dir", str(runs), "--set", "eps_CBD=0.1",
                                    "--json", cwd=tmp))
    (manual,) = r["manual_trials"]
    assert manual["state"] == "COMPLETE", manual
    number = manual["trial"]
    inc = run_calib("export", "--study", NAME, "--runs-dir", str(runs), "--trial", str(number), "--format", "lammps",
                    cwd=tmp).stdout
    assert "# caveat: at a bound: eps_CBD = 0.1 (its lower bound 0.1): the optimum may lie outside the range" in inc


def test_a_study_without_a_completed_trial_exits_1_with_the_reason(tmp_path: Path):
    """Every trial times out: exit 1, the reason names trial_timeout_s, the hint says what to
    do, and the MLflow link is still printed."""
    study = write_study(tmp_path, "all_fail", trials=2, parallel=1, trial_timeout_s=0.5, fidelities=SHORT)
    proc = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = proc.stdout
    assert "no completed trial: the study has no answer" in out
    assert re.search(r"2 trials \(0, 1\) failed: .*timeout.*\(the limit is the study's trial_timeout_s; raise it for "
                     r"this fidelity\)", out), out
    # failed trials count against the budget: the hint asks for a larger one
    assert "hint: the runs hit their wall-time limit: raise trial_timeout_s in the study file, then rerun the same " \
           "command with --trials 4 (failed trials count against the budget: 2 have finished)" in out
    assert "review in MLflow: http://127.0.0.1:5000/#/experiments/" in out
    assert proc.stderr.strip().splitlines()[-1].startswith("calib: error: study 'all_fail' has no completed trial; "
                                                           "the runs hit their wall-time limit")
    # the MLflow study run's description says why there is no answer
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("all_fail").experiment_id
    (parent,) = client.search_runs([exp], filter_string="tags.`calib.role` = 'study'")
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**No answer**: no completed trial at the target fidelity smoke"), note
    assert "- 2 failed (trials 0, 1): `timeout: wall time exceeded 0.5 s" in note, note
    # following the hint works: the raised limit is what the study runs with from now on, also by name
    study.write_text(study.read_text().replace("trial_timeout_s: 0.5", "trial_timeout_s: 300"))
    again = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                      "--runs-dir", str(tmp_path / "runs"), "--trials", "3", "--json", cwd=tmp_path)
    assert parse_json_stdout(again)["best_trial"] == 2
    more = run_calib("optimize", "--stage", "slurry", "--study", "all_fail", "--runs-dir", str(tmp_path / "runs"),
                     "--trials", "4", "--json", cwd=tmp_path)
    assert parse_json_stdout(more)["trials_complete"] == 2  # by name: 300 s too, not the first run's 0.5 s
