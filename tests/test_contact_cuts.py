"""The contact rule on voxel images (``microstructure.contact_cuts``, issue 27): faces between
voxels of two beads that do not overlap pass nothing, so a transport solve joins beads only
where they overlap (the contact network's rule), at any voxel size. Real voxelisation and
the real finite-volume solver; pure geometry, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

from sim_backends.microstructure import Packing, contact_cuts, voxelise
from sim_backends.transport import fv_relative_diffusivity

SOLID = {"SE": 1.0, "AM": 1.0}


def _solve(centres, radii, box, h, cut: bool):
    p = Packing(np.asarray(centres, float), np.asarray(radii, float), ("SE",) * len(radii), (0.0, 0.0, 0.0), box)
    vox = voxelise(p, h, SOLID, overlap="power", owners=True)
    cuts = contact_cuts(vox, p.centres, p.radii, box[:2]) if cut else None
    return fv_relative_diffusivity(vox.labels == 1, cuts=cuts), vox


def test_owners_are_the_painting_spheres():
    centres, radii = [[3.0, 3.0, 3.0], [6.5, 3.0, 3.0]], [2.0, 2.0]
    p = Packing(np.asarray(centres, float), np.asarray(radii, float), ("SE", "AM"), (0.0, 0.0, 0.0), (10.0, 6.0, 6.0))
    vox = voxelise(p, 0.25, SOLID, overlap="power", owners=True)
    code = {n: k + 1 for k, n in enumerate(vox.names)}
    assert np.all((vox.owner == 0) == (vox.labels == code["SE"]))
    assert np.all((vox.owner == 1) == (vox.labels == code["AM"]))
    assert np.all((vox.owner == -1) == (vox.labels == 0))
    assert voxelise(p, 0.25, SOLID, overlap="power").owner is None
    with pytest.raises(ValueError, match="owners"):
        contact_cuts(voxelise(p, 0.25, SOLID), p.centres, p.radii, (10.0, 6.0))


def test_a_gap_narrower_than_a_voxel_conducts_only_without_the_cuts():
    """Two unit spheres on the z axis 0.02 um apart, each cut by an electrode: the 0.25 um
    grid closes the gap (a voxel-wide bridge carries current); with the contact rule nothing
    passes, as the network and any grid finer than the gap say."""
    box = (3.0, 3.0, 4.02)
    centres = [[1.5, 1.5, 1.0], [1.5, 1.5, 3.02]]
    open_, vox = _solve(centres, [1.0, 1.0], box, 0.25, cut=False)
    cut, _ = _solve(centres, [1.0, 1.0], box, 0.25, cut=True)
    assert open_.effective > 0.0 and open_.percolating
    assert cut.effective == 0.0 and not cut.percolating
    cz = contact_cuts(vox, np.array(centres), np.ones(2), box[:2])[2]
    assert cz.sum() > 0 and not contact_cuts(vox, np.array(centres), np.ones(2), box[:2])[0].any()


def test_overlapping_beads_lose_nothing():
    """Two overlapping spheres (0.2 um deep): the cuts remove no face between them, so the
    solve is the same with and without them."""
    box = (3.0, 3.0, 3.8)
    centres = [[1.5, 1.5, 1.0], [1.5, 1.5, 2.8]]
    open_, vox = _solve(centres, [1.0, 1.0], box, 0.1, cut=False)
    cut, _ = _solve(centres, [1.0, 1.0], box, 0.1, cut=True)
    assert open_.effective > 0.0
    assert cut.effective == pytest.approx(open_.effective, rel=1e-9)
    assert not any(c.any() for c in contact_cuts(vox, np.array(centres, float), np.ones(2), box[:2]))


@pytest.mark.parametrize("x1, x2, overlap", [(0.68, 2.32, True), (0.72, 2.28, False)])
def test_pairs_meeting_through_the_periodic_face_are_judged_by_their_nearest_images(x1, x2, overlap):
    """Spheres of 0.7 um at x1 and x2 in a 3 um box meet through the periodic x face (x = 0 =
    3): 1.36 um apart through it (overlapping) or 1.44 um (a 0.04 um gap), 1.64 and 1.56 um
    apart inside the box (no overlap either way). Only the nearest images decide the cut."""
    box = (3.0, 3.0, 3.0)
    p = Packing(np.array([[x1, 1.5, 1.5], [x2, 1.5, 1.5]]), np.full(2, 0.7), ("SE", "SE"), (0.0, 0.0, 0.0), box)
    vox = voxelise(p, 0.1, SOLID, overlap="power", owners=True)
    assert vox.owner[0, 15, 15] == 0 and vox.owner[-1, 15, 15] == 1  # the pair meets across the face
    cx = contact_cuts(vox, p.centres, p.radii, box[:2])[0]
    assert cx[-1].any() != overlap  # the faces between the last and the first x layer
    assert not cx[:-1].any()  # nowhere else: no other pair of beads meets


def test_owners_under_the_rank_rule_follow_the_labels():
    centres, radii = [[3.0, 3.0, 3.0], [5.5, 3.0, 3.0]], [2.0, 2.0]
    p = Packing(np.asarray(centres, float), np.asarray(radii, float), ("CBD", "AM"), (0.0, 0.0, 0.0), (10.0, 6.0, 6.0))
    vox = voxelise(p, 0.25, {"CBD": 0.5, "AM": 1.0}, owners=True)  # rank: the lens goes to AM whole
    code = {n: k + 1 for k, n in enumerate(vox.names)}
    assert np.all((vox.owner == 1) == (vox.labels == code["AM"]))
    assert np.all((vox.owner == 0) == (vox.labels == code["CBD"]))
