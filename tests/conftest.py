"""Shared fixtures. End-to-end tests run the real ``calib`` CLI with real LAMMPS, a real
SQLite Optuna storage and a real embedded MLflow store, at ``smoke`` fidelity."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STUDY = REPO / "studies" / "ssb_slurry.yaml"
SHORT = {"smoke": {"equilibration_steps": 2000, "averaging_steps": 4000, "density_window_steps": 4000,
                   "density_max_steps": 4000}}
"""``fidelities`` override: smoke shortened to a few seconds of LAMMPS, for tests of what runs
trials (the CLI, faults, MPI, review), not of the density; 4 averaged blocks still give a
trial its blocking SEM and density profile."""
SSB_DATASET = REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml"


# Seed Table S1 values, written out by hand from the paper (not derived from TABLE_S1_*).
SEED_SLURRY = {
    "eps_CBD": 0.88, "sigma_CBD": 0.97, "rc_CBD": 2.2,
    "eps_AM": 1.0, "sigma_AM": 0.99, "rc_AM": 1.5,
    "eps_SE": 10.5, "sigma_SE": 0.99, "rc_SE": 1.5,
    "kn": 0.1, "gamma_n": 55.0, "xu": 0.016,
}
SEED_DRIED = {
    "eps_CBD": 400.0, "sigma_CBD": 0.89, "rc_CBD": 2.2,
    "eps_AM": 100.0, "sigma_AM": 0.93, "rc_AM": 1.2,
    "eps_SE": 200.0, "sigma_SE": 0.93, "rc_SE": 1.2,
    "kn": 100.0, "gamma_n": 10.0, "xu": 12.5,
}


def ssb_formulation():
    """The SSB formulation written out by hand: AM 10 um, SE 2/4/6/8/10 um (shell 1.14, dried
    1.02), CBD 7.5 um at 0.9 g/cm^3 counted at its solid bead (3.0 um, 0.9 g/cm^3)."""
    from sim_backends.lammps.beads import Formulation, Phase, SizeClass, SolidBead

    return Formulation(phases=(
        Phase("AM", 0.69, 4.75, (SizeClass(10.0, 1.0),), slurry_diameter_factor=1.14),
        Phase("SE", 0.276, 1.64, tuple(SizeClass(d, f) for d, f in zip(
            (2.0, 4.0, 6.0, 8.0, 10.0), (0.35, 0.30, 0.18, 0.11, 0.06))), slurry_diameter_factor=1.14),
        Phase("CBD", 0.034, 0.9, (SizeClass(7.5, 1.0),), solid=SolidBead(3.0, 0.9)),
    ))


def ssb_system(n_beads: int = 500):
    """The SSB slurry system of ``ssb_formulation`` at ``n_beads`` beads."""
    from sim_backends.lammps.beads import build_slurry_system

    return build_slurry_system(ssb_formulation(), n_beads)


def random_state_file(path: Path, system) -> Path:
    """A LAMMPS data file of ``system``'s beads at random positions in a 50 um box (seed 1):
    a stand-in state file for tests that only read or check it."""
    import numpy as np

    from sim_backends.lammps.placement import Placement, write_data_file

    types = np.concatenate([np.full(t.count, t.type_id) for t in system.types])
    diam = np.concatenate([np.full(t.count, t.diameter_um) for t in system.types])
    dens = np.concatenate([np.full(t.count, t.lammps_density) for t in system.types])
    pos = np.random.default_rng(1).uniform(0, 50.0, size=(len(types), 3))
    write_data_file(path, Placement((50.0, 50.0, 50.0), types, diam, dens, pos), n_types=len(system.types))
    return path


_MLFLOW_TEMPLATE: list[Path] = []
TRACKING_COMMANDS = ("optimize", "refine", "report", "pipeline", "reproduce")
"""The commands that log to MLflow (by default, a store under ``--runs-dir``)."""


def option_value(args: tuple[str, ...], name: str) -> str | None:
    """The value of option ``name`` in a command line (``--name X`` or ``--name=X``; the last
    one given, as click takes it), or None."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1:]
    return value


def mlflow_template() -> Path:
    """An empty MLflow SQLite store, its schema created once per test process (removed at its
    exit). MLflow's schema migrations take 2-10 s per new store (most of it waiting on the
    disk); a copy takes milliseconds."""
    if not _MLFLOW_TEMPLATE:
        from mlflow.tracking import MlflowClient

        folder = tempfile.mkdtemp(prefix="calib_mlflow_template_")
        atexit.register(shutil.rmtree, folder, True)
        path = Path(folder) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
        _MLFLOW_TEMPLATE.append(path)
    return _MLFLOW_TEMPLATE[0]


def run_calib(*args: str, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m calib.cli ARGS`` in ``cwd`` (no LD_LIBRARY_PATH given).

    A command that logs to MLflow (``TRACKING_COMMANDS``), expected to succeed (``check``),
    with ``--runs-dir DIR`` and the default tracking store starts from a copy of
    ``mlflow_template`` when ``DIR/mlflow.db`` does not exist yet. The CLI creating its store from nothing is what the calls with ``check=False``
    (bad input, failing studies: ``test_e2e_caveats``), ``test_drivers`` and ``test_e2e_cli``
    run (and the README's main job in a fresh clone)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    runs_dir = option_value(args, "--runs-dir")
    if (check and args and args[0] in TRACKING_COMMANDS and runs_dir is not None
            and option_value(args, "--tracking-uri") is None):
        runs = Path(cwd, runs_dir)
        if not (runs / "mlflow.db").exists():
            runs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mlflow_template(), runs / "mlflow.db")
    proc = subprocess.run([sys.executable, "-m", "calib.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"calib {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def run_study(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``calib optimize ... --json`` (or ``refine``) that may end without an answer: exit 0
    when its summary has a best trial, else exit 1 with the one-line error naming the study
    (``calib.cli.optimize``: a study without a completed trial at its target fidelity);
    anything else fails like ``run_calib``."""
    proc = run_calib(*args, cwd=cwd, timeout=timeout, check=False)
    try:
        answer = json.loads(proc.stdout).get("best_trial") is not None
    except ValueError:
        answer = True
    last = proc.stderr.strip().splitlines()[-1:] or [""]
    if proc.returncode != (0 if answer else 1) or not (answer or re.match(
            r"calib: error: study '.+' has no completed trial", last[0])):
        raise AssertionError(f"calib {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def write_study(tmp_path: Path, name: str, src: Path = DEFAULT_STUDY, **overrides) -> Path:
    """A copy of study ``src`` (default: the default study) under ``tmp_path`` named
    ``name``, with top-level ``overrides``."""
    spec = yaml.safe_load(Path(src).read_text())
    spec["name"] = name
    spec.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def parse_json_stdout(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


@pytest.fixture
def smoke_args(tmp_path: Path) -> list[str]:
    return ["--fidelity", "smoke", "--runs-dir", str(tmp_path / "runs")]


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (``tests/services.Postgres``), stopped after."""
    from services import Postgres

    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slurm():
    """A real single-node Slurm cluster for the session (``tests/services.Slurm``); its
    ``SLURM_CONF`` is exported to this process and every command it starts."""
    from services import Slurm

    cluster = Slurm()
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def mlflow_ui(tmp_path_factory):
    """A real MLflow tracking server with its UI for the module (``tests/services.MlflowServer``:
    SQLite store and served artifacts under a temporary directory, loopback, a free port);
    its ``url`` is the UI's base URL. Stopped after."""
    from services import MlflowServer

    server = MlflowServer(root=tmp_path_factory.mktemp("mlflow_ui"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Selenium for the module (``tests/services.chromium``;
    Debian's ``chromium`` and ``chromium-driver`` installed with apt if missing), 1600x1000.
    Helpers to look at the MLflow UI with it: ``tests/browser.py``."""
    from services import chromium

    driver = chromium()
    yield driver
    driver.quit()


SLURM_MARKER = "slurm"
"""Tests that start a Slurm cluster (its munge daemon is one per machine): with pytest-xdist
(``-n 2 --dist loadgroup``, the README's command) they all run on one worker. PostgreSQL,
MLflow servers and Chromium run on free loopback ports and private folders, so their modules
may run side by side; installing them takes ``services.apt_lock`` (one apt-get at a time)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """xdist groups: the Slurm tests together, every other module's tests together (a
    module-scoped fixture, such as a smoke study several tests read, is then made once, not
    once per worker), except a module that sets ``SPREAD_OVER_WORKERS = True`` (long,
    independent tests and no module fixture: each test its own group, so that the module does
    not run on one worker while the other idles). First among the hooks: pytest-xdist's own
    hook turns the groups into node-id suffixes, and a group added after it is ignored
    (``test_suite_layout.py``)."""
    for item in items:
        if item.get_closest_marker(SLURM_MARKER):
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif getattr(item.module, "SPREAD_OVER_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(item.nodeid))
        else:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that uses ``browser`` leaves ``failure.png`` (the window as it was) in
    its ``tmp_path``, named in the report."""
    report = yield
    if report.when == "call" and report.failed and "browser" in getattr(item, "funcargs", {}):
        folder = item.funcargs.get("tmp_path")
        if folder is not None:
            try:
                path = Path(folder) / "failure.png"
                item.funcargs["browser"].save_screenshot(str(path))
                report.sections.append(("browser", f"screenshot at failure: {path}"))
            except Exception as exc:  # the browser itself may be what failed
                report.sections.append(("browser", f"no screenshot: {exc!r}"))
    return report
