"""Transport and networks on voxel images against exact answers (issue 11: layered slabs in
series and in parallel, straight channels, within 1 %), plus the periodic lateral faces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_backends.networks import phase_network, pore_network
from sim_backends.transport import (effective_conductivity, fv_relative_diffusivity, geometric_tortuosity,
                                    relative_diffusivity)

SIGMA_AM, SIGMA_CBD = 0.005, 15.93  # S/m, seed Sec. 2.4


def _slabs(shape, axis, labels):
    """Equal slabs of ``labels`` stacked along ``axis``."""
    img = np.zeros(shape, dtype=np.uint8)
    n = shape[axis]
    for i, lab in enumerate(labels):
        sl = [slice(None)] * 3
        sl[axis] = slice(i * n // len(labels), (i + 1) * n // len(labels))
        img[tuple(sl)] = lab
    return img


@pytest.mark.parametrize("sigmas", [(1.0, 10.0), (SIGMA_AM, SIGMA_CBD)])
def test_series_slabs_give_the_harmonic_mean(sigmas):
    a, b = sigmas
    img = _slabs((8, 8, 20), 2, (1, 2))  # layers across the transport direction z
    res = effective_conductivity(img, {1: a, 2: b})
    exact = 2 * a * b / (a + b)
    assert res.converged and res.percolating
    assert res.effective == pytest.approx(exact, rel=0.01)


@pytest.mark.parametrize("sigmas", [(1.0, 10.0), (SIGMA_AM, SIGMA_CBD)])
def test_parallel_slabs_give_the_arithmetic_mean(sigmas):
    a, b = sigmas
    img = _slabs((12, 6, 16), 0, (1, 2, 0))  # columns along z: AM, CBD, insulating pore
    res = effective_conductivity(img, {1: a, 2: b})
    assert res.converged
    assert res.effective == pytest.approx((a + b) / 3, rel=0.01)


@pytest.mark.parametrize("solver", [relative_diffusivity, fv_relative_diffusivity])
def test_straight_channels_diffuse_by_their_fraction_with_unit_tortuosity(solver):
    mask = np.zeros((10, 10, 24), dtype=bool)
    mask[2:4, 2:5, :] = True  # two straight channels along z
    mask[7, 6:9, :] = True
    res = solver(mask)
    eta = mask.mean()
    assert res.effective == pytest.approx(eta, rel=0.01)
    assert geometric_tortuosity(eta, res.effective) == pytest.approx(1.0, rel=0.01)


def test_a_detour_through_the_periodic_faces_conducts_and_lengthens_the_path():
    """The lower half of the conductor sits at x = 0, the upper half at x = nx - 1: they touch
    only across the periodic x faces. The path conducts, with a lower conductivity than the
    straight column of the same cross-section."""
    nx, nz = 8, 16
    img = np.zeros((nx, 4, nz), dtype=np.uint8)
    img[0, :, : nz // 2 + 1] = 1
    img[nx - 1, :, nz // 2 - 1:] = 1
    bent = effective_conductivity(img, {1: 1.0})
    straight = np.zeros_like(img)
    straight[0, :, :] = 1
    ref = effective_conductivity(straight, {1: 1.0})
    assert bent.percolating and ref.percolating
    assert ref.effective == pytest.approx(1 / nx, rel=0.01)  # one column of 8: fraction 1/8
    assert 0 < bent.effective < ref.effective


def test_nothing_percolates_gives_zero_and_infinite_tortuosity():
    mask = np.zeros((6, 6, 10), dtype=bool)
    mask[:, :, :4] = True  # touches the bottom only
    res = relative_diffusivity(mask)
    assert not res.percolating and res.effective == 0.0
    assert math.isinf(geometric_tortuosity(mask.mean(), res.effective))
    assert effective_conductivity(mask.astype(np.uint8), {1: 1.0}).effective == 0.0


def test_refuses_a_non_positive_conductivity():
    with pytest.raises(ValueError, match="positive"):
        effective_conductivity(np.ones((3, 3, 3), dtype=np.uint8), {1: 0.0})


def test_se_network_counts_the_percolating_fraction_across_the_periodic_faces():
    mask = np.zeros((8, 8, 10), dtype=bool)
    mask[0, 0, :] = True  # a full-height column: 10 voxels
    mask[4, 4, 2:5] = True  # an island: 3 voxels
    mask[7, 3, :5] = True  # lower half at x = 7 ...
    mask[0, 3, 4:] = True  # ... joined to the upper half at x = 0 across the periodic face: 11 voxels
    net = phase_network(mask)
    assert net.clusters == 3
    assert net.connected_fraction == pytest.approx(21 / 24)
    assert net.largest_cluster_fraction == pytest.approx(11 / 24)
    assert net.volume_fraction == pytest.approx(24 / mask.size)


def test_pore_network_finds_two_spherical_pores_and_their_throat():
    """Two spherical pores of radius 6 voxels joined by a cylindrical throat of radius 2:
    two pores of inscribed diameter ~12 voxels, one throat of ~4 voxels (at 0.5 um: 6 and 2 um)."""
    n = 40
    x, y, z = np.meshgrid(np.arange(n), np.arange(24), np.arange(24), indexing="ij")
    pores = ((x - 10) ** 2 + (y - 12) ** 2 + (z - 12) ** 2 <= 36) | ((x - 29) ** 2 + (y - 12) ** 2 + (z - 12) ** 2 <= 36)
    pores |= (x >= 10) & (x <= 29) & ((y - 12) ** 2 + (z - 12) ** 2 <= 4)
    net = pore_network(pores, 0.5)
    assert len(net.pore_diameters_um) == 2
    assert all(d == pytest.approx(6.0, abs=1.0) for d in net.pore_diameters_um)
    assert len(net.throat_diameters_um) == 1
    assert net.throat_diameters_um[0] == pytest.approx(2.0, abs=0.6)


def test_diffusivity_agrees_with_taufactor_on_a_random_packing():
    """TauFactor's periodic SOR solver and the conductivity solver (sigma = 1 in the phase)
    agree within 1 % on the same image."""
    rng = np.random.default_rng(3)
    x, y, z = np.meshgrid(np.arange(24), np.arange(24), np.arange(24), indexing="ij")
    mask = np.zeros((24, 24, 24), dtype=bool)
    for c in rng.uniform(0, 24, size=(40, 3)):
        d = [np.minimum(abs(a - ca), 24 - abs(a - ca)) if i < 2 else abs(a - ca) for i, (a, ca) in enumerate(zip((x, y, z), c))]
        mask |= d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= 16
    ref = relative_diffusivity(mask)
    ours = fv_relative_diffusivity(mask)
    assert ours.percolating and ref.converged
    assert 0 < ours.effective < mask.mean()
    assert ours.effective == pytest.approx(ref.effective, rel=0.01)
