"""A study's run directory: claiming its folder for the study (``claim_study_dir``) and the
lock under which drivers started together set up the stores (``setup_lock``)."""

from __future__ import annotations

import contextlib
import fcntl
import time
from pathlib import Path
from typing import Iterator


def claim_study_dir(study_dir: Path, uid: str) -> str | None:
    """Make ``study_dir`` this study's (marker file ``.calib_study_uid``). A folder of the
    same name left by another study (other ledger, deleted database) is moved aside, never
    deleted; returns a warning saying where, or None."""
    marker = study_dir / ".calib_study_uid"
    warning = None
    if study_dir.exists() and any(study_dir.iterdir()):
        if marker.exists() and marker.read_text().strip() == uid:
            return None
        aside = study_dir.with_name(f"{study_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        study_dir.rename(aside)
        warning = f"{study_dir} belonged to another study with this name; moved to {aside}"
    study_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(uid + "\n")
    return warning


@contextlib.contextmanager
def setup_lock(runs_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``<runs_dir>/.calib_setup.lock`` (``flock``): drivers started
    together on one run directory create the Optuna and MLflow stores (their schema
    migrations) one after the other."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".calib_setup.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
