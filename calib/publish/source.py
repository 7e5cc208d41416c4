"""A stored study as ``calib export`` reads it: ``Source`` (the Optuna study, its spec,
stage, dataset and the storage it was found in) and ``open_source``, which checks that the
study's dataset is still the one it was calibrated on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna

from calib import ledger
from calib.core.errors import InputError
from calib.spec.study_file import StudyBase
from calib.study.identity import dataset_digest
from calib.study.load import DEFAULT_DATA_ROOT
from calib.study.stored import load_calib_study, stored_loaded


@dataclass(frozen=True)
class Source:
    """A stored study as export reads it: the Optuna study, its spec, stage, dataset (with
    the study's bead sizes), the dataset file and the storage it was found in."""

    study: optuna.Study
    spec: StudyBase
    stage: object
    dataset: object
    dataset_file: Path
    storage: str
    dataset_digest: str = ""
    """sha256 of what the study uses from its dataset (``calib.study.identity.dataset_digest``),
    checked equal to the one it was calibrated on."""

    @property
    def name(self) -> str:
        return self.study.study_name


def open_source(name: str, storage: str, data_root: Path = DEFAULT_DATA_ROOT) -> Source:
    """Study ``name`` with its settings and dataset (``InputError`` if it is not calib's or
    its dataset is gone)."""
    study = load_calib_study(name, storage)
    attrs = study.user_attrs
    loaded = stored_loaded(study, data_root)
    dpath = loaded.dataset_path
    used = dataset_digest(loaded)
    calibrated = json.loads(attrs.get(ledger.SPEC_ATTR) or "{}").get("physics", {}).get("dataset_sha256")
    if calibrated is not None and used != calibrated:
        raise InputError("--study", "dataset", f"study {name!r} was calibrated on another version of {dpath}: what "
                                               "it uses from the file (bead sizes, targets) changed since; restore "
                                               "the file to export this study")
    return Source(study, loaded.spec, loaded.stage, loaded.dataset, dpath, storage, used)
