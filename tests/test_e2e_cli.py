"""End to end, on one stored smoke study (real LAMMPS, Optuna and MLflow stores): what
``--study`` means on every command that takes it, and what ``calib optimize`` writes to a
stderr that is not a terminal.

``--study`` is a study file or a study name on every command (``calib.cli.common.is_study_file``):
a value ending in .yaml or .yml, holding a /, or naming an existing file is a study file,
whose ``name`` gives the stored study; any other value names the stored study. Each command
is run with both forms; the study file's own name (``settings_of_<name>.yaml``) is not the
study's, so a command that took the file's stem for the name would fail.

A rerun at another fidelity is refused naming ``--fidelity`` and the fidelity to give.

With stderr redirected to a file, ``calib optimize`` writes plain lines: no MLflow or
alembic log lines, no progress bar (its last frame would stay in the file), each trial's line
whole on one line whatever the width rich assumes (``COLUMNS=40`` here: rich, which wraps
at ``COLUMNS`` when not on a terminal, would cut smoke's short lines)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from conftest import SHORT, parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps
NAME = "e2e_cli"
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "MLFLOW_LOGGING_LEVEL", "LD_LIBRARY_PATH")
"""Variables that would make rich take a file for a terminal, or set MLflow's log level."""


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict:
    """A 2-trial smoke study, run by its study file with stderr to a file and stdout to another."""
    tmp = tmp_path_factory.mktemp("cli")
    study = tmp / f"settings_of_{NAME}.yaml"
    shutil.move(write_study(tmp, NAME, trials=2, parallel=1, optimizer={"n_initial": 2}, fidelities=SHORT), study)
    runs = tmp / "runs"
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    env["COLUMNS"] = "40"
    err, out = tmp / "stderr.txt", tmp / "stdout.txt"
    with err.open("w") as err_file, out.open("w") as out_file:
        proc = subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study",
                               str(study), "--fidelity", "smoke", "--runs-dir", str(runs)], cwd=tmp, env=env,
                              stdout=out_file, stderr=err_file, timeout=600)
    assert proc.returncode == 0, err.read_text()[-3000:]
    return {"tmp": tmp, "study": study, "runs": runs, "common": ["--runs-dir", str(runs)],
            "storage": f"sqlite:///{runs / 'calib.db'}", "stderr": err.read_text(), "stdout": out.read_text()}


def _trials(s: dict) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=NAME, storage=s["storage"]).get_trials()


def _refused(proc: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command (exit 2)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calib: error: "), proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- stderr, not a terminal


def test_stderr_to_a_file_carries_plain_whole_lines(stored):
    err = stored["stderr"]
    notes = [line for line in err.splitlines() if line.startswith("note: ")]  # calib's own, before the study
    assert err.splitlines()[:len(notes)] == notes, err
    lines = err.splitlines()[len(notes):]
    assert lines[0] == f"{NAME} [slurry/smoke]: 0 of 2 trials finished", err
    assert not [line for line in lines if re.search(r"mlflow\.store|alembic|\bINFO\b", line)], err
    assert not re.search("[\u2500-\u259f]", err), err  # box drawing and blocks: a progress bar's frame
    trial_lines = [line for line in lines if line.startswith("  trial ")]
    assert len(trial_lines) == 2, err
    for line in trial_lines:  # each whole: from its number to its objective
        assert re.fullmatch(r"  trial \d: density \d\.\d+ g/cm\^3 \(objective [\d.e+-]+\)", line), err
    live = "  watch it live in MLflow: http://127.0.0.1:5000/#/experiments/"
    assert lines[1].startswith(live) and lines[1].endswith(", in another terminal)"), err  # the live view, whole
    assert lines[2:] == trial_lines, err  # nothing else: no warning was raised by this study
    assert f"study {NAME} " in stored["stdout"]  # the summary on stdout


# --------------------------------------------------------------------------- --study FILE or NAME


def test_optimize_resumes_by_file_or_by_name(stored):
    s = stored
    by_file = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(s["study"]), "--fidelity",
                                          "smoke", "--json", *s["common"], cwd=s["tmp"]))
    by_name = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", NAME, "--json", *s["common"],
                                          cwd=s["tmp"]))  # the stored fidelity: no --fidelity needed
    assert by_file["best_trial"] == by_name["best_trial"]
    assert len(_trials(s)) == 2  # the budget was spent: nothing more ran
    line = _refused(run_calib("optimize", "--stage", "slurry", "--study", "no_such_study", *s["common"],
                              cwd=s["tmp"], check=False))
    assert line.startswith("calib: error: --study: study: no study named 'no_such_study' in "), line
    line = _refused(run_calib("optimize", "--stage", "drying", "--study", NAME, *s["common"], cwd=s["tmp"],
                              check=False))
    assert line == "calib: error: --study: stage: study is for stage 'slurry', not 'drying'"


def test_a_rerun_at_another_fidelity_names_the_fidelity_to_give(stored):
    s = stored
    want = (f"calib: error: --fidelity: fidelity: study {NAME} was run at fidelity smoke, this run asks for dev: "
            "rerun with --fidelity smoke (or give the study another name)")
    # the study file's own fidelity (dev) without --fidelity, and a stored study's name with another one
    for study, extra in ((str(s["study"]), []), (NAME, ["--fidelity", "dev"])):
        proc = run_calib("optimize", "--stage", "slurry", "--study", study, "--trials", "3", *extra, *s["common"],
                         cwd=s["tmp"], check=False)
        assert _refused(proc) == want
    assert len(_trials(s)) == 2


def test_predict_takes_a_file_or_a_name(stored):
    s = stored
    outs = [parse_json_stdout(run_calib("predict", "--study", study, "--set", "eps_AM=5", "--json", *s["common"],
                                        cwd=s["tmp"])) for study in (str(s["study"]), NAME)]
    assert outs[0] == outs[1] and outs[0]["study"] == NAME and outs[0]["trials_fitted"] == 2


def test_export_takes_files_and_names(stored):
    s = stored
    by_file, by_name = (run_calib("export", "--study", study, "--format", "json", *s["common"], cwd=s["tmp"]).stdout
                        for study in (str(s["study"]), NAME))
    assert by_file == by_name and [c["study"] for c in json.loads(by_file)["columns"]] == [NAME]
    line = _refused(run_calib("export", "--study", str(s["study"]), "--study", NAME, *s["common"], cwd=s["tmp"],
                              check=False))
    assert line == f"calib: error: --study: study: study '{NAME}' is given twice"  # both name one study


def test_report_takes_a_file_or_a_name(stored):
    s = stored
    # the file form: the report's default folder is the study's (not one named after the file's
    # path), and it is logged to the study's parent run
    text = run_calib("report", "--study", str(s["study"]), *s["common"], cwd=s["tmp"]).stdout
    page = s["runs"] / NAME / "report" / "report.html"
    assert f"report: {page.resolve()}" in text and page.is_file() and "logged to MLflow run" in text
    out = s["tmp"] / "report_by_name"
    text = run_calib("report", "--study", NAME, "--out", str(out), "--tracking-uri", "none", *s["common"],
                     cwd=s["tmp"]).stdout
    assert f"report: {(out / 'report.html').resolve()}" in text
    line = _refused(run_calib("report", "--study", "studies/no_such.yaml", *s["common"], cwd=s["tmp"], check=False))
    assert line == "calib: error: --study: study: no such study file: studies/no_such.yaml"


def test_pipeline_and_reproduce_take_a_file_or_a_name(stored):
    """Their settings from a study file or from the stored study; both forms pass every check
    (the last refusal is of another option) without running the stage chain."""
    s = stored
    for study in (str(s["study"]), NAME):
        line = _refused(run_calib("pipeline", "--study", study, "--tracking-uri", "foo://x", *s["common"],
                                  cwd=s["tmp"], check=False))
        assert line.startswith("calib: error: --tracking-uri: uri: "), line  # checked last
        line = _refused(run_calib("reproduce", "--study", study, "--fidelity", "nosuch", *s["common"], cwd=s["tmp"],
                                  check=False))
        assert line == "calib: error: --fidelity: fidelity: unknown fidelity 'nosuch' (known: smoke, dev, paper)"
    for command in ("pipeline", "reproduce"):
        line = _refused(run_calib(command, "--study", "no_such_study", *s["common"], cwd=s["tmp"], check=False))
        assert line.startswith("calib: error: --study: study: no study named 'no_such_study' in "), line
    assert not (s["runs"] / "pipelines").exists() and not (s["runs"] / "reproduce").exists()


def test_refine_takes_a_file_or_a_name(stored):
    """Last: it adds trials to the study."""
    s = stored
    for study, eps in ((str(s["study"]), "3"), (NAME, "30")):
        run_calib("refine", "--study", study, "--set", f"eps_AM={eps}", "--tracking-uri", "none", *s["common"],
                  cwd=s["tmp"])
    trials = _trials(s)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.params["eps_AM"] for t in trials[2:]] == pytest.approx([3.0, 30.0])
    assert all(t.user_attrs.get("calib_manual") for t in trials[2:])
