"""Shared fixtures. End-to-end tests run the real ``calib`` CLI with real LAMMPS, a real
SQLite Optuna storage and a real embedded MLflow store, at ``smoke`` fidelity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STUDY = REPO / "studies" / "ssb_slurry.yaml"
SSB_DATASET = REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml"


def run_calib(*args: str, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m calib.cli ARGS`` in ``cwd`` (no LD_LIBRARY_PATH given)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-m", "calib.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"calib {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def write_study(tmp_path: Path, name: str, **overrides) -> Path:
    """A copy of the default study under ``tmp_path`` with top-level ``overrides``."""
    spec = yaml.safe_load(DEFAULT_STUDY.read_text())
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
