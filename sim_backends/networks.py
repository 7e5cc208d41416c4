"""Phase networks of a voxel image of an electrode film (seed Fig. 3d, Fig. S4).

- **SE network**: the solid electrolyte's 6-connected clusters, x and y periodic
  (``cc3d``, connected-components-3d); a cluster *percolates* when it touches both z faces
  (collector and film top). Reported: the fraction of SE voxels in percolating clusters
  (the ionic pathways the seed's SE network model shows), the largest cluster's fraction
  and the number of clusters.
- **Pore network**: PoreSpy's SNOW2 watershed extraction (Gostick, Phys. Rev. E 2017;
  ``porespy.networks.snow2``) on the pore voxels: pore and throat inscribed diameters (um).
  The seed used Avizo; SNOW2 treats the image's faces as walls (not periodic).

Images are indexed (x, y, z), z the film's thickness.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np


def cluster_labels(mask: np.ndarray) -> np.ndarray:
    """6-connected clusters of ``True`` voxels, periodic in x and y only (z is bounded:
    padded with one empty layer at each end before the periodic labelling)."""
    import cc3d

    padded = np.pad(np.asarray(mask, dtype=bool), ((0, 0), (0, 0), (1, 1)))
    labels = cc3d.connected_components(padded, connectivity=6, periodic_boundary=True)
    return labels[:, :, 1:-1]


def percolating_labels(mask: np.ndarray) -> np.ndarray:
    """Boolean image of the voxels in clusters that touch both z faces."""
    labels = cluster_labels(mask)
    both = np.intersect1d(np.unique(labels[:, :, 0]), np.unique(labels[:, :, -1]))
    both = both[both > 0]
    return np.isin(labels, both)


@dataclass(frozen=True)
class PhaseNetwork:
    """Connectivity of one phase: its volume fraction, the fraction of its voxels in
    clusters joining both z faces (``connected_fraction``), the largest cluster's fraction
    of the phase and the number of clusters."""

    volume_fraction: float
    connected_fraction: float
    largest_cluster_fraction: float
    clusters: int


def phase_network(mask: np.ndarray) -> PhaseNetwork:
    """``PhaseNetwork`` of the ``True`` voxels of ``mask`` (x, y, z)."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0:
        return PhaseNetwork(0.0, 0.0, 0.0, 0)
    labels = cluster_labels(mask)
    sizes = np.bincount(labels.ravel())[1:]
    both = np.intersect1d(np.unique(labels[:, :, 0]), np.unique(labels[:, :, -1]))
    both = both[both > 0]
    return PhaseNetwork(float(mask.mean()), float(sizes[both - 1].sum() / n), float(sizes.max() / n),
                        int(np.count_nonzero(sizes)))


@dataclass(frozen=True)
class PoreNetwork:
    """SNOW2 pore network: pore and throat inscribed diameters (um) of the interior pores
    (the boundary pores SNOW2 adds are left out) and the throats between them."""

    pore_diameters_um: tuple[float, ...]
    throat_diameters_um: tuple[float, ...]

    def summary(self) -> dict[str, float]:
        """Counts and the 10/50/90th percentiles of each distribution (um)."""
        out: dict[str, float] = {"pores": float(len(self.pore_diameters_um)),
                                 "throats": float(len(self.throat_diameters_um))}
        for name, values in (("pore", self.pore_diameters_um), ("throat", self.throat_diameters_um)):
            arr = np.asarray(values, dtype=float)
            for q in (10, 50, 90):
                out[f"{name}_d{q}_um"] = float(np.percentile(arr, q)) if arr.size else float("nan")
        return out


def pore_network(pores: np.ndarray, voxel_um: float) -> PoreNetwork:
    """SNOW2 extraction on the ``True`` (pore) voxels at ``voxel_um`` per voxel, serial
    (``parallel_kw=None``): PoreSpy's chunked watershed stitches its chunks with a fixed
    overlap and raises on a film whose pores have almost closed (measured on a 50 %
    calendered smoke film), and these images are small enough for one chunk."""
    import porespy as ps

    pores = np.asarray(pores, dtype=bool)
    if not pores.any():
        return PoreNetwork((), ())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        net = ps.networks.snow2(pores, voxel_size=voxel_um, boundary_width=0, parallel_kw=None).network
    inner = ~np.asarray(net.get("pore.boundary", np.zeros(len(net["pore.coords"]), bool)), dtype=bool)
    conns = np.asarray(net["throat.conns"])
    keep = inner[conns].all(axis=1) if len(conns) else np.zeros(0, bool)
    return PoreNetwork(tuple(float(d) for d in np.asarray(net["pore.inscribed_diameter"])[inner]),
                       tuple(float(d) for d in np.asarray(net["throat.inscribed_diameter"])[keep]))
