"""Random placement of beads without overlaps in a periodic box, written as a LAMMPS data file.

Seed Sec. 2.2: beads are placed at random in a large box (716 x 716 x 1000 um for the
paper's 5089 beads) so that none overlap; the NPT run then compacts the slurry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .beads import BeadSystem

PAPER_BOX_UM = (716.0, 716.0, 1000.0)
PAPER_N_BEADS = 5089


@dataclass(frozen=True)
class Placement:
    """Bead positions in an orthogonal periodic box [0, L) per axis (um)."""

    box_um: tuple[float, float, float]
    type_ids: np.ndarray  # (n,) int
    diameters_um: np.ndarray  # (n,) float
    densities: np.ndarray  # (n,) float, LAMMPS per-atom density (pg um^-3)
    positions_um: np.ndarray  # (n, 3) float


def paper_scaled_box(n_beads: int) -> tuple[float, float, float]:
    """The seed's initial box scaled to ``n_beads`` at the same number density (um)."""
    s = (n_beads / PAPER_N_BEADS) ** (1.0 / 3.0)
    return (PAPER_BOX_UM[0] * s, PAPER_BOX_UM[1] * s, PAPER_BOX_UM[2] * s)


def place_random(system: BeadSystem, box_um: tuple[float, float, float], seed: int,
                 max_tries_per_bead: int = 10_000) -> Placement:
    """Place every bead uniformly at random, rejecting overlaps (periodic minimum image).

    Largest beads go first so the rejection rate stays low. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    box = np.asarray(box_um, dtype=float)
    order = sorted(system.types, key=lambda t: t.diameter_um, reverse=True)
    type_ids = np.concatenate([np.full(t.count, t.type_id, dtype=int) for t in order]) if order else np.zeros(0, int)
    diam = np.concatenate([np.full(t.count, t.diameter_um) for t in order])
    dens = np.concatenate([np.full(t.count, t.lammps_density) for t in order])
    n = len(type_ids)
    pos = np.empty((n, 3))
    for k in range(n):
        for _ in range(max_tries_per_bead):
            trial = rng.random(3) * box
            if k == 0:
                break
            delta = pos[:k] - trial
            delta -= box * np.round(delta / box)
            dist2 = np.einsum("ij,ij->i", delta, delta)
            if np.all(dist2 >= (0.5 * (diam[:k] + diam[k])) ** 2):
                break
        else:
            raise RuntimeError(f"could not place bead {k} without overlap in box {box_um}")
        pos[k] = trial
    return Placement(tuple(float(x) for x in box), type_ids, diam, dens, pos)


def write_data_file(path: Path, placement: Placement, n_types: int) -> None:
    """Write a LAMMPS ``atom_style sphere`` data file (id type diameter density x y z)."""
    lx, ly, lz = placement.box_um
    lines = [
        "calib bead system (units micro: um, pg um^-3)",
        "",
        f"{len(placement.type_ids)} atoms",
        f"{n_types} atom types",
        "",
        f"0 {lx:.10g} xlo xhi",
        f"0 {ly:.10g} ylo yhi",
        f"0 {lz:.10g} zlo zhi",
        "",
        "Atoms # sphere",
        "",
    ]
    for i, (t, d, rho, (x, y, z)) in enumerate(
        zip(placement.type_ids, placement.diameters_um, placement.densities, placement.positions_um), start=1
    ):
        lines.append(f"{i} {t} {d:.10g} {rho:.10g} {x:.10g} {y:.10g} {z:.10g}")
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class SphereData:
    """Spheres of an ``atom_style sphere`` data file: box corners (um), type, diameter (um)
    and position (um) per atom, as written (inside the box; image flags ignored)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    types: np.ndarray
    diameters: np.ndarray
    positions: np.ndarray


def read_sphere_data(path: Path) -> SphereData:
    """Read the box and the Atoms section (id type diameter density x y z [ix iy iz]) of an
    orthogonal ``atom_style sphere`` data file, such as ``write_data`` output."""
    lines = Path(path).read_text().splitlines()
    lo, hi = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    rows: list[list[float]] = []
    in_atoms = False
    for line in lines:
        text = line.split("#")[0].strip()
        if not in_atoms:
            for ax, tag in enumerate(("xlo xhi", "ylo yhi", "zlo zhi")):
                if line.rstrip().endswith(tag):
                    a, b = line.split()[:2]
                    lo[ax], hi[ax] = float(a), float(b)
            if line.startswith("Atoms"):
                in_atoms = True
            continue
        if not text:
            if rows:
                break
            continue
        if text[0].isalpha():
            break
        rows.append([float(v) for v in text.split()])
    if not rows:
        raise ValueError(f"{path}: no Atoms section")
    a = np.array(rows)
    return SphereData(tuple(lo), tuple(hi), a[:, 1].astype(int), a[:, 2], a[:, 4:7])  # type: ignore[arg-type]
