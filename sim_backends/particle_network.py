"""Electronic conductivity of a bead packing as a network of its contacts (issue 27).

A voxel solve of beads that touch without overlapping has no grid limit: they conduct
through contacts far smaller than a voxel, and its answer falls with every halving of the
voxel (the dried dev film: -26 % from 0.5 to 0.25 um; docs/stages/characterise.md). This
model makes the contact rule for such beads explicit; it is the characterise stage's
conductivity (``conductivity_method: network``, the default). It needs no voxels (in the
spirit of particle resistor networks for sintered or overlapping spheres, e.g. Birkholz et al., Powder
Technology 2021), but does not put one node at each bead's centre: a centre node gives every
neck the whole bead body, which is 21 % too conductive on an FCC packing with necks of 0.22
radii and gives a conductivity above the solid's at 0.44 (measured against voxel solves,
``tests/test_particle_network.py``). Instead:

- **Nodes** are the contacts: each **neck** between two conducting beads whose solid spheres
  overlap (x and y periodic; the neck is the disc where the two spheres meet, at distance
  h_i = (d^2 + r_i^2 - r_j^2) / (2 d) from centre i), and each disc where a conducting bead
  crosses an **electrode** plane (the current collector z0, potential 0; the film's top z1,
  potential 1). **Contact rule** for beads that touch without overlapping (gap d - r_i -
  r_j <= ``touch_gap_um``): a neck of ``touch_radius_rel`` x the smaller radius; the
  defaults (0, 0) join overlapping beads only.
- **Each bead is a k-terminal element** joining its k contacts (Kirchhoff: its currents sum
  to 0; a bead wholly inside another has no cell of its own in this geometry and takes no
  part, ``engulfed_beads``). Its contacts' potentials are V_p = V_0 + sum_q Z_pq I_q with, for a sphere of radius
  r and conductivity sigma, the surface Neumann function of the sphere between contacts p and
  q at angle theta apart (s = sin(theta / 2); the potential of a unit current entering at one
  surface point and leaving uniformly over the surface):
      Z_pq = (1 / (4 pi sigma r)) (1 / s - ln(s (1 + s))),
  and on the diagonal the contact's own resistance, chosen so that a bead of two opposite
  contacts (an infinite chain of overlapping spheres, where by symmetry the neck planes and
  the equator are equipotential) is exact:
      Z_pp = R_half(a_p / r) + Z(theta = pi),  R_half = g(a / r) / (4 sigma a),
  g the equator-to-neck resistance of a truncated sphere in units of Holm's constriction
  resistance 1 / (4 sigma a): g -> 1 as a / r -> 0 (Holm), g(1) = 0, tabulated in ``NECK_G``
  from axisymmetric finite-volume solves (``neck_half_resistance``). The bead's admittance is
  the pseudo-inverse of Z on currents that sum to zero.
- **Solve**: the beads' admittances assembled over the contacts, electrode contacts held at
  0 and 1 (conjugate gradients with classical algebraic multigrid over the contacts joined to
  both electrodes, a sparse direct solve where that fails);
  sigma_eff = I (z1 - z0) / (Lx Ly).

Lengths in um, conductivities in S/m; admittances come out in S/m x um and sigma_eff in S/m.
Measured against voxel solves of the same periodic packings (``tests/test_particle_network.py``):
exact on a chain; within 3 % on SC (six necks of 0.44 radii), BCC (eight of 0.44) and FCC
(twelve of 0.22); too conductive by 7 % on SC with necks of 0.6 radii and by 9 % on FCC with
twelve of 0.44, packings nearly solid (solid fractions above 0.9), where the necks cover much
of each bead.

**The films' geometry** (``cut_by_neighbours=True``). Calendered dev films overlap far beyond
that range, and insulating SE beads overlap the conductors. With the beads cut along the
radical planes of every bead overlapping them (the power rule of
``microstructure.voxelise(overlap="power")``): each contact disc keeps the part outside third
beads' cells (its own resistance then uses the open part's equivalent radius), and each
conductor's conductivity is scaled by the fraction of its sphere the insulators leave it (a
linear scaling: the exponent chosen on one film, see docs/stages/characterise.md#overlaps).
Against the power-rule voxel solves of two dev films (calendered 30 % and 50 % at the public
plane speed; ``bench/overlap_rules.py``): +0.2 % and +1.6 % (the latter against 0.125 um
voxels, the voxel value still rising with the resolution; +0.8 % against its extrapolation);
on two of the stage's own dev films -0.4 % and +3.3 %. Without the cuts, and ignoring
the SE, it read 7.19e-3 S/m on the 30 % film, 14 % above that film's 6.3e-3.

**The SE's ions** take the same network with the SE beads conducting and the rest insulating
(``sim_backends.characterise``); the kept-volume scaling is then kept ^ 0.5
(``kept_exponent``; ``characterise.ION_KEPT_EXPONENT``), within 3.7 % of converged voxel
solves with the same contact rule on eight dev films (``bench/se_network.py``,
docs/stages/characterise.md#se-transport).

**The slab.** Beads whose sphere reaches into [z0, z1] take part, also those centred beyond a
plane (each gets a disc at the plane, on its side towards the slab, and is otherwise modelled
as a whole sphere); necks outside the slab are left out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

RTOL = 1e-10
"""Relative residual at which the conjugate-gradient solve stops."""

NECK_G: tuple[tuple[float, float], ...] = (
    (0.05, 1.05127), (0.1, 1.07309), (0.15, 1.08825), (0.2, 1.09435), (0.3, 1.08868), (0.4, 1.06463),
    (0.5, 1.02026), (0.6, 0.95493), (0.7, 0.8634), (0.8, 0.73566), (0.9, 0.54304), (0.95, 0.39281))
"""(a / r, g): a sphere of radius r cut at a neck of radius a has resistance g / (4 sigma a)
between its equatorial plane and the neck, both equipotential. From ``neck_half_resistance``
on cells of r / 1600 (a / r <= 0.1) and r / 800 (the rest), 2026-12-06; at half that
resolution every value is within 0.4 % of these (finer is lower)."""


def neck_half_resistance(eps: float, n: int) -> float:
    """Resistance (sigma = 1, r = 1) of a unit sphere between its equatorial plane (z = 0)
    and the plane z = sqrt(1 - eps^2), where its cross-section has radius eps, both
    equipotential, the spherical surface insulating: an axisymmetric finite-volume solve on
    cells of r / n (the cells whose centre lies inside the sphere; the top electrode touches
    the last layer's cells inside the cut disc), conjugate gradients with algebraic multigrid."""
    import pyamg
    import scipy.sparse as sp

    if not 0 < eps < 1:
        raise ValueError(f"the neck's radius over the sphere's must lie in (0, 1), got {eps}")
    h = math.sqrt(1.0 - eps * eps)
    d = 1.0 / n
    nz = max(1, math.ceil(h / d))
    dz = h / nz
    rc = (np.arange(n) + 0.5) * d
    zc = (np.arange(nz) + 0.5) * dz
    act = rc[:, None] ** 2 + zc[None, :] ** 2 <= 1.0
    idx = np.full(act.shape, -1, dtype=np.int64)
    size = int(act.sum())
    idx[act] = np.arange(size)
    area = math.pi * d * d * (2 * np.arange(n) + 1)  # the annulus of each radial cell
    radial = act[:-1, :] & act[1:, :]
    g_r = np.broadcast_to((2 * math.pi * (np.arange(1, n) * d) * dz / d)[:, None], radial.shape)
    axial = act[:, :-1] & act[:, 1:]
    g_z = np.broadcast_to((area / dz)[:, None], axial.shape)
    i = np.concatenate([idx[:-1, :][radial], idx[:, :-1][axial]])
    j = np.concatenate([idx[1:, :][radial], idx[:, 1:][axial]])
    w = np.concatenate([g_r[radial], g_z[axial]])
    diag = np.zeros(size)
    np.add.at(diag, i, w)
    np.add.at(diag, j, w)
    to_face = 2.0 * area / dz  # from a cell to the electrode half a cell away
    bottom = act[:, 0]
    top = act[:, -1] & (rc <= eps)
    np.add.at(diag, idx[bottom, 0], to_face[bottom])
    np.add.at(diag, idx[top, -1], to_face[top])
    rhs = np.zeros(size)
    np.add.at(rhs, idx[top, -1], to_face[top])
    a = sp.csr_matrix((np.concatenate([diag, -w, -w]),
                       (np.concatenate([np.arange(size), i, j]), np.concatenate([np.arange(size), j, i]))),
                      shape=(size, size))
    ml = pyamg.smoothed_aggregation_solver(a, symmetry="symmetric")
    phi = ml.solve(rhs, tol=1e-10, accel="cg", maxiter=2000)
    return 1.0 / float(np.sum(to_face[bottom] * phi[idx[bottom, 0]]))


def neck_g(eps):
    """g(a / r) (``NECK_G``), linear between entries; 1 at 0 (Holm), 0 at 1."""
    x = np.array([0.0, *(e for e, _ in NECK_G), 1.0])
    y = np.array([1.0, *(g for _, g in NECK_G), 0.0])
    return np.interp(np.clip(eps, 0.0, 1.0), x, y)


def half_resistance(h, r, sigma, a=None):
    """Resistance (1 / (S/m x um)) of a bead of radius ``r`` (um) and conductivity ``sigma``
    (S/m) between its equatorial plane and a neck cut at distance ``h`` (um) from its centre:
    g(a / r) / (4 sigma a), a = sqrt(r^2 - h^2) unless given (a contact disc partly covered by a
    third bead: its open part's equivalent radius); 0 for h <= 0 (the cut at or behind the centre)."""
    h, r, sigma = np.broadcast_arrays(np.asarray(h, float), np.asarray(r, float), np.asarray(sigma, float))
    out = np.zeros(h.shape)
    cut = h > 0
    a = np.sqrt(np.maximum(r[cut] ** 2 - h[cut] ** 2, 0.0)) if a is None else np.broadcast_to(a, h.shape)[cut]
    with np.errstate(divide="ignore"):
        out[cut] = neck_g(a / r[cut]) / (4.0 * sigma[cut] * a)
    return out


def sphere_transfer(s2, r, sigma):
    """Z (1 / (S/m x um)): the surface Neumann function of a sphere of radius ``r`` (um) and
    conductivity ``sigma`` (S/m) at s^2 = sin^2(theta / 2), theta the angle from where a unit
    current enters (the current leaving uniformly over the surface; up to a constant)."""
    s = np.sqrt(np.clip(s2, 1e-12, 1.0))
    return (1.0 / s - np.log(s * (1.0 + s))) / (4.0 * math.pi * sigma * r)


def bead_admittance(directions: np.ndarray, h: np.ndarray, r, sigma, open_fraction=None) -> tuple[np.ndarray, np.ndarray]:
    """The k x k admittance (S/m x um) of beads joining k contacts each, in unit
    ``directions`` (..., k, 3) cut at distances ``h`` (..., k; um) from their centres, radii
    ``r`` and conductivities ``sigma`` (...; module docstring); rows sum to 0. Stacks of beads
    with the same k go in one call.

    Two contacts couple through the sphere's Neumann function at their centres' distance
    D = 2 r sin(theta / 2), softened to sqrt(D^2 + (a_p^2 + a_q^2) / 2) for discs of radii
    a_p, a_q (the point formula overstates the coupling of discs close to each other: two
    coinciding discs of radius a then couple by 1 / (2 pi sigma a), below each one's own
    1 / (4 sigma a)). The admittance is the pseudo-inverse of the coupling matrix on
    currents that sum to zero, keeping its positive part; also returned: which beads' matrix
    had a negative direction (the model outside its range there). ``open_fraction`` (..., k):
    the part of each contact disc not taken by a third bead (``cut_by_neighbours``); its own
    resistance then uses the open part's equivalent radius.""" 
    directions, h = np.asarray(directions, float), np.asarray(h, float)
    k = h.shape[-1]
    r = np.asarray(r, float)[..., None, None]
    sigma = np.asarray(sigma, float)[..., None, None]
    a = np.sqrt(np.maximum(r[..., 0] ** 2 - np.maximum(h, 0.0) ** 2, 0.0))  # (..., k) contact radii
    cos = np.clip(directions @ np.swapaxes(directions, -1, -2), -1.0, 1.0)
    s2 = (1.0 - cos) / 2.0 + (a[..., :, None] ** 2 + a[..., None, :] ** 2) / (8.0 * r ** 2)
    z = sphere_transfer(s2, r, sigma)
    a_open = a if open_fraction is None else a * np.sqrt(np.clip(open_fraction, 1e-6, 1.0))
    own = half_resistance(h, r[..., 0], sigma[..., 0], a_open) + sphere_transfer(1.0, r[..., 0], sigma[..., 0])
    idx = np.arange(k)
    z[..., idx, idx] = own
    p = np.eye(k) - 1.0 / k
    w, v = np.linalg.eigh(p @ z @ p)
    scale = np.abs(w).max(axis=-1, keepdims=True)
    inv = np.where(w > 1e-9 * scale, 1.0 / np.where(w > 0, w, 1.0), 0.0)
    indefinite = np.any(w < -1e-9 * scale, axis=-1)
    return (v * inv[..., None, :]) @ np.swapaxes(v, -1, -2), indefinite


@dataclass(frozen=True)
class NetworkResult:
    """A network solve: sigma_eff (S/m); the conducting beads between the electrodes; the
    necks between them; the beads that carry current (in clusters joined to both
    electrodes); the relative mismatch of the currents at the two electrodes; whether the
    solve reached its tolerance (``RTOL``); wall time (s); the beads where the model was outside
    its range (``bead_admittance``)."""

    effective: float
    beads: int
    necks: int
    conducting_beads: int
    current_mismatch_rel: float
    converged: bool
    wall_s: float
    indefinite_beads: int = 0

    @property
    def percolating(self) -> bool:
        return self.conducting_beads > 0


def network_conductivity(positions, radii, sigma, box_xy: tuple[float, float], z0: float, z1: float, *,
                         touch_gap_um: float = 0.0, touch_radius_rel: float = 0.0,
                         cut_by_neighbours: bool = False, kept_exponent: float = 1.0) -> NetworkResult:
    """sigma_eff (S/m) between the planes z = ``z0`` (collector) and ``z1`` (top) of beads at
    ``positions`` (N x 3, um; x and y periodic with periods ``box_xy``) with solid ``radii``
    (um) and conductivities ``sigma`` (S/m; 0: insulating), by the model of the module
    docstring. Beads reaching into [z0, z1] take part, necks outside it do not. ``cut_by_neighbours``:
    each bead is its sphere cut by the radical planes of every bead overlapping it, conducting
    or not (the power-rule geometry, ``voxelise(overlap="power")``): a contact disc keeps the
    part outside third beads' cells (``neighbour_cuts``), and a conductor's conductivity is
    scaled by the fraction of its sphere the insulating beads leave it.

    BLAS runs on one thread here (``threads.solver_threads``): the solve's vector operations
    are too small to share, and a multi-threaded BLAS on a busy machine made it 3x slower
    (5089 beads: 3.1 s against 1.0 s, ``bench/network_speed.py``)."""
    from .threads import solver_threads

    with solver_threads(1, torch=False):
        return _network_conductivity(positions, radii, sigma, box_xy, z0, z1, touch_gap_um, touch_radius_rel,
                                     cut_by_neighbours, kept_exponent)


def _network_conductivity(positions, radii, sigma, box_xy, z0, z1, touch_gap_um, touch_radius_rel,
                          cut_by_neighbours=False, kept_exponent=1.0) -> NetworkResult:
    import pyamg
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    t0 = time.perf_counter()
    if touch_gap_um < 0 or not 0 <= touch_radius_rel < 1:
        raise ValueError("touch_gap_um must be >= 0 and touch_radius_rel in [0, 1)")
    if not z1 > z0:
        raise ValueError(f"the top plane must lie above the collector, got z0 {z0}, z1 {z1}")
    pos, r_all, s_all = np.asarray(positions, float), np.asarray(radii, float), np.asarray(sigma, float)
    if np.any(r_all <= 0) or np.any(s_all < 0) or not np.all(np.isfinite(s_all)):
        raise ValueError("radii must be > 0 and conductivities >= 0 and finite")
    lx, ly = box_xy
    absent = engulfed_beads(pos, r_all, (lx, ly))  # no cell of their own: their volume is their host's
    keep = (s_all > 0) & ~absent & (pos[:, 2] + r_all > z0) & (pos[:, 2] - r_all < z1)  # reaching into the slab
    p, r, s = pos[keep], r_all[keep], s_all[keep]
    n = len(p)
    if n == 0:
        return NetworkResult(0.0, 0, 0, 0, math.nan, True, time.perf_counter() - t0)

    # necks (x, y periodic; z open: its period spans more than twice the reach)
    reach = 2.0 * float(r.max()) + touch_gap_um
    if min(lx, ly) <= 2.0 * reach:
        raise ValueError(f"the periodic box ({lx:g} x {ly:g} um) must exceed twice the contact reach "
                         f"({reach:g} um): a pair would meet through two images")
    wrapped = np.column_stack([np.mod(p[:, 0], lx), np.mod(p[:, 1], ly), p[:, 2] - z0 + reach])
    wrapped[:, 0][wrapped[:, 0] >= lx] = 0.0  # np.mod(-1e-20, L) is L itself
    wrapped[:, 1][wrapped[:, 1] >= ly] = 0.0
    tree = cKDTree(wrapped, boxsize=(lx, ly, 2.0 * (z1 - z0) + 4.0 * reach))
    pairs = tree.query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    delta = wrapped[j] - wrapped[i]
    delta[:, 0] -= lx * np.round(delta[:, 0] / lx)
    delta[:, 1] -= ly * np.round(delta[:, 1] / ly)
    d = np.linalg.norm(delta, axis=1)
    gap = d - r[i] - r[j]
    joined = (gap < 0) | ((gap <= touch_gap_um) & (touch_radius_rel > 0))
    i, j, d, gap, delta = i[joined], j[joined], d[joined], gap[joined], delta[joined]
    h_i = (d ** 2 + r[i] ** 2 - r[j] ** 2) / (2.0 * d)
    neck_z = p[i, 2] + h_i * delta[:, 2] / np.where(d > 0, d, 1.0)
    inside = (neck_z >= z0) & (neck_z <= z1)  # a neck outside the slab is outside the problem
    i, j, d, gap, delta, h_i = i[inside], j[inside], d[inside], gap[inside], delta[inside], h_i[inside]
    h_j = d - h_i
    touching = gap >= 0  # the contact rule
    a_t = touch_radius_rel * np.minimum(r[i], r[j])[touching]
    h_i[touching] = np.sqrt(r[i][touching] ** 2 - a_t ** 2)
    h_j[touching] = np.sqrt(r[j][touching] ** 2 - a_t ** 2)
    unit = np.where(d[:, None] > 0, delta / np.where(d > 0, d, 1.0)[:, None], [0.0, 0.0, 1.0])
    n_necks = len(i)

    # contacts: the necks (nodes 0 .. n_necks - 1), then the electrode discs
    bead = [i, j]
    hh = [h_i, h_j]
    dirs = [unit, -unit]
    node = [np.arange(n_necks), np.arange(n_necks)]
    fixed_nodes, fixed_values = [], []
    next_node = n_necks
    for plane, value, outward in ((z0, 0.0, -1.0), (z1, 1.0, 1.0)):
        dist = np.abs(p[:, 2] - plane)
        crossing = dist < r
        grazing = ~crossing & (dist - r <= touch_gap_um) & (touch_radius_rel > 0)
        on = np.nonzero(crossing | grazing)[0]
        h_on = np.where(grazing[on], np.sqrt(r[on] ** 2 - (touch_radius_rel * r[on]) ** 2), dist[on])
        # the disc lies towards the plane from the centre: outward, or inward for a centre beyond
        # the plane (a bead reaching into the slab from outside; modelled as a whole sphere with a
        # disc at the plane: within -16 % to +36 % of voxel solves, tests/test_particle_network.py)
        toward = np.where((p[on, 2] - plane) * outward > 0, -outward, outward)
        ids = next_node + np.arange(len(on))
        next_node += len(on)
        bead.append(on)
        hh.append(h_on)
        dirs.append(np.column_stack([np.zeros(len(on)), np.zeros(len(on)), toward]))
        node.append(ids)
        fixed_nodes.append(ids)
        fixed_values.append(np.full(len(on), value))
    bead_c, h_c, dir_c, node_c = (np.concatenate(x) for x in (bead, hh, dirs, node))
    m = next_node
    open_c = None
    if cut_by_neighbours:
        partner = np.concatenate([j, i, np.full(len(bead_c) - 2 * n_necks, -1)])
        idx = np.nonzero(keep)[0]  # subset -> all beads
        kept, open_c = neighbour_cuts(pos, r_all, s_all > 0, (lx, ly), idx, idx[bead_c], h_c, dir_c, absent,
                                      np.where(partner >= 0, idx[np.maximum(partner, 0)], -1))
        # a bead the insulators cover whole keeps a vanishing conductance, not a zero one
        s = s * np.maximum(kept, 1e-6) ** kept_exponent

    # each bead's admittance over its contacts, beads with the same number of contacts at once
    order = np.argsort(bead_c, kind="stable")
    counts = np.bincount(bead_c, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows, cols, vals = [], [], []
    indefinite = 0
    for k in np.unique(counts[counts >= 2]):  # a dead end (one contact) carries no current
        beads_k = np.nonzero(counts == k)[0]
        sel = order[starts[beads_k][:, None] + np.arange(k)[None, :]]  # (beads, k) contact indices
        y, bad = bead_admittance(dir_c[sel], h_c[sel], r[beads_k], s[beads_k],
                                 None if open_c is None else open_c[sel])
        indefinite += int(bad.sum())
        ids = node_c[sel]
        rows.append(np.repeat(ids, k, axis=1).ravel())
        cols.append(np.tile(ids, (1, k)).ravel())
        vals.append(y.ravel())
    if not rows:
        return NetworkResult(0.0, n, n_necks, 0, math.nan, True, time.perf_counter() - t0)
    g = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))
    g.eliminate_zeros()  # a contact whose beads' admittance vanished joins nothing

    # the contacts joined to both electrodes
    fixed = np.concatenate(fixed_nodes)
    values = np.concatenate(fixed_values)
    _, comp = connected_components(g, directed=False)
    both = np.intersect1d(comp[fixed[values == 0.0]], comp[fixed[values == 1.0]])
    is_fixed = np.zeros(m, bool)
    is_fixed[fixed] = True
    free = np.nonzero(np.isin(comp, both) & ~is_fixed)[0]
    live_fixed = fixed[np.isin(comp[fixed], both)]
    if len(both) == 0:
        return NetworkResult(0.0, n, n_necks, 0, math.nan, True, time.perf_counter() - t0, indefinite)
    v = np.zeros(m)
    v[fixed] = values
    converged = True
    if len(free):
        a = g[free][:, free].tocsr()
        rhs = -(g[free][:, live_fixed] @ v[live_fixed])
        ml = pyamg.ruge_stuben_solver(a)  # classical AMG: measured 6x faster than smoothed aggregation here
        residuals: list[float] = []
        v[free] = ml.solve(rhs, tol=RTOL, accel="cg", maxiter=200, residuals=residuals)
        converged = residuals[-1] <= RTOL * max(residuals[0], 1e-300)
        if not converged:  # a hard case for multigrid (e.g. very unequal necks): a direct solve
            from scipy.sparse.linalg import spsolve

            v[free] = np.atleast_1d(spsolve(a.tocsc(), rhs))
            converged = bool(np.linalg.norm(a @ v[free] - rhs) <= 1e-8 * max(np.linalg.norm(rhs), 1e-300))
    # g @ v: the current from each contact into its beads, + at the top's, - at the collector's;
    # only the clusters joined to both electrodes (one touching the top alone carries none)
    current = g @ v
    top_live = live_fixed[v[live_fixed] == 1.0]
    bottom_live = live_fixed[v[live_fixed] == 0.0]
    i_top = float(current[top_live].sum())
    i_bottom = float(-current[bottom_live].sum())
    total = 0.5 * (i_top + i_bottom)
    live_contacts = np.isin(node_c, np.concatenate([free, live_fixed]))
    carrying = np.unique(bead_c[live_contacts & (counts[bead_c] >= 2)])  # dead ends carry nothing
    mismatch = abs(i_top - i_bottom) / total if total > 0 else math.nan
    return NetworkResult(float(total * (z1 - z0) / (lx * ly)), n, n_necks, len(carrying), float(mismatch),
                         bool(converged), time.perf_counter() - t0, indefinite)


def engulfed_beads(pos: np.ndarray, radii: np.ndarray, box_xy: tuple[float, float]) -> np.ndarray:
    """Per bead (um; x and y periodic), whether it lies wholly inside another (d <= r_host -
    r; of two coinciding equal spheres, the second). Such a bead has no cell in the power
    rule's geometry (the radical plane lies beyond it: its whole sphere is its host's), so it
    takes no part in the network, neither as a conductor nor as a cut."""
    from scipy.spatial import cKDTree

    lx, ly = box_xy
    out = np.zeros(len(pos), bool)
    if len(pos) < 2:
        return out
    wrapped = np.column_stack([np.mod(pos[:, 0], lx), np.mod(pos[:, 1], ly), pos[:, 2] - pos[:, 2].min()])
    wrapped[:, 0][wrapped[:, 0] >= lx] = 0.0
    wrapped[:, 1][wrapped[:, 1] >= ly] = 0.0
    reach = float(np.ptp(radii)) + 1e-12
    tree = cKDTree(wrapped, boxsize=(lx, ly, float(np.ptp(wrapped[:, 2])) + 2.0 * reach + 1.0))
    pairs = tree.query_pairs(reach, output_type="ndarray")
    if not len(pairs):
        return out
    a, b = pairs[:, 0], pairs[:, 1]
    delta = wrapped[b] - wrapped[a]
    delta[:, 0] -= lx * np.round(delta[:, 0] / lx)
    delta[:, 1] -= ly * np.round(delta[:, 1] / ly)
    d = np.linalg.norm(delta, axis=1)
    inside = d <= np.abs(radii[a] - radii[b])
    smaller = np.where((radii[a] < radii[b]) | ((radii[a] == radii[b]) & (a > b)), a, b)
    out[smaller[inside]] = True
    return out


def neighbour_cuts(pos, radii, conducting, box_xy, beads, owner, h, normal, absent, partner):
    """The power-rule geometry's cuts (``network_conductivity(cut_by_neighbours=True)``).

    pos, radii, conducting: every bead (um); beads: the conductors (indices into them);
    absent: the beads with no cell of their own (``engulfed_beads``), which cut nothing;
    owner, h, normal, partner: per contact disc, its bead, the disc's distance from the bead's
    centre along ``normal``, and the bead on its other side (-1: an electrode). Returns
    (kept, open): per conductor in ``beads``, the fraction of its sphere left after the
    insulating beads overlapping it take their cells (the caps beyond their radical planes,
    summed), and per disc the fraction outside every third overlapping bead's cell (each
    takes the circular segment beyond the line where its radical plane cuts the disc's plane,
    summed). Sums overcount where cuts overlap each other (both clipped to [0, 1])."""
    from scipy.spatial import cKDTree

    lx, ly = box_xy
    n = len(pos)
    reach = 2.0 * float(radii.max())
    wrapped = np.column_stack([np.mod(pos[:, 0], lx), np.mod(pos[:, 1], ly), pos[:, 2] - pos[:, 2].min() + reach])
    wrapped[:, 0][wrapped[:, 0] >= lx] = 0.0
    wrapped[:, 1][wrapped[:, 1] >= ly] = 0.0
    tree = cKDTree(wrapped, boxsize=(lx, ly, 2.0 * float(np.ptp(pos[:, 2])) + 4.0 * reach))
    pairs = tree.query_pairs(reach, output_type="ndarray")
    a_, b_ = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    delta = wrapped[b_] - wrapped[a_]
    delta[:, 0] -= lx * np.round(delta[:, 0] / lx)
    delta[:, 1] -= ly * np.round(delta[:, 1] / ly)
    d = np.linalg.norm(delta, axis=1)
    over = (d < radii[a_] + radii[b_]) & (d > 0) & ~absent[a_] & ~absent[b_]  # ``engulfed_beads``: no cell
    a_, b_, delta, d = a_[over], b_[over], delta[over], d[over]
    ra, rb = radii[a_], radii[b_]
    t = np.clip((d ** 2 + ra ** 2 - rb ** 2) / (2.0 * d), -ra, ra)  # a's radical plane with b, from a's centre
    unit = delta / d[:, None]

    # kept volume of each conductor: minus the caps of the insulators overlapping it
    cap = np.pi * (ra - t) ** 2 * (2.0 * ra + t) / 3.0
    lost = np.bincount(a_, weights=np.where(conducting[b_], 0.0, cap), minlength=n)
    kept_all = np.clip(1.0 - lost / (4.0 / 3.0 * np.pi * radii ** 3), 0.0, 1.0)

    # open part of each disc: the pairs (owner, k) for every third bead k overlapping the owner
    order = np.argsort(a_, kind="stable")
    a_s, b_s, t_s, u_s = a_[order], b_[order], t[order], unit[order]
    start = np.searchsorted(a_s, np.arange(n))
    count = np.bincount(a_s, minlength=n)
    reps = count[owner]
    disc = np.repeat(np.arange(len(owner)), reps)
    k_idx = np.repeat(start[owner], reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    k = b_s[k_idx]
    third = k != partner[disc]
    disc, k_idx = disc[third], k_idx[third]
    nvec, tk = u_s[k_idx], t_s[k_idx]
    rad = np.sqrt(np.maximum(radii[owner] ** 2 - np.maximum(h, 0.0) ** 2, 0.0))[disc]
    along = np.einsum("ij,ij->i", nvec, normal[disc])  # n . u
    across = np.sqrt(np.maximum(1.0 - along ** 2, 0.0))
    # points of the disc c + v (c = h u, v in the disc's plane) lie in k's cell where n.c + n.v > t
    gap = tk - along * h[disc]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(across > 1e-9, gap / (across * np.where(rad > 0, rad, 1.0)), np.where(gap < 0, -np.inf, np.inf))
    xc = np.clip(x, -1.0, 1.0)
    segment = (np.arccos(xc) - xc * np.sqrt(1.0 - xc ** 2)) / np.pi  # fraction of the disc beyond the line
    covered = np.bincount(disc, weights=segment, minlength=len(owner))
    return kept_all[beads], np.clip(1.0 - covered, 0.0, 1.0)
