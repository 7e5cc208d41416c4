"""Effective transport through a voxel image of an electrode film (seed Sec. 2.4).

The seed solved both problems with GeoDict (ConductoDict, DiffuDict), a commercial code.
calib's open route:

- **SE effective diffusivity and geometric tortuosity**: Fick's law in the SE phase with a
  concentration difference between the outer xy planes, x and y periodic, solved by
  TauFactor (Kench et al., SoftwareX 2023; ``taufactor`` on PyPI, PyTorch on the CPU), its
  ``PeriodicSolver`` (finite differences, successive over-relaxation). D_eff / D_0 =
  j L / (D_0 dc) over the whole cross-section; the seed's geometric tortuosity is
  tau_g = sqrt(eta / (D_eff / D_0)), eta the SE volume fraction (seed Sec. 2.4,
  "tau = sqrt(eta / D_eff)"); TauFactor's own tortuosity factor eta / (D_eff / D_0) is
  tau_g^2.
- **Electronic conductivity**: div(sigma grad phi) = 0 with a potential difference across z
  (collector to film top), x and y periodic; sigma per phase (seed: AM 0.005 S/m, CBD
  15.93 S/m, SE and pores insulating); Ohm's law gives sigma_eff = I L / (A dV) (S/m).
  TauFactor's multi-phase solver is not used: at the seed's 3000:1 contrast its SOR did not
  converge within 20,000 iterations even on an 8 x 8 x 20 two-layer image (flux spread
  2.8 %; measured 2026-12-02, docs/stages/characterise.md) and it holds the lateral
  faces no-flux. ``solve_steady`` uses the same discretisation (harmonic-mean face
  conductances on the 6-neighbour stencil) with periodic x and y, solved by conjugate
  gradients preconditioned with smoothed-aggregation algebraic multigrid (PyAMG, SciPy).

**Contact rule on voxels** (``solve_steady(..., cuts=...)``, ``microstructure.contact_cuts``):
faces between voxels of two beads that do not overlap pass nothing, so the solve joins beads
only where they overlap, the contact networks' rule (``particle_network``); without it two
beads a gap narrower than a voxel apart meet through a face of the grid
(docs/stages/characterise.md#se-transport). TauFactor takes no such cuts; the finite-volume
solve does.

Images are indexed (x, y, z) with z the transport direction (the film's thickness);
TauFactor's transport axis is its first, so images are transposed on the way in.
Validated against exact answers (layered slabs in series and in parallel, straight
channels) and against each other in ``tests/test_transport.py``.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

RTOL = 1e-8
"""Relative residual at which the conjugate-gradient solve stops."""

SOR_ITER_LIMIT = 20_000
"""Cap on TauFactor's SOR iterations (it checks convergence every 100)."""

SOR_CONV_CRIT = 1e-3
"""TauFactor's convergence criterion: the spread of the flux through the voxel layers,
(max - min) / max (its default is 1e-2; it also requires the answer to change by < 2e-3
between checks)."""


@dataclass(frozen=True)
class TransportResult:
    """One steady solve: the effective coefficient (the inputs' units, e.g. S/m; relative to
    D_0 for a binary diffusivity), the conducting volume fraction, iterations, whether
    TauFactor's convergence test passed, the final flux spread across layers and wall time
    (s). ``percolating``: some path of conducting voxels joins the two z faces."""

    effective: float
    volume_fraction: float
    iterations: int
    converged: bool
    flux_spread_rel: float
    wall_s: float
    percolating: bool


def _face_conductances(sigma: np.ndarray, axis: int) -> np.ndarray:
    """Conductance between each voxel and its + neighbour along ``axis`` (x, y: periodic,
    the last layer pairs with the first; z: the last layer has none), per unit voxel edge:
    the harmonic mean 1 / (1/(2 s_i) + 1/(2 s_j)), 0 when either voxel is insulating."""
    nb = np.roll(sigma, -1, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where((sigma > 0) & (nb > 0), 2.0 * sigma * nb / (sigma + nb), 0.0)
    if axis == 2:
        g[:, :, -1] = 0.0
    return g


def _live(conducting: np.ndarray, cuts) -> np.ndarray:
    """The conducting voxels in clusters joining both z faces, faces in ``cuts`` (per axis,
    True: no passage to the + neighbour) not joining."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from .networks import percolating_labels

    if cuts is None:
        return percolating_labels(conducting)
    index = np.full(conducting.shape, -1, dtype=np.int64)
    n = int(conducting.sum())
    index[conducting] = np.arange(n)
    rows, cols = [], []
    for axis in range(3):
        nb = np.roll(index, -1, axis=axis)
        join = conducting & (nb >= 0) & ~cuts[axis]
        if axis == 2:
            join[:, :, -1] = False
        rows.append(index[join])
        cols.append(nb[join])
    graph = sp.coo_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    both = np.intersect1d(comp[index[:, :, 0][conducting[:, :, 0]]], comp[index[:, :, -1][conducting[:, :, -1]]])
    live = np.zeros(conducting.shape, dtype=bool)
    live[conducting] = np.isin(comp, both)
    return live


def solve_steady(sigma: np.ndarray, *, rtol: float = RTOL, cuts=None) -> TransportResult:
    """Effective coefficient of a voxel map of local coefficients ``sigma`` (x, y, z; 0 =
    insulating) between its z faces, x and y periodic: the finite-volume discretisation
    TauFactor uses (harmonic-mean face conductances on the 6-neighbour stencil), with the
    potential fixed at the outer z faces (0 and 1, half a voxel from the first and last
    layer's centres). Only voxels of clusters joining both faces are unknowns (others carry
    no current). Solved by conjugate gradients preconditioned with smoothed-aggregation
    algebraic multigrid (PyAMG), robust to the seed's 3000:1 conductivity contrast.
    ``cuts``: per axis (x, y, z), True where the face to the + neighbour passes nothing (the
    contact rule, ``microstructure.contact_cuts``); None: every face between conducting
    voxels passes.

    sigma_eff = I L / (A dV) with I the current through the bottom face: in the units of
    ``sigma``, independent of the voxel edge. ``flux_spread_rel``: |I_bottom - I_top| / I.
    """
    import pyamg
    import scipy.sparse as sp

    t0 = time.perf_counter()
    sigma = np.asarray(sigma, dtype=float)
    nx, ny, nz = sigma.shape
    frac = float(np.mean(sigma > 0))
    live = _live(sigma > 0, cuts)
    if not live.any():
        return TransportResult(0.0, frac, 0, True, math.nan, time.perf_counter() - t0, False)
    s = np.where(live, sigma, 0.0)
    index = np.full(s.shape, -1, dtype=np.int64)
    n = int(live.sum())
    index[live] = np.arange(n)
    diag = np.zeros(n)
    rows, cols, vals = [], [], []
    for axis in range(3):
        g = _face_conductances(s, axis)
        if cuts is not None:
            g[cuts[axis]] = 0.0
        j = np.roll(index, -1, axis=axis)
        pair = g > 0
        a, b, w = index[pair], j[pair], g[pair]
        rows += [a, b]
        cols += [b, a]
        vals += [-w, -w]
        np.add.at(diag, a, w)
        np.add.at(diag, b, w)
    bottom, top = 2.0 * s[:, :, 0], 2.0 * s[:, :, -1]  # face half a voxel away: conductance 2 sigma
    on_b, on_t = live[:, :, 0], live[:, :, -1]
    np.add.at(diag, index[:, :, 0][on_b], bottom[on_b])
    np.add.at(diag, index[:, :, -1][on_t], top[on_t])
    rhs = np.zeros(n)
    np.add.at(rhs, index[:, :, -1][on_t], top[on_t] * 1.0)  # phi = 1 at the top face, 0 at the bottom
    A = sp.csr_matrix((np.concatenate([diag, *vals]),
                       (np.concatenate([np.arange(n), *rows]), np.concatenate([np.arange(n), *cols]))),
                      shape=(n, n))
    ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric")
    residuals: list[float] = []
    phi = ml.solve(rhs, tol=rtol, accel="cg", maxiter=500, residuals=residuals)
    i_bottom = float(np.sum(bottom[on_b] * phi[index[:, :, 0][on_b]]))
    i_top = float(np.sum(top[on_t] * (1.0 - phi[index[:, :, -1][on_t]])))
    current = 0.5 * (i_bottom + i_top)
    converged = residuals[-1] <= rtol * max(residuals[0], 1e-300)
    return TransportResult(current * nz / (nx * ny), frac, len(residuals) - 1, bool(converged),
                           abs(i_bottom - i_top) / current, time.perf_counter() - t0, True)


def effective_conductivity(labels: np.ndarray, conductivity: Mapping[int, float], *,
                           rtol: float = RTOL) -> TransportResult:
    """Effective conductivity (units of ``conductivity``, e.g. S/m) of a labelled image
    (x, y, z) between its z faces, x and y periodic. ``conductivity``: label -> sigma > 0;
    labels not in it (pores, SE) are insulating. No percolating conducting path: 0."""
    if any(not (c > 0 and math.isfinite(c)) for c in conductivity.values()):
        raise ValueError("conductivities must be positive and finite")
    sigma = np.zeros(labels.shape, dtype=float)
    for lab, c in conductivity.items():
        sigma[labels == lab] = c
    return solve_steady(sigma, rtol=rtol)


def relative_diffusivity(mask: np.ndarray, *, iter_limit: int = SOR_ITER_LIMIT,
                         conv_crit: float = SOR_CONV_CRIT) -> TransportResult:
    """D_eff / D_0 of the ``True`` phase of a binary image (x, y, z) between its z faces,
    x and y periodic (Fick's law in that phase alone, over the whole cross-section), from
    TauFactor's ``PeriodicSolver``. No percolating path (checked first, with periodic
    clusters): 0."""
    import taufactor

    from .networks import percolating_labels

    mask = np.asarray(mask, dtype=bool)
    frac = float(mask.mean())
    t0 = time.perf_counter()
    if not percolating_labels(mask).any():
        return TransportResult(0.0, frac, 0, True, math.nan, time.perf_counter() - t0, False)
    solver = taufactor.PeriodicSolver(np.ascontiguousarray(np.moveaxis(mask, 2, 0)).astype(np.uint8), device="cpu")
    with contextlib.redirect_stdout(io.StringIO()):  # TauFactor prints its progress
        solver.solve(iter_limit=iter_limit, verbose=False, conv_crit=conv_crit)
    flux = np.asarray(solver.flux_1d)[0]
    spread = float((flux.max() - flux.min()) / flux.max()) if flux.max() > 0 else math.nan
    return TransportResult(float(np.asarray(solver.D_rel).ravel()[0]), frac, int(solver.iter),
                           bool(solver.converged), spread, time.perf_counter() - t0, True)


def se_relative_diffusivity(mask: np.ndarray, *, iter_limit: int = SOR_ITER_LIMIT) -> tuple[TransportResult, str]:
    """D_eff / D_0 of the ``True`` phase and which solver gave it: TauFactor's
    (``relative_diffusivity``); where TauFactor stops unconverged or with a non-finite value,
    the finite-volume solve's (``fv_relative_diffusivity``, conjugate gradients with AMG,
    within 1 % of TauFactor where both converge, ``tests/test_transport.py``). Seen on a smoke
    film calendered 30 %: TauFactor NaN after 20,000 SOR iterations on its rank and power
    images alike, the finite-volume solve 0.0165 in 1 s."""
    tf = relative_diffusivity(mask, iter_limit=iter_limit)
    if tf.converged and math.isfinite(tf.effective):
        return tf, "taufactor"
    fv = fv_relative_diffusivity(mask)
    why = (f"TauFactor gave NaN after {tf.iterations} iterations" if not math.isfinite(tf.effective)
           else f"TauFactor gave {tf.effective:.3g}, unconverged after {tf.iterations} iterations")
    return TransportResult(fv.effective, fv.volume_fraction, fv.iterations, fv.converged, fv.flux_spread_rel,
                           fv.wall_s + tf.wall_s, fv.percolating), f"finite volumes ({why})"


def fv_relative_diffusivity(mask: np.ndarray, *, rtol: float = RTOL, cuts=None) -> TransportResult:
    """The same D_eff / D_0 from ``solve_steady`` (the conductivity solver with sigma = 1
    in the phase): the independent check of TauFactor's answer, and the solve that takes
    the contact rule's ``cuts``."""
    return solve_steady(np.asarray(mask, dtype=bool).astype(float), rtol=rtol, cuts=cuts)


def geometric_tortuosity(volume_fraction: float, d_rel: float) -> float:
    """The seed's geometric tortuosity tau_g = sqrt(eta / (D_eff / D_0)) (seed Sec. 2.4),
    eta the phase's volume fraction; infinite when nothing percolates (D_eff = 0)."""
    if d_rel <= 0:
        return math.inf
    return math.sqrt(volume_fraction / d_rel)
