"""The state a chained stage starts from, as the stages see it: the state file's name, the
``Lineage`` record every chained trial and its MLflow run carry, and the checks of a state
file against the study's composition. Finding the state (``calib.study.upstream.resolve_upstream``)
is the study's business; checking and recording it is the stages'.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.placement import read_sphere_data

from calib.core.errors import InputError

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
