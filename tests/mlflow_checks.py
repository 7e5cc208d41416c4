"""Checks on what a finished study left in MLflow and on the files it logged there, shared by
the end-to-end tests (imported as ``from mlflow_checks import ...``, like ``conftest``)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

ENDED = ("FINISHED", "FAILED")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESTART_MAGIC = b"LammpS RestartT"  # the first bytes of every LAMMPS binary restart file
MIN_PNG_BYTES = 2000  # a rendered figure with axes and text; an empty or broken file is far smaller


def _experiments(client: MlflowClient, experiment: str | None) -> list:
    if experiment is None:
        return client.search_experiments()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment named {experiment!r}"
    return [exp]


def assert_no_running_runs(tracking_uri: str, experiment: str | None = None) -> list[Run]:
    """Every MLflow run of ``experiment`` (every experiment of the store when None) has
    ended: status FINISHED or FAILED, none RUNNING, SCHEDULED or KILLED, each with an end
    time. Returns the runs."""
    client = MlflowClient(tracking_uri=tracking_uri)
    runs: list[Run] = []
    for exp in _experiments(client, experiment):
        runs.extend(client.search_runs([exp.experiment_id], max_results=10_000))
    bad = [(r.info.run_name, r.data.tags.get("calib.role"), r.data.tags.get("trial_number"), r.info.status)
           for r in runs if r.info.status not in ENDED or not r.info.end_time]
    assert not bad, f"MLflow runs not ended (name, role, trial, status): {bad}"
    return runs


def assert_runs_match_ledger(tracking_uri: str, experiment: str, storage: str, study_name: str | None = None,
                             parent_status: str = "FINISHED") -> dict[int, Run]:
    """After a study has ended: no run of its experiment is left running
    (``assert_no_running_runs``); one study (parent) run with ``parent_status``; one trial
    run per finished ledger trial (COMPLETE or FAIL), nested under the parent, FINISHED for
    a COMPLETE trial and FAILED for a FAIL trial; no ledger trial left RUNNING or WAITING.
    Returns the trial runs by trial number."""
    runs = assert_no_running_runs(tracking_uri, experiment)
    trials = optuna.load_study(study_name=study_name or experiment, storage=storage).get_trials()
    unfinished = [(t.number, t.state.name) for t in trials if t.state not in (TrialState.COMPLETE, TrialState.FAIL)]
    assert not unfinished, f"ledger trials not finished after the study: {unfinished}"
    parents = [r for r in runs if r.data.tags.get("calib.role") == "study"]
    assert [r.info.status for r in parents] == [parent_status], [(r.info.run_id, r.info.status) for r in parents]
    trial_runs = [r for r in runs if r.data.tags.get("calib.role") == "trial"]
    numbers = [int(r.data.tags["trial_number"]) for r in trial_runs]
    assert len(trial_runs) == len(trials), (f"{len(trial_runs)} MLflow trial runs for {len(trials)} finished ledger "
                                            f"trials: runs for trials {sorted(numbers)}")
    assert sorted(numbers) == sorted(t.number for t in trials), "one MLflow run per ledger trial"
    by_number = dict(zip(numbers, trial_runs))
    want = {TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED"}
    got = {t.number: (t.state.name, by_number[t.number].info.status) for t in trials}
    assert all(status == want[TrialState[state]] for state, status in got.values()), got
    pid = parents[0].info.run_id
    assert all(r.data.tags.get("mlflow.parentRunId") == pid for r in trial_runs)
    return by_number


def download(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path:
    """One artifact of a run, downloaded into its own folder under ``dst``."""
    folder = dst / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(folder)))


def assert_png(data: bytes | Path, what: str = "figure") -> None:
    """A PNG: the signature, an IHDR chunk with a non-empty image, a non-trivial size."""
    if isinstance(data, Path):
        what, data = str(data), data.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{what} is not a PNG: starts {data[:8]!r}"
    assert data[12:16] == b"IHDR" and int.from_bytes(data[16:20], "big") > 0 and int.from_bytes(data[20:24], "big") > 0
    assert len(data) > MIN_PNG_BYTES, f"{what}: only {len(data)} bytes"


def assert_finished_lammps_log(text: str, what: str = "log.lammps") -> None:
    """A LAMMPS log of a run that ran its steps and ended normally."""
    assert text.startswith("LAMMPS ("), f"{what} is not a LAMMPS log: {text[:80]!r}"
    assert "Loop time of" in text, f"{what}: no 'Loop time of' (no run finished)"
    assert "Total wall time:" in text, f"{what}: LAMMPS did not end normally"
    assert "ERROR" not in text, f"{what} has an ERROR line"


def read_blocks(path: Path) -> tuple[list[str], list[list[float]]]:
    """A ``fix ave/time ... file`` output: (column names from its second header line, rows);
    every row has one value per column, and every value is finite."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Time-averaged data for fix "), lines[:2]
    assert lines[1].startswith("# "), lines[:2]
    columns = lines[1][2:].split()
    rows = [[float(x) for x in ln.split()] for ln in lines[2:] if ln.strip()]
    assert rows, f"{path}: no data rows"
    assert all(len(r) == len(columns) for r in rows), f"{path}: rows do not match columns {columns}"
    assert all(math.isfinite(x) for r in rows for x in r), f"{path}: non-finite values"
    return columns, rows


def data_file_atoms(text: str) -> int:
    """The number of atoms a LAMMPS data file declares, checked against its Atoms section
    (one line per atom, ``atom_style sphere``: id type diameter density x y z, image flags)."""
    lines = text.splitlines()
    assert lines[0].startswith("LAMMPS data file"), lines[0]
    n = int(next(ln.split()[0] for ln in lines if ln.strip().endswith(" atoms")))
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Atoms"))
    body = []
    for ln in lines[start + 2:]:
        if not ln.strip():
            break
        body.append(ln.split())
    assert len(body) == n, f"data file declares {n} atoms and lists {len(body)}"
    assert all(len(row) >= 7 and all(math.isfinite(float(x)) for x in row[2:7]) for row in body)
    assert sorted(int(row[0]) for row in body) == list(range(1, n + 1))
    return n


def metric_histories(tracking_uri: str, experiment: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Every metric's history of every run of ``experiment``: (run name, key) -> [(step,
    value)] in the store's order."""
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment named {experiment!r}"
    out = {}
    for r in client.search_runs([exp.experiment_id], max_results=10_000):
        for key in r.data.metrics:
            out[(r.info.run_name, key)] = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, key)]
    return out


def assert_one_value_per_step(tracking_uri: str, experiment: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """No metric of any run of ``experiment`` holds two values at one step (MLflow keeps
    every value logged: a series logged twice shows two points per step). Returns the
    histories (``metric_histories``)."""
    out = metric_histories(tracking_uri, experiment)
    doubled = {k: v for k, v in out.items() if len({s for s, _ in v}) != len(v)}
    assert not doubled, f"metrics with two values at one step, (run, key) -> [(step, value)]: {doubled}"
    return out
