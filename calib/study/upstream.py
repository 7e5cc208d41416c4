"""Chained stages: where a drying or calendering study starts, and the record of it.

A chained study names its upstream: the best trial of another study in the ledger, or a
state data file. ``resolve_upstream`` finds the state file, checks that it was built from
the same composition as this study's dataset, and returns its ``Lineage`` (upstream study,
trial number, MLflow run id, the file's sha256), which every trial and its MLflow run
carry. Any problem is an ``InputError`` (exit 2, nothing written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from calib import ledger
from calib.core.errors import InputError
from calib.stages.upstream_state import STATE_FILE, Lineage, sha256_of

if TYPE_CHECKING:
    from calib.study.load import LoadedStudy


def resolve_upstream(loaded: "LoadedStudy", storage: str) -> Lineage:
    """The upstream state of a chained study (see the module docstring)."""
    spec = loaded.spec
    where = str(loaded.path)
    up = spec.upstream
    want = loaded.stage.upstream
    assert up is not None and want is not None
    if up.data_file is not None:
        path = Path(up.data_file)
        path = path if path.is_absolute() else loaded.path.parent / path
        if not path.is_file():
            raise InputError(where, "upstream.data_file", f"state file not found: {path}")
        return Lineage(want, None, None, None, str(path.resolve()), sha256_of(path))
    url = up.storage or storage
    assert up.study is not None
    if not ledger.study_exists(up.study, url):
        raise InputError(where, "upstream.study", f"no study {up.study!r} in {url}: run it first "
                                                  f"(calib optimize --stage {want} ...)")
    import optuna

    study = optuna.load_study(study_name=up.study, storage=url)
    stored = json.loads(study.user_attrs.get(ledger.SPEC_ATTR, "{}"))
    if stored.get("stage") != want:
        raise InputError(where, "upstream.study", f"study {up.study!r} is a {stored.get('stage')!r} study; "
                                                  f"stage {spec.stage} starts from a {want} study")
    best = ledger.best_trial(study)
    if best is None:
        raise InputError(where, "upstream.study", f"study {up.study!r} has no completed trial to start from "
                                                  "(its trials failed, or none has run)")
    if not best.user_attrs.get("calib_workdir"):
        raise InputError(where, "upstream.study", f"trial {best.number} of {up.study!r} records no trial "
                                                  "directory (not made by calib?)")
    workdir = Path(best.user_attrs["calib_workdir"])
    state = workdir / STATE_FILE
    if not state.is_file():
        raise InputError(where, "upstream.study", f"the state of trial {best.number} of {up.study!r} is missing "
                                                  f"({state})")
    run_file = workdir / "mlflow_run_id"
    run_id = run_file.read_text().strip() if run_file.exists() else None
    return Lineage(want, up.study, best.number, run_id, str(state.resolve()), sha256_of(state))
