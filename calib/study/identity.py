"""A study's identity: what must match for a stored study to be resumed.

Stage, dataset, fidelity name, search space and ``physics``: the LJ style, the fixed
keys, the objective, the fidelity fields the stage reads (and, for a multi-fidelity study,
those of every rung), the settings sections it reads, what it uses from its dataset (as a
checksum), its own extras and the upstream state's checksum. A field a stage does not
read is not in its identity, so adding a field elsewhere leaves stored studies resumable.
"""

from __future__ import annotations

import hashlib
import json

from calib import ledger
from calib.stages.upstream_state import Lineage
from calib.study.space import ParameterSpace
from calib.study.load import LoadedStudy


def study_ident(loaded: LoadedStudy, space: ParameterSpace, lineage: Lineage | None = None) -> dict:
    spec, stage = loaded.spec, loaded.stage
    reads = stage.fidelity_fields(spec)

    def fidelity(name: str | None = None) -> dict:
        dumped = spec.fidelity_spec(name).model_dump()
        if "transfer" in dumped:  # the factors are physics, their provenance text is not
            dumped["transfer"] = {t: m["factor"] for t, m in dumped["transfer"].items()}
        # an empty transfer map leaves the identity of the studies made before it existed
        return {k: dumped[k] for k in reads if not (k == "transfer" and not dumped[k])}

    physics: dict = {
        "lj_style": spec.lj_style,
        "fixed": space.fixed,
        "objective": spec.objective.model_dump(),
        "fidelity_spec": fidelity(),
        "dataset_sha256": dataset_digest(loaded),
        **{section: settings_identity(getattr(spec, section)) for section in stage.identity_sections(spec)},
        **stage.identity_extra(loaded),
    }
    if spec.optimizer.multi_fidelity is not None:  # the cheaper rungs (their costs steer proposals, not physics)
        physics["ladder"] = {n: fidelity(n) for n in spec.ladder}
    if lineage is not None:
        physics["upstream_state_sha256"] = lineage.sha256
    if spec.system:
        physics["system"] = {k: v.model_dump() for k, v in spec.system.items()}
    return ledger.identity(spec.stage, spec.dataset, spec.fidelity,
                           {a.key: [a.low, a.high, a.log] for a in space.axes}, physics)


def settings_identity(section) -> dict:
    """A settings section's fields that are physics: all but those it names in
    ``NOT_IDENTITY`` (how a run is executed, e.g. solver threads), so that changing them
    leaves a stored study resumable, and but those of ``IDENTITY_OMIT_DEFAULTS`` at the value
    that reproduces the studies stored before the field existed."""
    dumped = section.model_dump(exclude=set(getattr(section, "NOT_IDENTITY", ())))
    for key, legacy in getattr(section, "IDENTITY_OMIT_DEFAULTS", {}).items():
        if key in dumped and dumped[key] == legacy:  # added later, at the stored studies' behaviour
            dumped.pop(key)
    return dumped


def dataset_digest(loaded: LoadedStudy) -> str:
    """sha256 of what the study uses from its dataset (canonical JSON; the stage says what:
    ``Stage.dataset_identity``). Edits to the file that do not touch it leave the study
    resumable."""
    used = loaded.stage.dataset_identity(loaded)
    return hashlib.sha256(json.dumps(used, sort_keys=True, default=str).encode()).hexdigest()
