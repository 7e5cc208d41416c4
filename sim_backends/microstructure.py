"""Voxelised microstructure of a sphere packing: porosity, its profile along z and per-phase
volume fractions (groundwork for the drying and calendering stages; seed Fig. 3a-c).

The box is periodic in x and y and bounded in z (current collector at the bottom). Voxels
are cubes of edge ``resolution_um``; a voxel belongs to a sphere when its centre lies inside
the sphere. Where spheres of different phases overlap, the phase with the larger solid
fraction wins (a dense particle is not made porous by a CBD bead around it). A phase's
solid fraction is 1 for AM and SE and 1 - nanoporosity for CBD (seed: CBD counted as 50 %
nanoporous), so porosity = 1 - sum over voxels of their phase's solid fraction / voxels.
(The group's public porosity script, ``Calendering/pores_cal.py``, likewise gives an AM-CBD
overlap to the AM; for SE, which it does not have, the tie between AM and SE goes to SE by
name.) ``voxelise(..., overlap="power")`` instead splits every overlap lens along the radical
plane of its two spheres (the geometry of ``particle_network``); docs/stages/characterise.md#overlaps
measures what the choice moves. ``voxelise(..., owners=True)`` also records which sphere painted
each voxel, and ``contact_cuts`` turns that into the faces a transport solve must not pass
(the contact rule: beads join only where they overlap).

Painting is vectorised per sphere (a small block of voxels around it), never a Python loop
over voxels. Memory: one byte per voxel; ``voxelise`` refuses a grid over ``max_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


class GridTooLarge(ValueError):
    """The requested resolution needs more memory than allowed."""


@dataclass(frozen=True)
class Packing:
    """Spheres in a box: centres (um, shape (n, 3)), radii (um), phase name per sphere; box
    lower and upper corners (um)."""

    centres: np.ndarray
    radii: np.ndarray
    phases: tuple[str, ...]
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.centres.shape != (len(self.radii), 3) or len(self.phases) != len(self.radii):
            raise ValueError("centres must be (n, 3) with one radius and one phase per sphere")
        if any(h <= lo for lo, h in zip(self.lo, self.hi)):
            raise ValueError("box hi must exceed lo on every axis")


@dataclass(frozen=True)
class Voxels:
    """Voxel labels (0 = pore, k = phase ``names[k - 1]``), shape (nx, ny, nz), and the grid."""

    labels: np.ndarray
    names: tuple[str, ...]
    resolution_um: float
    lo: tuple[float, float, float]
    owner: np.ndarray | None = None
    """Per voxel, the index of the sphere that painted it (-1: pore); only with
    ``voxelise(owners=True)``."""

    def z_centres_um(self) -> np.ndarray:
        return self.lo[2] + (np.arange(self.labels.shape[2]) + 0.5) * self.resolution_um


def grid_shape(packing: Packing, resolution_um: float) -> tuple[int, int, int]:
    """Voxels per axis (the box edge divided by the resolution, rounded to nearest, >= 1)."""
    return tuple(max(1, int(round((h - lo) / resolution_um))) for lo, h in zip(packing.lo, packing.hi))  # type: ignore[return-value]


def grid_bytes(packing: Packing, resolution_um: float) -> int:
    """Memory of the label grid (one byte per voxel)."""
    return math.prod(grid_shape(packing, resolution_um))


def voxelise(packing: Packing, resolution_um: float, solid_fraction: Mapping[str, float],
             max_bytes: int = 2 * 1024**3, overlap: str = "rank", owners: bool = False) -> Voxels:
    """Label every voxel with the phase covering its centre (see the module docstring).

    resolution_um: voxel edge; the x and y edges are adjusted so that whole voxels tile the
    periodic box exactly (z likewise). solid_fraction: per phase, used only to rank phases
    where they overlap. overlap: who gets a voxel covered by several spheres: ``rank`` (the
    phase of larger solid fraction, ties by name), ``power`` (the sphere of least power
    distance |x - c|^2 - r^2: an overlap lens is split along the radical plane, the plane
    of the two spheres' intersection circle, so each bead is a sphere truncated at its contact
    discs, the geometry of ``particle_network``) or ``rank-power`` (the phase of larger solid
    fraction, ties between phases of equal solid fraction by the radical plane). ``owners``: also
    record which sphere painted each voxel (``Voxels.owner``; what ``contact_cuts`` needs).
    Raises ``GridTooLarge`` when the grid exceeds ``max_bytes`` (``power`` needs 4 more bytes
    per voxel, ``owners`` 4 more; counted).
    """
    if not resolution_um > 0:
        raise ValueError("resolution_um must be positive")
    if overlap not in ("rank", "power", "rank-power"):
        raise ValueError(f"overlap must be 'rank', 'power' or 'rank-power', not {overlap!r}")
    need = grid_bytes(packing, resolution_um) * (1 + (0 if overlap == "rank" else 4) + (4 if owners else 0))
    if need > max_bytes:
        raise GridTooLarge(f"a {resolution_um:g} um grid needs {need / 1024**3:.2f} GiB, over the "
                           f"{max_bytes / 1024**3:.2f} GiB allowed")
    shape = grid_shape(packing, resolution_um)
    edge = np.array([(h - lo) / n for lo, h, n in zip(packing.lo, packing.hi, shape)])
    lo = np.asarray(packing.lo, dtype=float)
    names = tuple(sorted(set(packing.phases), key=lambda p: (solid_fraction.get(p, 1.0), p)))
    code = {p: i + 1 for i, p in enumerate(names)}
    labels = np.zeros(shape, dtype=np.uint8)
    power = None if overlap == "rank" else np.full(shape, np.inf, dtype=np.float32)
    owner = np.full(shape, -1, dtype=np.int32) if owners else None
    # solid-fraction level per label (pore: below every phase); "power" ranks nothing
    level = np.array([-1.0, *(solid_fraction.get(p, 1.0) if overlap == "rank-power" else 0.0 for p in names)])
    order = np.argsort([code[p] for p in packing.phases], kind="stable")  # densest painted last
    for s in order:
        c, r, k = packing.centres[s], float(packing.radii[s]), code[packing.phases[s]]
        axes = []
        for ax in range(3):
            first = math.ceil((c[ax] - r - lo[ax]) / edge[ax] - 0.5)
            last = math.floor((c[ax] + r - lo[ax]) / edge[ax] - 0.5)
            idx = np.arange(first, last + 1)
            d = lo[ax] + (idx + 0.5) * edge[ax] - c[ax]
            if ax < 2:  # periodic: wrap, one image per voxel
                idx = np.mod(idx, shape[ax])
                if len(idx) > shape[ax]:
                    raise ValueError(f"sphere {s} is wider than the periodic box")
            else:
                keep = (idx >= 0) & (idx < shape[2])
                idx, d = idx[keep], d[keep]
            axes.append((idx, d))
        (ix, dx), (iy, dy), (iz, dz) = axes
        if not (len(ix) and len(iy) and len(iz)):
            continue
        pw = dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2 - r * r
        inside = pw <= 0
        sel = np.ix_(ix, iy, iz)
        block = labels[sel]
        if power is not None:
            best = power[sel]
            mine, theirs = level[k], level[block]
            inside &= (theirs < mine) | ((theirs == mine) & (pw < best))
            best[inside] = pw[inside]
            power[sel] = best
        block[inside] = k
        labels[sel] = block
        if owner is not None:
            ob = owner[sel]
            ob[inside] = s
            owner[sel] = ob
    return Voxels(labels, names, float(edge[2]), tuple(packing.lo), owner)


def contact_cuts(vox: Voxels, centres: np.ndarray, radii: np.ndarray,
                 box_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The contact rule on a voxel image: per axis (x, y, z), a boolean image that is True
    where the face between a voxel and its + neighbour (x, y periodic) separates two spheres
    whose solid spheres (``centres``, um; ``radii``, um; x and y periodic with periods
    ``box_xy``) do not overlap. A transport solve that cuts those faces joins beads only where
    they overlap, the network's rule (``particle_network``, ``touch_gap_um: 0``): without the
    cuts two beads a gap narrower than a voxel apart meet through a face of the grid, and the
    solve has no grid limit (docs/stages/characterise.md#se-transport). ``vox`` needs
    ``owner`` (``voxelise(owners=True)``) and the same sphere order as ``centres``."""
    if vox.owner is None:
        raise ValueError("contact_cuts needs the voxels' owners: voxelise(..., owners=True)")
    centres, radii = np.asarray(centres, float), np.asarray(radii, float)
    period = np.array([box_xy[0], box_xy[1], math.inf])
    cuts = []
    for axis in range(3):
        own, nb = vox.owner, np.roll(vox.owner, -1, axis=axis)
        cut = np.zeros(own.shape, dtype=bool)
        face = (own >= 0) & (nb >= 0) & (own != nb)
        if axis == 2:
            face[:, :, -1] = False
        a, b = own[face], nb[face]
        delta = centres[b] - centres[a]
        delta[:, :2] -= period[:2] * np.round(delta[:, :2] / period[:2])
        cut[face] = np.linalg.norm(delta, axis=1) >= radii[a] + radii[b]
        cuts.append(cut)
    return cuts[0], cuts[1], cuts[2]


def phase_fractions(vox: Voxels, axis_profile: bool = False) -> dict[str, np.ndarray | float]:
    """Volume fraction of each phase (and ``pore``), over the box or, with
    ``axis_profile``, per z layer (arrays of length nz)."""
    axes = (0, 1) if axis_profile else None
    n = vox.labels.shape[0] * vox.labels.shape[1] * (1 if axis_profile else vox.labels.shape[2])
    out: dict[str, np.ndarray | float] = {"pore": np.sum(vox.labels == 0, axis=axes) / n}
    for i, name in enumerate(vox.names):
        out[name] = np.sum(vox.labels == i + 1, axis=axes) / n
    return out


def porosity(vox: Voxels, solid_fraction: Mapping[str, float], axis_profile: bool = False) -> np.ndarray | float:
    """Porosity = 1 - sum_phase fraction x solid fraction (CBD: 1 - nanoporosity); over the
    box or per z layer."""
    fr = phase_fractions(vox, axis_profile)
    solid = sum(fr[name] * solid_fraction.get(name, 1.0) for name in vox.names)
    return 1.0 - solid


def exact_solid_volume(radii: Sequence[float]) -> float:
    """Summed sphere volumes (um^3), for non-overlapping spheres inside the box."""
    return float(sum(4.0 / 3.0 * math.pi * r**3 for r in radii))


@dataclass(frozen=True)
class ElectrodeStructure:
    """Microstructure of an electrode film on its current collector (z = collector plane
    at 0). thickness_um: top of the highest bead (simulation diameter) above the collector.
    porosity: over the film (collector to top), CBD counted with its nanoporosity.
    fractions: volume fraction of each phase and of ``pore`` (voxel labels, CBD whole).
    z_um, porosity_profile, phase_profiles: per voxel layer (seed Fig. 3a-c)."""

    thickness_um: float
    porosity: float
    fractions: dict[str, float]
    z_um: np.ndarray
    porosity_profile: np.ndarray
    phase_profiles: dict[str, np.ndarray]
    resolution_um: float
    voxels: int


def film_voxels(centres: np.ndarray, sim_radii: np.ndarray, solid_radii: np.ndarray, phases: Sequence[str],
                box_lo: Sequence[float], box_hi: Sequence[float], collector_z: float, resolution_um: float,
                nanoporosity: Mapping[str, float], max_bytes: int = 2 * 1024**3, overlap: str = "rank",
                owners: bool = False) -> Voxels:
    """The voxel image of a film from the collector plane to its top (the highest bead's
    simulation surface), beads painted with their ``solid_radii`` (see
    ``electrode_structure``), overlaps by ``overlap``, owners if asked (``voxelise``)."""
    top = float(np.max(centres[:, 2] + sim_radii))
    packing = Packing(np.asarray(centres, dtype=float), np.asarray(solid_radii, dtype=float), tuple(phases),
                      (float(box_lo[0]), float(box_lo[1]), float(collector_z)),
                      (float(box_hi[0]), float(box_hi[1]), top))
    solid = {p: 1.0 - float(nanoporosity.get(p, 0.0)) for p in set(phases)}
    return voxelise(packing, resolution_um, solid, max_bytes=max_bytes, overlap=overlap, owners=owners)


def electrode_structure(centres: np.ndarray, sim_radii: np.ndarray, solid_radii: np.ndarray,
                        phases: Sequence[str], box_lo: Sequence[float], box_hi: Sequence[float],
                        collector_z: float, resolution_um: float, nanoporosity: Mapping[str, float],
                        max_bytes: int = 2 * 1024**3) -> ElectrodeStructure:
    """Voxelise a film (periodic x, y between ``box_lo`` and ``box_hi``) from the collector
    plane to its top. ``solid_radii`` are the radii that count as solid (AM and SE without
    their slurry solvent shell); ``sim_radii`` set the film top. ``nanoporosity`` per phase
    (seed: CBD 0.5). Raises ``GridTooLarge`` past ``max_bytes``."""
    top = float(np.max(centres[:, 2] + sim_radii))
    thickness = top - collector_z
    solid = {p: 1.0 - float(nanoporosity.get(p, 0.0)) for p in set(phases)}
    vox = film_voxels(centres, sim_radii, solid_radii, phases, box_lo, box_hi, collector_z, resolution_um,
                      nanoporosity, max_bytes)
    fr = phase_fractions(vox)
    prof = phase_fractions(vox, axis_profile=True)
    return ElectrodeStructure(
        thickness_um=thickness,
        porosity=float(porosity(vox, solid)),
        fractions={k: float(v) for k, v in fr.items()},
        z_um=vox.z_centres_um() - collector_z,
        porosity_profile=np.asarray(porosity(vox, solid, axis_profile=True)),
        phase_profiles={k: np.asarray(v) for k, v in prof.items()},
        resolution_um=vox.resolution_um,
        voxels=int(vox.labels.size),
    )
