"""The contact network for electronic conductivity (``sim_backends.particle_network``, issue
27): its neck table against the axisymmetric solve and Holm's constriction, a chain against
its series sum, and overlapping periodic packings against voxel solves of the same geometry
(``sim_backends.transport.solve_steady``, an independent discretisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_backends.particle_network import (NECK_G, half_resistance, neck_g, neck_half_resistance,
                                           network_conductivity)
from sim_backends.transport import solve_steady

BASIS = {"sc": [(0, 0, 0)], "bcc": [(0, 0, 0), (0.5, 0.5, 0.5)],
         "fcc": [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]}


def lattice(kind: str, cell: float, layers: int, lateral: int) -> np.ndarray:
    """Unit-radius sphere centres of a cubic lattice (cell edge ``cell``), ``lateral`` cells
    in x and y, from z = 0 to z = layers x cell (spheres on both end planes)."""
    pts = []
    for k in range(layers + 1):
        for bx, by, bz in BASIS[kind]:
            z = (k + bz) * cell
            if z <= layers * cell + 1e-9:
                pts += [((bx + ix) * cell, (by + iy) * cell, z) for ix in range(lateral) for iy in range(lateral)]
    return np.array(pts)


def voxel_conductivity(kind: str, cell: float, layers: int, per_radius: int) -> float:
    """sigma_eff / sigma of the same lattice (one periodic cell across) from a voxel solve with
    ``per_radius`` voxels per sphere radius, electrodes at z = 0 and z = layers x cell."""
    centres = lattice(kind, cell, layers, 1)
    n_xy = round(cell * per_radius)
    n_z = round(layers * cell * per_radius)
    x = (np.arange(n_xy) + 0.5) * cell / n_xy
    z = (np.arange(n_z) + 0.5) * layers * cell / n_z
    gx, gy, gz = np.meshgrid(x, x, z, indexing="ij")
    inside = np.zeros(gx.shape, bool)
    for cx, cy, cz in centres:
        for sx in (-cell, 0.0, cell):
            for sy in (-cell, 0.0, cell):
                inside |= (gx - cx - sx) ** 2 + (gy - cy - sy) ** 2 + (gz - cz) ** 2 <= 1.0
    return solve_steady(inside.astype(float)).effective


def test_neck_table_is_the_axisymmetric_solve_and_tends_to_holm():
    # the table's entries from a coarser solve of their own (the table: r / 800)
    for eps in (0.3, 0.6):
        g = 4.0 * eps * neck_half_resistance(eps, 200)
        assert g == pytest.approx(dict(NECK_G)[eps], rel=0.01)
        # the Dirichlet principle: a potential that depends on z only bounds the resistance below
        h = math.sqrt(1 - eps * eps)
        assert g / (4 * eps) > math.log((1 + h) / (1 - h)) / (2 * math.pi)
    # Holm's constriction 1 / (4 sigma a) as the neck shrinks; nothing left at the equator
    assert neck_g(0.0) == 1.0 and neck_g(1.0) == 0.0 and 1.0 < neck_g(0.05) < 1.06
    assert half_resistance(0.0, 1.0, 1.0) == 0.0 and half_resistance(-0.1, 1.0, 1.0) == 0.0


def test_two_spheres_with_a_small_neck_give_holms_constriction():
    """Two unit spheres meeting in a neck of radius 0.02, each cut through its centre by an
    electrode: R -> 1 / (2 sigma a) (Holm), here within the table's 2.5 % at a / r = 0.02."""
    a, sigma = 0.02, 15.93
    h = math.sqrt(1 - a * a)
    box = 10.0
    res = network_conductivity(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2 * h]]), np.ones(2), np.full(2, sigma),
                               (box, box), 0.0, 2 * h)
    resistance = 2 * h / (res.effective * box * box)
    assert resistance == pytest.approx(1 / (2 * sigma * a), rel=0.025)
    assert res.converged and res.conducting_beads == 2 and res.necks == 1


def test_a_chain_is_the_series_sum_of_its_half_resistances():
    """Five beads of different radii and conductivities on the z axis: between collector and
    top, the sum over necks of each side's g(a / r) / (4 sigma a)."""
    r = np.array([1.0, 1.3, 0.8, 1.1, 1.0])
    sigma = np.array([15.93, 0.005, 15.93, 2.0, 15.93])
    gaps = np.array([0.1, 0.5, 0.3, 0.2])  # overlaps of consecutive beads (um)
    z = np.concatenate([[0.0], np.cumsum(r[:-1] + r[1:] - gaps)])
    pos = np.column_stack([np.zeros(5), np.zeros(5), z])
    expected = 0.0
    for k in range(4):
        d = z[k + 1] - z[k]
        h_i = (d * d + r[k] ** 2 - r[k + 1] ** 2) / (2 * d)
        expected += half_resistance(h_i, r[k], sigma[k]) + half_resistance(d - h_i, r[k + 1], sigma[k + 1])
    box = 10.0
    res = network_conductivity(pos, r, sigma, (box, box), 0.0, z[-1])
    assert z[-1] / (res.effective * box * box) == pytest.approx(float(expected), rel=1e-8)
    assert res.current_mismatch_rel < 1e-8


@pytest.mark.parametrize("kind, cell, layers, per_radius", [
    ("sc", 1.8, 3, 20),  # necks of 0.44 radii on six sides
    ("bcc", 2.078, 2, 14),  # eight necks of 0.44 radii at 55 degrees to the current
    ("fcc", 2.7577, 2, 20),  # twelve necks of 0.22 radii
])
def test_the_network_matches_voxel_solves_of_overlapping_packings(kind, cell, layers, per_radius):
    """Within 5 % of a voxel solve of the same periodic packing, the issue's bar (measured
    2026-12-06: SC -0.1 %, BCC +0.0 % at 14 voxels per radius, FCC -1.1 % / -2.8 % at 12 / 20;
    the voxel solve itself moves 1.7 % between those two on FCC)."""
    lateral = math.ceil(4.2 / cell)  # a pair must not meet through two periodic images
    centres = lattice(kind, cell, layers, lateral)
    n = len(centres)
    res = network_conductivity(centres, np.ones(n), np.ones(n), (lateral * cell, lateral * cell), 0.0,
                               layers * cell)
    assert res.converged and res.conducting_beads == n
    assert res.effective == pytest.approx(voxel_conductivity(kind, cell, layers, per_radius), rel=0.05)


def test_contact_rule_insulators_and_bad_input():
    box = 10.0
    apart = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.01]])  # 0.01 um apart
    ones = np.ones(2)
    assert network_conductivity(apart, ones, ones, (box, box), 0.0, 2.01).effective == 0.0
    touching = network_conductivity(apart, ones, ones, (box, box), 0.0, 2.01, touch_gap_um=0.02,
                                    touch_radius_rel=0.05)
    assert touching.effective > 0 and touching.necks == 1
    # the rule's neck: 0.05 radii on each side
    h = math.sqrt(1 - 0.05 ** 2)
    expected = 2 * float(half_resistance(h, 1.0, 1.0))
    assert 2.01 / (touching.effective * box * box) == pytest.approx(expected, rel=1e-8)
    overlapping = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.9]])
    assert network_conductivity(overlapping, ones, np.array([1.0, 0.0]), (box, box), 0.0, 1.9).effective == 0.0
    with pytest.raises(ValueError, match="twice the contact reach"):
        network_conductivity(overlapping, ones, ones, (3.0, 3.0), 0.0, 1.9)
    with pytest.raises(ValueError, match="above the collector"):
        network_conductivity(overlapping, ones, ones, (box, box), 1.9, 0.0)
    with pytest.raises(ValueError, match="touch"):
        network_conductivity(overlapping, ones, ones, (box, box), 0.0, 1.9, touch_gap_um=-1.0)


def test_clusters_that_do_not_span_the_film_and_dead_ends_carry_no_current():
    """A spanning chain of three beads; a two-bead cluster touching only the top, another only
    the collector, and a bead hanging off the chain's side: the conductivity is the chain's
    alone, the currents at the two electrodes agree, and only the chain's beads carry current."""
    box = 20.0
    chain = [[0.0, 0.0, 0.0], [0.0, 0.0, 1.9], [0.0, 0.0, 3.8]]
    res0 = network_conductivity(np.array(chain), np.ones(3), np.ones(3), (box, box), 0.0, 3.8)
    extra = [[8.0, 8.0, 3.6], [8.0, 8.0, 1.8],  # touches the top only
             [-8.0, 8.0, 0.3], [-8.0, 8.0, 2.1],  # touches the collector only
             [1.9, 0.0, 1.9]]  # a dead end on the middle bead
    pos = np.array(chain + extra)
    res = network_conductivity(pos, np.ones(len(pos)), np.ones(len(pos)), (box, box), 0.0, 3.8)
    assert res.effective == pytest.approx(res0.effective, rel=1e-6)
    assert res.current_mismatch_rel < 1e-6 and res.conducting_beads == 3 and res.beads == 8


@pytest.mark.parametrize("z1, voxel", [(1.5, 0.0378), (1.2, 0.03554), (1.0, 0.03703)])
def test_a_bead_reaching_into_the_slab_from_beyond_its_top_conducts(z1, voxel):
    """Two unit beads on the z axis (centres 0 and 1.8) with the top plane between the second
    centre and the neck (z = 0.9): before 2026-12-07 the second bead, centred beyond the
    plane, was left out and the film read 0. Its disc at the plane now carries the current.
    ``voxel``: the same slab by ``solve_steady`` at 0.025 um (0.05 um within 2.6 % of it);
    the network models the bead as a whole sphere and measured -16 % to +36 % against it."""
    res = network_conductivity(np.array([[3.0, 3.0, 0.0], [3.0, 3.0, 1.8]]), np.ones(2), np.ones(2), (6.0, 6.0),
                               0.0, z1)
    assert res.conducting_beads == 2 and res.necks == 1
    assert 0.8 * voxel < res.effective < 1.4 * voxel


@pytest.mark.parametrize("small", [[0.0, 0.1, 1.0], [0.0, 0.1, 1.5], [0.3, 0.2, 2.0], [0.0, 0.0, 5.6]])
@pytest.mark.parametrize("sigma_small", [1.0, 0.0])
def test_a_bead_inside_another_takes_no_part(small, sigma_small):
    """A 0.5 um bead wholly inside one of two overlapping 2.5 um beads (a chain from the
    collector to the top): in the power rule's geometry it has no cell (the radical plane
    lies beyond it), so conducting or not it changes nothing. Until 2026-12-07 it joined its
    host by a "neck" through both centres whose element was outside the model's range and
    cut the chain's current to 0."""
    box = 20.0
    big = [[0.0, 0.0, 1.0], [0.0, 0.0, 5.6]]
    alone = network_conductivity(np.array(big), np.full(2, 2.5), np.ones(2), (box, box), 0.0, 5.6,
                                 cut_by_neighbours=True)
    res = network_conductivity(np.array(big + [small]), np.array([2.5, 2.5, 0.5]), np.array([1.0, 1.0, sigma_small]),
                               (box, box), 0.0, 5.6, cut_by_neighbours=True)
    assert alone.effective > 0 and res.necks == alone.necks == 1
    assert res.effective == pytest.approx(alone.effective, rel=1e-9)


def _power_sample(points, centres, radii, owner):
    """Which ``points`` (inside sphere ``owner``) lie in another sphere's power cell."""
    own = np.sum((points - centres[owner]) ** 2, axis=1) - radii[owner] ** 2
    taken = np.zeros(len(points), bool)
    for k in range(len(centres)):
        if k != owner:
            taken |= np.sum((points - centres[k]) ** 2, axis=1) - radii[k] ** 2 < own
    return taken


def test_neighbour_cuts_match_sampling_of_the_power_cells():
    """A conductor (r 2) with a conducting neighbour (r 2, necks of 1.2) and an insulator (r 1)
    overlapping both: the kept volume (its cap beyond the radical plane) and the neck disc's part
    outside the insulator's cell, against points sampled in the sphere and on the disc."""
    from sim_backends.particle_network import neighbour_cuts

    centres = np.array([[10.0, 10.0, 10.0], [13.2, 10.0, 10.0], [11.6, 11.2, 10.3]])
    radii = np.array([2.0, 2.0, 1.0])
    conducting = np.array([True, True, False])
    d = 3.2
    h = (d * d + 4.0 - 4.0) / (2 * d)  # the neck's plane from bead 0, normal +x
    kept, open_ = neighbour_cuts(centres, radii, conducting, (40.0, 40.0), np.array([0, 1]), np.array([0]),
                                 np.array([h]), np.array([[1.0, 0.0, 0.0]]), np.zeros(3, bool), np.array([1]))
    rng = np.random.default_rng(3)
    u = rng.normal(size=(200_000, 3))
    u *= (rng.random(len(u)) ** (1 / 3) / np.linalg.norm(u, axis=1))[:, None]
    pts = centres[0] + 2.0 * u
    lost_to_insulator = _power_sample(pts, centres[[0, 2]], radii[[0, 2]], 0)
    assert kept[0] == pytest.approx(1.0 - lost_to_insulator.mean(), abs=0.005)
    a = math.sqrt(4.0 - h * h)
    q = rng.random((200_000, 2))
    rho, phi = a * np.sqrt(q[:, 0]), 2 * math.pi * q[:, 1]
    disc = np.column_stack([np.full(len(q), centres[0, 0] + h), centres[0, 1] + rho * np.cos(phi),
                            centres[0, 2] + rho * np.sin(phi)])
    power = [np.sum((disc - c) ** 2, axis=1) - rr ** 2 for c, rr in zip(centres, radii)]
    covered = power[2] < power[0]  # on the neck's plane power[0] == power[1]
    assert 0.05 < covered.mean() < 0.95  # the insulator really takes part of the neck
    assert open_[0] == pytest.approx(1.0 - covered.mean(), abs=0.005)


def test_cuts_change_nothing_where_no_third_bead_reaches_a_neck():
    """SC necks of 0.44 radii: the planes of the other neighbours do not reach a neck, and no
    insulator is there, so the cut network is the plain one."""
    cell, layers, lateral = 1.8, 3, 3
    centres = lattice("sc", cell, layers, lateral)
    n = len(centres)
    box = (lateral * cell, lateral * cell)
    plain = network_conductivity(centres, np.ones(n), np.ones(n), box, 0.0, layers * cell)
    cut = network_conductivity(centres, np.ones(n), np.ones(n), box, 0.0, layers * cell, cut_by_neighbours=True)
    assert cut.effective == pytest.approx(plain.effective, rel=1e-12)
