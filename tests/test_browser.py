"""What a user sees of a study in the MLflow UI: a real MLflow server on loopback, looked at
with a real headless Chromium (``tests/browser.py``). The runs are written here with
``MlflowClient`` the way ``calib`` lays them out (no LAMMPS run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from browser import (NotPreviewed, open_artifact, open_experiment, open_metric_chart, open_run, screenshot,
                     shown_table, shown_tags)

pytestmark = pytest.mark.browser

BEST_OBJECTIVE = [4.0, 2.5, 2.5, 1.2, 0.9, 0.4]  # best-so-far by trial number: never rises
LOG = "LAMMPS (22 Jul 2025)\n  using 1 OpenMP thread(s) per MPI task\nLoop time of 1.23 on 1 procs for 2000 steps\n"


@pytest.fixture(scope="module")
def study(mlflow_ui, tmp_path_factory) -> dict:
    """A study's parent run (``calib.role=study``, ``calib.best_trial=3``, a
    ``best_objective`` series) and one trial run under it carrying ``log.lammps.txt`` (and
    ``log.lammps``, which the UI does not preview)."""
    client = MlflowClient(tracking_uri=mlflow_ui.url)
    exp = client.create_experiment("ui_study")
    parent = client.create_run(exp, run_name="ui_study", tags={"calib.role": "study", "calib.best_trial": "3"})
    pid = parent.info.run_id
    for step, value in enumerate(BEST_OBJECTIVE):
        client.log_metric(pid, "best_objective", value, step=step)
    child = client.create_run(exp, run_name="trial_3", tags={"mlflow.parentRunId": pid, "calib.role": "trial"})
    cid = child.info.run_id
    files = tmp_path_factory.mktemp("artifacts")
    for name in ("log.lammps.txt", "log.lammps"):
        (files / name).write_text(LOG)
        client.log_artifact(cid, str(files / name))
    client.set_terminated(cid)
    client.set_terminated(pid)
    return {"experiment": exp, "parent": pid, "child": cid}


def test_a_study_s_tags_chart_and_lammps_log_show_in_the_ui(tmp_path: Path, mlflow_ui, browser, study: dict):
    url, exp, shots = mlflow_ui.url, study["experiment"], tmp_path / "shots"

    assert open_experiment(browser, url, exp) == ["ui_study"]  # the trial is folded under its study
    assert open_experiment(browser, url, exp, expand=True) == ["ui_study", "trial_3"]
    screenshot(browser, shots, "1_runs")

    text = open_run(browser, url, exp, study["parent"], expect=("trial_3",))  # "Child runs" in "About this run"
    assert "calib.best_trial" in text and "best_objective" in text
    tags = shown_tags(browser)
    assert tags["calib.best_trial"] == "3" and tags["calib.role"] == "study"
    assert "mlflow.parentRunId" not in tags  # the UI hides mlflow.* tags
    assert shown_table(browser, "Metrics") == {"best_objective": "0.4"}  # the last value
    screenshot(browser, shots, "2_study_run")

    chart = open_metric_chart(browser, url, exp, study["parent"], "best_objective")
    xs, ys = zip(*chart["xy"])
    assert len(chart["xy"]) == len(BEST_OBJECTIVE) == chart["points"]  # one vertex and one marker per step
    assert list(xs) == sorted(xs) and len(set(xs)) == len(xs)  # steps left to right
    assert all(b >= a for a, b in zip(ys, ys[1:])) and ys[-1] > ys[0]  # never rises (screen y points down)
    assert chart["x_ticks"][:2] == ["0", "1"]
    screenshot(browser, shots, "3_best_objective_chart")

    log = open_artifact(browser, url, exp, study["child"], "log.lammps.txt")
    assert "LAMMPS (22 Jul 2025)" in log and "Loop time of 1.23 on 1 procs" in log
    screenshot(browser, shots, "4_log_lammps_txt")
    with pytest.raises(NotPreviewed):
        open_artifact(browser, url, exp, study["child"], "log.lammps")
