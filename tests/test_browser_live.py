"""Watching a study while it runs (the README's "Watching a study live"): ``calib optimize``
(real LAMMPS) runs in the background, logging to a real MLflow server on loopback, and a
real headless Chromium looks at the experiment's runs table the way a user does, reloading
it, until a finished trial is listed; the study must still be running then. Screenshots
under the test's ``tmp_path``/shots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from browser import open_experiment, page_text, screenshot, shown_runs, wait_for
from conftest import write_study

pytestmark = [pytest.mark.browser, pytest.mark.lammps]
NAME = "ui_live"
TRIALS = 4
# smoke shortened to 6,000 density steps (as test_browser.py's study): a trial takes a few
# seconds, so the 3 trials after the first keep the study running for 10 s or more after the
# first one is listed, while the browser needs a reload (2 to 5 s) to list it
SHORT_SMOKE = {"smoke": {"equilibration_steps": 2000, "averaging_steps": 4000, "density_window_steps": 4000,
                         "density_max_steps": 4000}}


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_finished_trials_show_in_the_ui_while_the_study_runs(mlflow_ui, browser, tmp_path: Path):
    path = write_study(tmp_path, NAME, trials=TRIALS, parallel=1, optimizer={"n_initial": 2}, fidelities=SHORT_SMOKE)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study",
                                 str(path), "--fidelity", "smoke", "--runs-dir", str(tmp_path / "runs"),
                                 "--tracking-uri", mlflow_ui.url], cwd=tmp_path, stdout=o, stderr=e, env=env)

    def why() -> str:
        return f"calib optimize exited {proc.returncode}\nstdout:\n{_tail(out)}\nstderr:\n{_tail(err)}"

    try:
        client = MlflowClient(tracking_uri=mlflow_ui.url)
        deadline = time.monotonic() + 300
        prefix = "  watch it live in MLflow: "
        while not (live := [x for x in _tail(err).splitlines() if x.startswith(prefix)]):  # printed at the start
            assert proc.poll() is None, why()
            assert time.monotonic() < deadline, "no live link printed in 300 s\n" + why()
            time.sleep(0.5)
        exp = client.get_experiment_by_name(NAME)
        url = live[0].removeprefix(prefix)
        assert url == f"{mlflow_ui.url}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning", url
        browser.get(url)  # the printed link itself lands on the runs table, in the model-training view
        wait_for(browser, lambda d: NAME in page_text(d), "the printed live link's runs table")
        assert "Evaluation runs" not in page_text(browser)  # the GenAI view's sidebar entry

        seen, loads = None, 0
        while seen is None:  # a user reloading the runs table until a trial is listed
            assert proc.poll() is None, "the study ended before the UI listed a finished trial\n" + why()
            assert time.monotonic() < deadline, "no finished trial listed in 300 s"
            open_experiment(browser, mlflow_ui.url, exp.experiment_id, expand=True)
            loads += 1
            rows = shown_runs(browser)
            running = proc.poll() is None  # right after the page showed these rows
            # a trial's run is made when the trial has finished, and ended once its files are logged
            finished = [r for r in rows if r["name"].startswith("trial-") and r["finished"] and r["duration"]]
            if finished:
                seen = rows
            else:
                time.sleep(1.0)
        screenshot(browser, tmp_path / "shots", "1_a_trial_listed_while_running")
        assert running, "the study had ended by the time the UI listed its first trial\n" + why()
        parent = [r for r in seen if r["name"] == NAME]
        assert parent and not parent[0]["finished"], seen  # the study's own run, on the same page: still running

        assert proc.wait(timeout=600) == 0, why()
        open_experiment(browser, mlflow_ui.url, exp.experiment_id, expand=True)
        rows = shown_runs(browser)
        screenshot(browser, tmp_path / "shots", "2_after_the_study")
        assert sorted(r["name"] for r in rows) == sorted([NAME] + [f"trial-{i:05d}" for i in range(TRIALS)]), rows
        assert all(r["finished"] for r in rows), rows
    finally:
        if proc.poll() is None:  # a failed check: stop the study as a scheduler would (SIGTERM)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
