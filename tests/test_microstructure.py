"""Voxelised porosity of hand-placed spheres against exact values (issue-4 groundwork)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_backends.microstructure import (GridTooLarge, Packing, exact_solid_volume, grid_bytes, phase_fractions,
                                         porosity, voxelise)

SOLID = {"AM": 1.0, "SE": 1.0, "CBD": 0.5}


def _packing(centres, radii, phases, box=(40.0, 40.0, 30.0)):
    return Packing(np.asarray(centres, dtype=float), np.asarray(radii, dtype=float), tuple(phases),
                   (0.0, 0.0, 0.0), box)


def test_non_overlapping_spheres_match_the_exact_porosity():
    """Three spheres, one across the periodic x boundary and one across y: the voxel porosity
    converges to 1 - sum(4/3 pi r^3) / V."""
    p = _packing([[1.0, 20.0, 15.0], [20.0, 39.0, 10.0], [25.0, 15.0, 20.0]], [6.0, 5.0, 7.0], ["AM", "SE", "AM"])
    exact = 1.0 - exact_solid_volume(p.radii) / (40.0 * 40.0 * 30.0)
    errors = []
    for res in (1.0, 0.5, 0.25):
        errors.append(abs(float(porosity(voxelise(p, res, SOLID), SOLID)) - exact))
    assert errors[-1] < 0.002  # absolute porosity error at 0.25 um
    assert errors[-1] < errors[0]


def test_cbd_counts_by_its_solid_fraction_and_loses_overlaps_to_dense_phases():
    box = 30.0 ** 3
    cbd = _packing([[15.0, 15.0, 15.0]], [6.0], ["CBD"], box=(30.0, 30.0, 30.0))
    v = voxelise(cbd, 0.25, SOLID)
    assert float(porosity(v, SOLID)) == pytest.approx(1 - 0.5 * exact_solid_volume([6.0]) / box, abs=2e-3)
    # an AM sphere inside the CBD bead: the AM part is fully solid, the rest of the bead half
    both = _packing([[15.0, 15.0, 15.0], [15.0, 15.0, 15.0]], [6.0, 3.0], ["CBD", "AM"], box=(30.0, 30.0, 30.0))
    v = voxelise(both, 0.25, SOLID)
    v_am, v_cbd = exact_solid_volume([3.0]), exact_solid_volume([6.0])
    fr = phase_fractions(v)
    assert fr["AM"] == pytest.approx(v_am / box, abs=1e-3)
    assert fr["CBD"] == pytest.approx((v_cbd - v_am) / box, abs=1e-3)
    assert float(porosity(v, SOLID)) == pytest.approx(1 - (v_am + 0.5 * (v_cbd - v_am)) / box, abs=2e-3)



def test_power_overlap_splits_a_lens_along_the_radical_plane():
    """overlap="power": a voxel inside two spheres goes to the one of least power distance
    |x - c|^2 - r^2, i.e. to its side of the radical plane (x = h from the first centre, h =
    (d^2 + r1^2 - r2^2) / 2d), whatever the phases' ranks; "rank" gives the whole lens to
    the higher-ranked phase (here SE over AM by name)."""
    c1, c2, r1, r2 = np.array([15.0, 20.0, 15.0]), np.array([23.0, 20.0, 15.0]), 6.0, 4.0
    p = _packing([c1, c2], [r1, r2], ["AM", "SE"])
    v = voxelise(p, 0.25, SOLID, overlap="power")
    code = {name: k + 1 for k, name in enumerate(v.names)}
    x, y, z = np.meshgrid(*((np.arange(n) + 0.5) * v.resolution_um for n in v.labels.shape), indexing="ij")
    pts = np.stack([x, y, z], axis=-1)
    in1 = np.sum((pts - c1) ** 2, axis=-1) <= r1 ** 2
    in2 = np.sum((pts - c2) ** 2, axis=-1) <= r2 ** 2
    h = (8.0 ** 2 + r1 ** 2 - r2 ** 2) / (2 * 8.0)
    lens = in1 & in2
    assert lens.sum() > 1000  # a real lens on both sides of the plane
    first_side = lens & (x < c1[0] + h - 1e-9)
    assert np.all(v.labels[first_side] == code["AM"]) and first_side.sum() > 100
    assert np.all(v.labels[lens & ~first_side] == code["SE"]) and (lens & ~first_side).sum() > 100
    assert np.all(v.labels[in1 & ~in2] == code["AM"]) and np.all(v.labels[in2 & ~in1] == code["SE"])
    ranked = voxelise(p, 0.25, SOLID)  # the default rule: the lens is all SE
    assert np.all(ranked.labels[lens] == code["SE"])
    with pytest.raises(ValueError, match="overlap"):
        voxelise(p, 0.25, SOLID, overlap="nearest")


def test_rank_power_gives_cbd_lenses_to_dense_phases_and_splits_dense_ties_at_the_radical_plane():
    """A CBD sphere overlapping an AM sphere overlapping an SE sphere: the AM-CBD lens is all
    AM (the nanoporous phase loses, as in the public porosity script), the AM-SE lens is split
    along their radical plane."""
    am, se, cbd = np.array([20.0, 20.0, 15.0]), np.array([27.0, 20.0, 15.0]), np.array([14.0, 20.0, 15.0])
    p = _packing([cbd, am, se], [3.0, 5.0, 4.0], ["CBD", "AM", "SE"])
    v = voxelise(p, 0.25, SOLID, overlap="rank-power")
    code = {name: k + 1 for k, name in enumerate(v.names)}
    x, y, z = np.meshgrid(*((np.arange(n) + 0.5) * v.resolution_um for n in v.labels.shape), indexing="ij")
    pts = np.stack([x, y, z], axis=-1)
    inside = [np.sum((pts - c) ** 2, axis=-1) <= r ** 2 for c, r in ((cbd, 3.0), (am, 5.0), (se, 4.0))]
    assert (inside[0] & inside[1]).sum() > 100 and np.all(v.labels[inside[0] & inside[1]] == code["AM"])
    h = (7.0 ** 2 + 5.0 ** 2 - 4.0 ** 2) / (2 * 7.0)  # from the AM centre towards the SE
    lens = inside[1] & inside[2]
    am_side = lens & (x < am[0] + h - 1e-9)
    assert am_side.sum() > 100 and (lens & ~am_side).sum() > 100
    assert np.all(v.labels[am_side] == code["AM"]) and np.all(v.labels[lens & ~am_side] == code["SE"])

def test_z_profile_of_one_sphere_is_its_cross_sections():
    p = _packing([[10.0, 10.0, 8.0]], [5.0], ["AM"], box=(20.0, 20.0, 16.0))
    v = voxelise(p, 0.2, SOLID)
    prof = porosity(v, SOLID, axis_profile=True)
    z = v.z_centres_um()
    exact = 1 - np.pi * np.clip(25.0 - (z - 8.0) ** 2, 0, None) / 400.0
    assert np.max(np.abs(prof - exact)) < 0.01
    assert prof[0] == 1.0 and prof[-1] == 1.0


def test_sphere_below_the_bottom_is_clipped_not_wrapped():
    """z is not periodic: a sphere cut by the current collector loses its lower half."""
    p = _packing([[10.0, 10.0, 0.0]], [4.0], ["AM"], box=(20.0, 20.0, 20.0))
    v = voxelise(p, 0.2, SOLID)
    assert phase_fractions(v)["AM"] == pytest.approx(0.5 * exact_solid_volume([4.0]) / 8000.0, rel=0.02)


def test_grid_memory_is_refused_before_allocation():
    p = _packing([[10.0, 10.0, 10.0]], [2.0], ["AM"], box=(1000.0, 1000.0, 1000.0))
    assert grid_bytes(p, 0.5) == 2000 ** 3
    with pytest.raises(GridTooLarge, match="GiB"):
        voxelise(p, 0.5, SOLID, max_bytes=1024**3)


@pytest.mark.parametrize("bad", [dict(resolution_um=0.0), dict(resolution_um=-1.0)])
def test_bad_resolution(bad):
    p = _packing([[10.0, 10.0, 10.0]], [2.0], ["AM"])
    with pytest.raises(ValueError):
        voxelise(p, bad["resolution_um"], SOLID)


def test_exact_volume_helper():
    assert exact_solid_volume([1.0]) == pytest.approx(4 / 3 * math.pi)


def test_read_sphere_data_round_trip(tmp_path):
    """A data file written by calib's placement reads back with the same spheres."""
    from sim_backends.lammps.placement import Placement, read_sphere_data, write_data_file

    pl = Placement(box_um=(30.0, 40.0, 50.0), type_ids=np.array([1, 2]), diameters_um=np.array([10.0, 7.5]),
                   densities=np.array([4.75, 0.9]), positions_um=np.array([[5.0, 6.0, 7.0], [20.0, 30.0, 40.0]]))
    write_data_file(tmp_path / "x.data", pl, n_types=2)
    d = read_sphere_data(tmp_path / "x.data")
    assert d.lo == (0.0, 0.0, 0.0) and d.hi == (30.0, 40.0, 50.0)
    assert d.types.tolist() == [1, 2] and d.diameters.tolist() == [10.0, 7.5]
    assert d.positions.tolist() == [[5.0, 6.0, 7.0], [20.0, 30.0, 40.0]]
