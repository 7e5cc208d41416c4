"""What calib tells MLflow, as pure functions: values rounded for display, links into the
MLflow 3 UI's model-training view, the runs' descriptions, the trials' saved view, the
best-so-far series and the active time read from the ledger (no MLflow, no LAMMPS)."""

from __future__ import annotations

import datetime
import json
import urllib.parse
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from calib.cli.optimize import mlflow_view
from calib.execution.session_tracking import active_seconds, best_series, ledger_ms
from calib.review.tracking_records import (BestRecord, TrialRecord, best_note, chart_link, run_link, runs_link, shown,
                                           trial_note, trials_view)

OBJ = "objective_weighted_sum_sq_error"


@pytest.mark.parametrize("value, expected", [
    (0.15998418113714982, 0.159984), (2.7238792425601597, 2.72388), (504059.9214156293, 504060.0),
    (1.2345649e-7, 1.23456e-7), (-0.0427894642241024, -0.0427895),
    (4000200.0, 4000200.0), (123456789.0, 123456789.0),  # counts stay exact
    (0.0, 0.0), (1.9, 1.9)])
def test_shown_rounds_to_six_significant_digits_and_keeps_counts(value, expected):
    assert shown(value) == expected
    assert repr(shown(value)) == repr(expected)  # what MLflow's UI prints: the shortest repr


def test_links_open_the_model_training_view():
    assert run_link("3", "abc") == "#/experiments/3/runs/abc?workflowType=machine_learning"
    assert runs_link("3") == "#/experiments/3/runs?workflowType=machine_learning"
    link = runs_link("3", viewStateShareKey="calib-trials")
    assert link == "#/experiments/3/runs?viewStateShareKey=calib-trials&workflowType=machine_learning"
    link = runs_link("3", orderByKey="metrics.`o`", orderByAsc="true")
    assert link == "#/experiments/3/runs?orderByKey=metrics.%60o%60&orderByAsc=true&workflowType=machine_learning"
    chart = chart_link("3", "abc", (f"best_{OBJ}", f"trial_{OBJ}"))
    assert chart.startswith("#/metric?") and " " not in chart and "(" not in chart and ")" not in chart
    q = dict(urllib.parse.parse_qsl(chart.split("?", 1)[1]))
    assert json.loads(q["runs"]) == ["abc"] and json.loads(q["experiments"]) == ["3"]
    assert json.loads(q["metric"]) == f"best_{OBJ}"
    assert json.loads(q["plot_metric_keys"]) == [f"best_{OBJ}", f"trial_{OBJ}"]
    assert q["x_axis"] == "step" and q["workflowType"] == "machine_learning"


def test_the_printed_links():
    view = mlflow_view("sqlite:////tmp/runs/mlflow.db", "2", "pid")
    assert view["url"] == "http://127.0.0.1:5000/#/experiments/2/runs?workflowType=machine_learning"
    assert view["trials_url"] == ("http://127.0.0.1:5000/#/experiments/2/runs?viewStateShareKey=calib-trials"
                                  "&workflowType=machine_learning")
    served = mlflow_view("http://mlflow:5000/", "2", "pid")
    assert served["url"] == "http://mlflow:5000/#/experiments/2/runs?workflowType=machine_learning"
    assert served["serve"] is None


def _record(state: str = "COMPLETE", **tags) -> TrialRecord:
    return TrialRecord(7, state, {"eps_AM": 108.70512345, "sigma_AM": 0.98033, "rc_AM": 1.5},
                       {OBJ: 0.042789464224, "density_g_cm3": 2.29} if state == "COMPLETE" else {},
                       {"calib.proposal": "model", "calib.flags": "at bound (eps_AM=low)", **tags},
                       free_keys=("eps_AM", "sigma_AM"))


def test_a_complete_trial_s_description():
    note = trial_note(_record(), OBJ, run_link("1", "parent"))
    head = note.splitlines()[0]
    assert head.startswith("**Trial 7** · COMPLETE") and f"`{OBJ}` = 0.0427895" in head
    assert "[open the study's run](#/experiments/1/runs/parent?workflowType=machine_learning)" in head
    assert "proposed by: model; flags: at bound (eps_AM=low)" in note
    assert "| eps_AM | 108.705 |" in note and "| sigma_AM | 0.98033 |" in note
    assert "rc_AM" not in note  # fixed: the same in every trial
    assert "failed" not in note


def test_a_failed_trial_s_description_says_why():
    reason = "ERROR: Lost atoms: original 200 current 198 (src/thermo.cpp:494)\n" + "x" * 3000
    note = trial_note(_record("FAIL", fail_reason=reason), OBJ, run_link("1", "parent"))
    assert note.startswith("**Trial 7** · FAILED · [open the study's run](")
    assert "ERROR: Lost atoms: original 200 current 198" in note and "`fail_reason.txt`" in note
    assert note.count("```") == 2 and "| eps_AM | 108.705 |" in note
    assert note.split("```")[1].strip() == reason[:1000] + " ..."  # cut: in full in the file


def test_a_record_without_free_keys_lists_every_parameter():
    r = TrialRecord(1, "FAIL", {"eps_AM": 2.0, "kn": 0.1}, {}, {"fail_reason": "timeout"})
    note = trial_note(r, OBJ, None)
    assert "| eps_AM | 2 |" in note and "| kn | 0.1 |" in note and "open the study's run" not in note


def test_the_study_s_description_puts_the_objective_first():
    best = BestRecord(3, 0.0159984181, {"eps_AM": 108.7}, {"slurry_density": (2.14, 1.9)})
    note = best_note(best, OBJ, run_link("1", "best"), chart_link("1", "pid", (f"best_{OBJ}",)), "Spans the study.")
    first = note.splitlines()[0]
    assert first.startswith("**Best trial: 3** "
                            "([open its run](#/experiments/1/runs/best?workflowType=machine_learning))")
    assert f"`{OBJ}` = **0.0159984**" in first
    assert "[Chart of the objective by trial number](#/metric?" in note
    assert note.index(OBJ) < note.index("| observable") < note.index("| Table S1 key")
    assert note.endswith("Spans the study.")


def test_a_record_keeps_its_times_and_free_keys_through_json():
    r = TrialRecord(2, "COMPLETE", {"a": 1.0}, {OBJ: 0.5}, {}, (Path("/x/log.lammps"),), Path("/x"), 1000, 2500,
                    ("a",))
    assert TrialRecord.from_json(r.to_json()) == r
    old = json.loads(r.to_json())  # written before end_ms and free_keys existed
    del old["end_ms"], old["free_keys"]
    assert TrialRecord.from_json(json.dumps(old)) == TrialRecord(2, "COMPLETE", {"a": 1.0}, {OBJ: 0.5}, {},
                                                                  (Path("/x/log.lammps"),), Path("/x"), 1000)


def test_the_trials_saved_view():
    key, value = trials_view(OBJ, ("eps_AM", "sigma_AM"), 1_700_000_000_000)
    assert key == "mlflow.sharedViewState.calib-trials"
    envelope = json.loads(value)
    assert envelope["name"] == "calib: trials by objective" and envelope["createdAt"] == 1_700_000_000_000
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == f"metrics.`{OBJ}`" and state["orderByAsc"] is True
    assert state["searchFilter"] == "tags.`calib.role` = 'trial'"
    assert state["selectedColumns"] == [f"metrics.`{OBJ}`", "tags.`calib.flags`", "tags.`calib.proposal`",
                                        "params.`eps_AM`", "params.`sigma_AM`"]


T0 = datetime.datetime(2026, 12, 7, 10, 0, 0)


def _trial(number: int, value: float | None, start_s: float, end_s: float | None, density: float | None = None,
           state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                  params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                  user_attrs={"errors": {"slurry_density": {"simulated": density}}}
                                  if density is not None else {})
    t.number = number
    t.datetime_start = T0 + datetime.timedelta(seconds=start_s)
    t.datetime_complete = None if end_s is None else T0 + datetime.timedelta(seconds=end_s)
    return t


def test_the_best_so_far_series_is_read_from_the_ledger_one_point_per_trial_number():
    trials = [_trial(0, 0.5, 0, 10, 2.5), _trial(1, 0.2, 0, 30, 2.1), _trial(2, 0.3, 12, 20, 2.3),
              _trial(3, None, 21, 25, state=TrialState.FAIL), _trial(4, 0.1, 31, 40, 2.0),
              _trial(5, None, 41, None, state=TrialState.RUNNING), _trial(6, 0.01, 41, 45, 1.9)]
    points = best_series(trials, judged={0, 1, 2, 4, 6}, targets={"slurry_density": 1.9})
    assert [p.step for p in points] == [0, 1, 2, 3, 4]  # stops before the running trial 5
    assert [p.objective for p in points] == [0.5, 0.2, 0.2, 0.2, 0.1]
    # timed when trials 0..n had all finished: trial 1 finished last of 0..2
    assert [p.time_ms for p in points] == [ledger_ms(T0 + datetime.timedelta(seconds=s)) for s in (10, 30, 30, 30, 40)]
    assert points[2].observables == {"slurry_density": (2.1, 1.9)}  # the best's own value, next to the target
    # in any order, and whoever reads it: the same points
    assert best_series(list(reversed(trials)), {0, 1, 2, 4, 6}, {"slurry_density": 1.9}) == points
    # a trial the study is not judged on (another fidelity, a confirmation) is never the best
    assert [p.objective for p in best_series(trials, {0, 2}, {})] == [0.5, 0.5, 0.3, 0.3, 0.3]
    assert best_series(trials, set(), {}) == []


def test_the_active_time_is_the_union_of_the_trials_spans():
    assert active_seconds([]) == 0.0
    assert active_seconds([(0, 10), (5, 12), (20, 30)]) == 22.0  # two at a time, then a pause
    assert active_seconds([(20, 30), (0, 10), (2, 3)]) == 20.0
    assert active_seconds([(0, 10), (10, 15)]) == 15.0
