"""A study's identity, and a study created or resumed under it: what must match for a study to
be resumed (``identity``, ``check_resumable``) and ``open_study``, which records it."""

from __future__ import annotations

import json
import uuid

import optuna

from calib.core.errors import InputError
from calib.ledger.labels import (DATASET_PATH_ATTR, IDENTITY_KEYS, SPEC_ATTR, STUDY_FILE_ATTR, STUDY_PATH_ATTR,
                                 UID_ATTR)


def identity(stage: str, dataset: str, fidelity: str, space: dict[str, list], physics: dict) -> dict:
    """What must match for a study to be resumed: stage, dataset, fidelity, search space and
    everything that changes what a trial's value means (``physics``: LJ style, fixed keys,
    stage settings, objective, the resolved fidelity, the dataset file's checksum)."""
    return {"stage": stage, "dataset": dataset, "fidelity": fidelity, "space": space, "physics": physics}


def check_resumable(study: optuna.Study, ident: dict, storage: str) -> None:
    """Raise ``InputError`` if an existing study was a different calibration. A study run at
    another fidelity is refused naming ``--fidelity`` and the fidelity to rerun it with (a
    study file's default fidelity is easily not the one a study was started with)."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return
    old = json.loads(stored)
    new = json.loads(json.dumps(ident, sort_keys=True))  # same JSON normalisation as stored
    for key in IDENTITY_KEYS:
        a, b = old.get(key), new.get(key)
        if key == "fidelity" and a != b and isinstance(a, str):
            raise InputError("--fidelity", "fidelity", f"study {study.study_name} was run at fidelity {a}, this run "
                                                       f"asks for {b}: rerun with --fidelity {a} (or give the study "
                                                       "another name)")
        if key == "physics" and isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    raise InputError(storage, f"physics.{sub}",
                                     f"study {study.study_name!r} exists with {a.get(sub)!r}; this run asks for "
                                     f"{b.get(sub)!r} (use another study name)")
        if a != b:
            raise InputError(storage, key, f"study {study.study_name!r} exists with {key}={a!r}; "
                                           f"this run asks for {b!r} (use another study name)")


def open_study(name: str, storage: str | optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
               ident: dict, spec_json: str | None = None, dataset_path: str | None = None,
               study_path: str | None = None) -> optuna.Study:
    """Create or resume study ``name`` (minimise) and record its identity and full spec
    (several drivers may do so at once)."""
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize",
                                    load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # another driver created it between the check and the insert
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    check_resumable(study, ident, storage)
    if UID_ATTR not in study.user_attrs:
        study.set_user_attr(UID_ATTR, uuid.uuid4().hex[:12])
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, json.dumps(ident, sort_keys=True))
    if spec_json is not None and study.user_attrs.get(STUDY_FILE_ATTR) != spec_json:
        # the identity matched above: what changed (trial_timeout_s, parallel, the optimizer's
        # settings, ...) is what the study runs with from now on, also when resumed by name
        study.set_user_attr(STUDY_FILE_ATTR, spec_json)
    if dataset_path is not None and DATASET_PATH_ATTR not in study.user_attrs:
        study.set_user_attr(DATASET_PATH_ATTR, dataset_path)
    if study_path is not None and STUDY_PATH_ATTR not in study.user_attrs:
        study.set_user_attr(STUDY_PATH_ATTR, study_path)
    return study
