"""What a user sees of a smoke study in the MLflow UI and in its report: ``calib optimize``
(real LAMMPS) logging to a real MLflow server on loopback, ``calib report``, and a real
headless Chromium looking at them (``tests/browser.py``); screenshots under the test's
``tmp_path``/shots."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from selenium.webdriver.common.by import By

from browser import (NotPreviewed, open_artifact, open_metric_chart, open_run, page_text, screenshot, shown_table,
                     shown_tags, wait_for, wait_stable)
from conftest import parse_json_stdout, run_calib, write_study

pytestmark = [pytest.mark.browser, pytest.mark.lammps]
NAME = "ui_smoke"
OBJ = "objective_weighted_sum_sq_error"


@pytest.fixture(scope="module")
def study(mlflow_ui, tmp_path_factory) -> dict:
    """A 3-trial smoke study (2 Sobol, 1 model) tracked on the server, and its report."""
    tmp = tmp_path_factory.mktemp("ui")
    runs = tmp / "runs"
    # smoke shortened to 6,000 density steps (as in test_faults): the UI is under test here
    path = write_study(tmp, NAME, trials=3, parallel=1, optimizer={"n_initial": 2},
                       fidelities={"smoke": {"equilibration_steps": 2000, "averaging_steps": 4000,
                                             "density_window_steps": 4000, "density_max_steps": 4000}})
    s = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(path), "--fidelity", "smoke",
                                    "--runs-dir", str(runs), "--tracking-uri", mlflow_ui.url, "--json", cwd=tmp))
    run_calib("report", "--study", NAME, "--runs-dir", str(runs), "--tracking-uri", mlflow_ui.url, cwd=tmp)
    client = MlflowClient(tracking_uri=mlflow_ui.url)
    exp = client.get_experiment_by_name(NAME).experiment_id
    runs_by = {r.data.tags.get("trial_number", "study"): r.info.run_id for r in client.search_runs([exp])}
    best = optuna.load_study(study_name=NAME, storage=s["storage"]).trials[s["best_trial"]]
    return {"summary": s, "experiment": exp, "parent": runs_by["study"], "best": runs_by[str(s["best_trial"])],
            "best_equilibrated": "yes" if best.user_attrs["equilibrated"] else "NO",
            "report": runs / NAME / "report" / "report.html"}


def test_the_printed_link_opens_the_runs_table(mlflow_ui, browser, study, tmp_path: Path):
    """A first visit (nothing remembered in the browser) through the link ``calib optimize``
    prints lands on the runs table, not on MLflow's GenAI overview."""
    link = study["summary"]["mlflow"]["url"]
    assert link == f"{mlflow_ui.url}/#/experiments/{study['experiment']}/runs?workflowType=machine_learning"
    browser.get(mlflow_ui.url + "/health")
    browser.execute_script("localStorage.clear()")
    browser.get("about:blank")
    browser.get(link)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '.ag-root-wrapper a[href*="/runs/"]'),
             "the runs table")
    assert NAME in wait_stable(browser) and "/overview" not in browser.current_url
    screenshot(browser, tmp_path / "shots", "1_first_visit_runs_table")


def test_the_parent_run_shows_the_best_trial_and_its_series(mlflow_ui, browser, study, tmp_path: Path):
    s = study["summary"]
    text = open_run(browser, mlflow_ui.url, study["experiment"], study["parent"], expect=(f"Best trial: {s['best_trial']}",))
    tags = shown_tags(browser)
    assert tags["calib.best_trial"] == str(s["best_trial"]) and tags["calib.best_run_id"] == study["best"]
    metrics = shown_table(browser, "Metrics")
    assert float(metrics["target.slurry_density"]) == pytest.approx(1.9)
    assert float(metrics["best.slurry_density"]) == pytest.approx(
        s["best_observables"]["slurry_density"]["simulated"], rel=1e-3)
    assert f"best_{OBJ}" in metrics and "open its run" in text
    screenshot(browser, tmp_path / "shots", "2_parent_run")

    chart = open_metric_chart(browser, mlflow_ui.url, study["experiment"], study["parent"], f"best_{OBJ}")
    assert chart["points"] == 3 and chart["x"] == [0, 1, 2]  # one point per trial number
    assert all(b <= a for a, b in zip(chart["y"], chart["y"][1:]))
    assert chart["y"][-1] == pytest.approx(s["best_value"], rel=1e-5)  # MLflow shows 6 significant digits
    screenshot(browser, tmp_path / "shots", "3_best_so_far_chart")


def test_a_trial_s_lammps_log_and_deck_preview(mlflow_ui, browser, study, tmp_path: Path):
    exp, rid = study["experiment"], study["best"]
    log = open_artifact(browser, mlflow_ui.url, exp, rid, "log.lammps.txt")
    assert "LAMMPS (22 Jul 2025" in log and "Loop time of" in log
    screenshot(browser, tmp_path / "shots", "4_log_preview")
    deck = open_artifact(browser, mlflow_ui.url, exp, rid, "in.slurry.txt")
    assert "units" in deck and "micro" in deck
    with pytest.raises(NotPreviewed):  # why the .txt copies exist
        open_artifact(browser, mlflow_ui.url, exp, rid, "log.lammps")
    open_run(browser, mlflow_ui.url, exp, rid)
    tags = shown_tags(browser)
    assert tags["calib.proposal"] in ("initial design", "model")
    assert tags["calib.equilibrated"] == study["best_equilibrated"]  # what the ledger says of the trial
    assert tags["calib.flags"] and tags["calib.best"] == "true"


def test_the_report_page_renders_its_plots(browser, study, tmp_path: Path):
    browser.get(study["report"].resolve().as_uri())
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "section#failures"), "the report's sections")
    images = browser.execute_script("""
        return [...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth,
                                               h: i.naturalHeight, section: i.closest('section').id}));""")
    assert len(images) >= 4
    for img in images:
        assert img["complete"] and img["w"] > 300 and img["h"] > 200, img
    assert {"convergence", "observables", "bounds", "profiles"} <= {i["section"] for i in images}
    text = page_text(browser)
    # 3 trials: no importances (they need 10), said in the page; the caveats box sits above the sections
    assert "importances need at least 10 complete trials" in text
    assert "Caveats of the best set" in text and "holds only at: fidelity smoke" in text
    assert f"best trial {study['summary']['best_trial']}" in text and "Single-objective study" in text
    screenshot(browser, tmp_path / "shots", "5_report_top")
    browser.execute_script("document.getElementById('profiles').scrollIntoView()")
    screenshot(browser, tmp_path / "shots", "6_report_profiles")


# --------------------------------------------------------------------------- the descriptions' links


def _landed(driver, run_id: str) -> str:
    """Wait for run ``run_id``'s page (in whichever window shows it) and return the view it
    is in: "model training" or "genai", told by its breadcrumb (Runs / Evaluations) and the
    sidebar (GenAI's "Evaluation runs")."""
    wait_for(driver, lambda d: any(run_id in e.text for e in
                                   d.find_elements(By.CSS_SELECTOR, '[data-testid="key-value-Run ID"]')),
             f"run {run_id}'s page")
    head = wait_stable(driver).splitlines()[:3]
    body = driver.find_element(By.TAG_NAME, "body").text
    if "Evaluations" in head and "Evaluation runs" in body:
        return "genai"
    assert "Runs" in head and "Evaluation runs" not in body, (head, driver.current_url)
    return "model training"


def _follow(driver, link) -> None:
    """Click a description's link (MLflow opens them in a new tab) and switch to the page it
    opened."""
    from browser import click

    before = set(driver.window_handles)
    click(driver, link)
    new = wait_for(driver, lambda d: set(d.window_handles) - before, "the linked page's tab")
    driver.switch_to.window(new.pop())


def _back(driver) -> None:
    """Close the linked page's tab and return to the first."""
    if len(driver.window_handles) > 1:
        driver.close()
    driver.switch_to.window(driver.window_handles[0])


def test_the_descriptions_links_open_the_model_training_view(mlflow_ui, browser, study, tmp_path: Path):
    """Where the browser remembers MLflow's default GenAI view, every link calib writes into a
    description lands in the model-training view: the study run's "open its run" (the best
    trial's run) and its chart of the objective, and each trial run's "open the study's run"."""
    from browser import UI_STATE, _chart_summary, prepare

    exp, parent, best = study["experiment"], study["parent"], study["best"]
    genai = {**UI_STATE, "mlflow.workflowType_v1": "genai"}

    def open_in_genai(run_id: str) -> None:
        prepare(browser, mlflow_ui.url, genai)
        browser.get("about:blank")
        browser.get(f"{mlflow_ui.url}/#/experiments/{exp}/runs/{run_id}")
        assert _landed(browser, run_id) == "genai"  # the view a link without workflowType keeps

    open_in_genai(parent)
    link = wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "open its run"), "the link to the best run")[0]
    assert link.get_attribute("href").endswith(f"#/experiments/{exp}/runs/{best}?workflowType=machine_learning")
    _follow(browser, link)
    assert _landed(browser, best) == "model training"
    screenshot(browser, tmp_path / "shots", "7_best_run_from_the_study_s_description")
    _back(browser)

    chart = wait_for(browser, lambda d: d.find_elements(By.PARTIAL_LINK_TEXT, "Chart of the objective"),
                     "the link to the objective's chart")[0]
    _follow(browser, chart)
    drawn = wait_for(browser, lambda d: next(filter(None, (_chart_summary(d, p) for p in
                                                           d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))),
                                             None), "the objective's chart")
    assert drawn["points"] == 3 and "workflowType=machine_learning" in browser.current_url  # one point per trial
    screenshot(browser, tmp_path / "shots", "8_objective_chart_from_the_study_s_description")
    _back(browser)

    client = MlflowClient(tracking_uri=mlflow_ui.url)
    trials = [r for r in client.search_runs([exp]) if r.data.tags.get("calib.role") == "trial"]
    assert len(trials) == 3
    for r in trials:
        open_in_genai(r.info.run_id)
        assert f"Trial {r.data.tags['trial_number']}" in page_text(browser)
        link = wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "open the study's run"),
                        "the link back to the study's run")[0]
        _follow(browser, link)
        assert _landed(browser, parent) == "model training"
        _back(browser)
    prepare(browser, mlflow_ui.url, UI_STATE)  # as the other tests' helpers expect it


def test_the_printed_trials_link_opens_them_best_first_with_their_objective(mlflow_ui, browser, study,
                                                                             tmp_path: Path):
    """The saved view ``calib optimize`` prints (``trials_url``), on a first visit: the trial
    runs, best first, with the objective as a column."""
    from browser import UI_STATE, prepare

    s = study["summary"]
    prepare(browser, mlflow_ui.url, {**UI_STATE, "mlflow.workflowType_v1": "genai"})
    browser.get("about:blank")
    browser.get(s["mlflow"]["trials_url"])
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, '.ag-root-wrapper a[href*="/runs/"]')) == 3,
             "the three trial runs")
    text = wait_stable(browser)
    assert OBJ in text and "calib: trials by objective" in browser.find_element(By.TAG_NAME, "body").text
    names = browser.execute_script("""
        const links = [...document.querySelectorAll('.ag-root-wrapper a[href*="/runs/"]')];
        const idx = a => Number((a.closest('.ag-row') || {}).getAttribute?.('row-index') ?? 0);
        return links.sort((a, b) => idx(a) - idx(b)).map(a => a.textContent.trim());""")
    ledger = optuna.load_study(study_name=NAME, storage=s["storage"]).get_trials()
    done = sorted((t for t in ledger if t.value is not None), key=lambda t: t.value)
    assert names[:len(done)] == [f"trial-{t.number:05d}" for t in done]  # best first
    assert f"{done[0].value:.6g}" in text  # the objective's column, to 6 digits
    screenshot(browser, tmp_path / "shots", "9_trials_best_first")
    prepare(browser, mlflow_ui.url, UI_STATE)
