"""Chained stages: where a drying or calendering study starts, and the record of it.

A chained study names its upstream: the best trial of another study in the ledger, or a
state data file. ``resolve_upstream`` finds the state file, checks that it was built from
the same composition as this study's dataset, and returns its ``Lineage`` (upstream study,
trial number, MLflow run id, the file's sha256), which every trial and its MLflow run
carry. Any problem is an ``InputError`` (exit 2, nothing written).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.placement import read_sphere_data

from . import ledger
from .errors import InputError

if TYPE_CHECKING:
    from .study import LoadedStudy

STATE_FILE = "final.data"
"""The state a finished slurry, drying or calendering trial leaves in its directory."""


@dataclass(frozen=True)
class Lineage:
    """The state a chained trial starts from: the upstream stage, study and trial (None
    for a plain data file), its MLflow run id (if it was tracked), the state file and its
    sha256."""

    stage: str
    study: str | None
    trial: int | None
    mlflow_run_id: str | None
    state_file: str
    sha256: str

    def as_dict(self) -> dict:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """MLflow tags (``upstream.*``)."""
        return {f"upstream.{k}": str(v) for k, v in self.as_dict().items() if v is not None}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_composition(state: Path, expected: BeadSystem, what: str) -> None:
    """The state's atom types, counts per type and diameters must be those ``expected``
    (the study's dataset built at the state's bead count): otherwise it comes from another
    composition or stage. Raises ``InputError`` naming the state file."""
    try:
        data = read_sphere_data(state)
    except (OSError, ValueError, IndexError) as exc:  # IndexError: Atoms rows with too few columns
        raise InputError(str(state), "(file)", f"not a readable LAMMPS sphere data file ({exc})") from exc
    if data.positions.ndim != 2 or data.positions.shape[1] != 3:
        raise InputError(str(state), "Atoms", "rows must read id type diameter density x y z (atom_style sphere)")
    check_finite(state)
    n_types = len(expected.types)
    if data.types.max(initial=0) > n_types or len(data.types) != expected.n_beads:
        raise InputError(str(state), "Atoms", f"{len(data.types)} atoms of {int(data.types.max(initial=0))} types, "
                                              f"but {what} has {expected.n_beads} beads of {n_types} types")
    for t in expected.types:
        sel = data.types == t.type_id
        count = int(sel.sum())
        if count != t.count:
            raise InputError(str(state), "Atoms", f"type {t.type_id} ({t.phase}) has {count} beads, {what} has "
                                                  f"{t.count}: the state comes from another composition")
        if count and not np.allclose(data.diameters[sel], t.diameter_um, rtol=1e-6):
            raise InputError(str(state), "Atoms", f"type {t.type_id} ({t.phase}) beads are "
                                                  f"{float(data.diameters[sel][0]):g} um, {what} has "
                                                  f"{t.diameter_um:g} um: the state comes from another "
                                                  "composition or stage")


def check_finite(state: Path) -> None:
    """Every number of a data file (box, masses, atoms, velocities) must be finite: LAMMPS
    would start from a NaN position or an infinite diameter and fail later, in a trial.
    ``InputError`` naming the file and line otherwise."""
    lines = Path(state).read_text(errors="replace").splitlines()
    for n, line in enumerate(lines[1:], start=2):  # line 1: the title
        words = line.split("#")[0].split()
        try:
            float(words[0]) if words else None
        except ValueError:  # a section or header keyword line
            continue
        for w in words:
            try:
                v = float(w)
            except ValueError:
                continue
            if not math.isfinite(v):
                raise InputError(str(state), f"line {n}", f"{w!r} is not a finite number")


def state_bead_count(state: Path) -> int:
    """Number of atoms in a data file (header line ``N atoms``)."""
    for line in Path(state).read_text(errors="replace").splitlines()[:40]:
        parts = line.split()
        if len(parts) == 2 and parts[1] == "atoms":
            try:
                n = int(parts[0])
            except ValueError:
                break
            if n > 0:
                return n
            break
    raise InputError(str(state), "(header)", "no 'N atoms' line: not a LAMMPS data file")


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
