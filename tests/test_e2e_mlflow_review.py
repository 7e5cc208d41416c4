"""What a reviewer finds in MLflow after a smoke study (real LAMMPS, Optuna and MLflow on
SQLite) has run and ``calib optimize`` has been run a second time on the finished study:
every metric series holds one value per step and the reopening logs nothing again; the
runs' durations are the study's and the trials' own (from the ledger); every run has a
description whose links open MLflow's model-training view; metric values are rounded
for display."""

from __future__ import annotations

import json
import re
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import parse_json_stdout, run_calib, write_study
from mlflow_checks import metric_histories

pytestmark = pytest.mark.lammps
NAME = "review_smoke"
OBJ = "objective_weighted_sum_sq_error"
ML_VIEW = "?workflowType=machine_learning"


def _ms(dt) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture(scope="module")
def reopened(tmp_path_factory) -> dict:
    """4 trials, 2 at a time (trials finish out of order), then the same command again on the
    finished study; what MLflow held after the first run."""
    tmp = tmp_path_factory.mktemp("review")
    study = write_study(tmp, NAME, trials=4, parallel=2, optimizer={"n_initial": 2})
    args = ("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
            "--runs-dir", str(tmp / "runs"), "--json")
    first = parse_json_stdout(run_calib(*args, cwd=tmp))
    uri = f"sqlite:///{tmp / 'runs' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(NAME).experiment_id
    before = metric_histories(uri, NAME)
    parent_before = client.get_run(first["mlflow"]["parent_run_id"]).info
    second = parse_json_stdout(run_calib(*args, cwd=tmp))
    runs = client.search_runs([exp], max_results=1000)
    return {"client": client, "experiment": exp, "first": first, "second": second, "before": before,
            "after": metric_histories(uri, NAME), "parent_before": parent_before,
            "parent": next(r for r in runs if r.data.tags.get("calib.role") == "study"),
            "trials": {int(r.data.tags["trial_number"]): r for r in runs if r.data.tags.get("calib.role") == "trial"},
            "ledger": optuna.load_study(study_name=NAME, storage=first["storage"]).get_trials()}


def test_every_series_has_one_value_per_step_after_reopening(reopened):
    """No metric of any run (the study's and every trial's) holds two values at one step,
    and the second ``calib optimize`` of the finished study logged no point again."""
    after = reopened["after"]
    assert len(reopened["trials"]) == 4 and reopened["second"]["trials_complete"] == reopened["first"][
        "trials_complete"]
    doubled = {k: v for k, v in after.items() if len({s for s, _ in v}) != len(v)}
    assert not doubled, f"metrics with two values at one step (run, key) -> [(step, value)]: {doubled}"
    assert after == reopened["before"], "reopening the finished study logged metrics again"
    parent = reopened["first"]["study"]
    series = after[(parent, f"best_{OBJ}")]
    assert sorted(s for s, _ in series) == [0, 1, 2, 3]  # one point per trial number
    assert len(after[(parent, f"trial_{OBJ}")]) == reopened["first"]["trials_complete"]
    assert after[(parent, "trials_complete")] == [(4, float(reopened["first"]["trials_complete"]))]


def test_durations_are_the_study_s_and_the_trials_own(reopened):
    """A trial run spans its ledger trial (start to completion); the study's run spans its
    first trial's start to its last trial's end, and the reopening does not stretch it."""
    ledger = {t.number: t for t in reopened["ledger"]}
    for number, run in reopened["trials"].items():
        t = ledger[number]
        assert (run.info.start_time, run.info.end_time) == (_ms(t.datetime_start), _ms(t.datetime_complete)), number
    parent = reopened["parent"].info
    assert parent.start_time <= min(_ms(t.datetime_start) for t in ledger.values())
    assert parent.end_time == max(_ms(t.datetime_complete) for t in ledger.values())
    assert parent.end_time == reopened["parent_before"].end_time
    assert parent.start_time == reopened["parent_before"].start_time
    # the time during which a trial ran, as a metric: at most the run's span, at least the longest trial
    active = reopened["parent"].data.metrics["wall_time_active_s"]
    longest = max((t.datetime_complete - t.datetime_start).total_seconds() for t in ledger.values())
    assert longest - 0.01 <= active <= (parent.end_time - parent.start_time) / 1000 + 0.01


def test_descriptions_say_what_each_run_is_and_link_the_model_training_view(reopened):
    exp, s = reopened["experiment"], reopened["first"]
    parent = reopened["parent"]
    pid = parent.info.run_id
    note = parent.data.tags["mlflow.note.content"]
    links = re.findall(r"\]\(([^)]+)\)", note)
    best_rid = reopened["trials"][s["best_trial"]].info.run_id
    assert f"#/experiments/{exp}/runs/{best_rid}{ML_VIEW}" in links
    assert all("workflowType=machine_learning" in link for link in links), links
    assert parent.data.tags["calib.best_run"] == f"#/experiments/{exp}/runs/{best_rid}{ML_VIEW}"
    assert note.index(OBJ) < note.index("| observable")  # the objective first
    chart = next(link for link in links if link.startswith("#/metric?"))
    assert f"best_{OBJ}" in chart and pid in chart
    ledger = {t.number: t for t in reopened["ledger"]}
    for number, run in reopened["trials"].items():
        t, note = ledger[number], run.data.tags.get("mlflow.note.content", "")
        assert note.startswith(f"**Trial {number}**"), note
        assert f"#/experiments/{exp}/runs/{pid}{ML_VIEW}" in re.findall(r"\]\(([^)]+)\)", note)
        state = "COMPLETE" if t.state == TrialState.COMPLETE else "FAILED"
        assert state in note
        if t.state == TrialState.COMPLETE:
            assert f"`{OBJ}` = {t.value:.6g}" in note
        for key in t.params:  # the free keys, which differ from trial to trial; not the fixed ones
            assert f"| {key} | {t.params[key]:.6g} |" in note, key
        assert "| rc_AM |" not in note


def test_metric_values_are_rounded_to_six_significant_digits(reopened):
    values = [v for series in reopened["after"].values() for _, v in series]
    assert values and all(v == float(f"{v:.6g}") for v in values)
    # what the ledger keeps in full, MLflow shows to 6 digits
    best = reopened["trials"][reopened["first"]["best_trial"]]
    assert best.data.metrics[OBJ] == float(f"{reopened['first']['best_value']:.6g}")


def test_the_printed_links_open_the_model_training_view(reopened):
    view = reopened["second"]["mlflow"]
    assert view["url"].endswith(f"#/experiments/{reopened['experiment']}/runs{ML_VIEW}")
    assert view["trials_url"].endswith(f"#/experiments/{reopened['experiment']}/runs?viewStateShareKey=calib-trials"
                                       "&workflowType=machine_learning")
    exp = reopened["client"].get_experiment(reopened["experiment"])
    assert "viewStateShareKey=calib-trials&workflowType=machine_learning" in exp.tags["mlflow.note.content"]
    view_state = json.loads(json.loads(exp.tags["mlflow.sharedViewState.calib-trials"])["state"])
    assert view_state["orderByKey"] == f"metrics.`{OBJ}`"
    assert view_state["selectedColumns"][0] == f"metrics.`{OBJ}`"
