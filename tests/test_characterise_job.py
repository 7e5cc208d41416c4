"""The characterisation job (``sim_backends.characterise``) on a small lattice film, real
solvers: the conductivity it reports is the contact network's (issue 27) with the voxel
solve beside it, or the voxel solve's on request; likewise the SE's D_eff/D_0; a voxel SE's
resolution error is the second, coarser solve's difference, as its docstring states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim_backends.characterise import (COARSE_RATIO, ION_KEPT_EXPONENT, SAFETY_FACTOR, CharacteriseSpec,
                                      characterise)
from sim_backends.lammps.placement import Placement, write_data_file
from sim_backends.particle_network import network_conductivity

SPACING, DIAMETER, NX, NZ = 2.8, 3.0, 4, 7  # um: neighbours overlap (necks of 0.36 radii)


def _film(path: Path) -> Path:
    """A simple cubic film of 3 um beads 2.8 um apart: SE columns on a checkerboard (each
    column spans the film), AM and CBD alternating in the others; the collector at z = 0."""
    pos, types = [], []
    for i in range(NX):
        for j in range(NX):
            for k in range(NZ):
                pos.append(((i + 0.5) * SPACING, (j + 0.5) * SPACING, 1.3 + k * SPACING))
                types.append(3 if (i + j) % 2 == 0 else (1 if k % 2 == 0 else 2))
    n = len(types)
    box = (NX * SPACING, NX * SPACING, 1.3 + NZ * SPACING + 2.0)
    write_data_file(path, Placement(box, np.array(types), np.full(n, DIAMETER), np.full(n, 2.0), np.array(pos)),
                    n_types=3)
    return path


def _spec(film: Path, resolution_um: float = 0.5, **kw) -> CharacteriseSpec:
    return CharacteriseSpec(state_file=str(film), phase_of_type={"1": "AM", "2": "CBD", "3": "SE"},
                            solid_radius_um_of_type={t: DIAMETER / 2 for t in ("1", "2", "3")}, nanoporosity={},
                            resolution_um=resolution_um, conductivity_s_m={"AM": 0.005, "CBD": 15.93}, pore_network=False, **kw)


def test_the_job_reports_the_network_conductivity_with_the_voxel_solve_beside_it(tmp_path: Path):
    film = _film(tmp_path / "film.data")
    out = characterise(_spec(film), tmp_path, log=lambda m: None)
    assert out["conductivity_method"] == "network" and out["conductivity_converged"]
    net = out["conductivity_network"]
    assert out["conductivity_s_m"] == net["effective"] > 0
    # the same network, built here from the film's beads between the collector and the analysed top
    pos = np.array([[(i + 0.5) * SPACING, (j + 0.5) * SPACING, 1.3 + k * SPACING]
                    for i in range(NX) for j in range(NX) for k in range(NZ)])
    sig = np.array([0.0 if (i + j) % 2 == 0 else (0.005 if k % 2 == 0 else 15.93)
                    for i in range(NX) for j in range(NX) for k in range(NZ)])
    again = network_conductivity(pos, np.full(len(pos), DIAMETER / 2), sig, (NX * SPACING, NX * SPACING), 0.0,
                                 out["analysed_thickness_um"], cut_by_neighbours=True)
    assert out["conductivity_s_m"] == pytest.approx(again.effective, rel=1e-9)
    # the 0.5 um voxel solve of the same film is the cross-check: the same order of magnitude
    assert 0.5 < out["conductivity_voxel_s_m"] / out["conductivity_s_m"] < 2.0
    voxel = characterise(_spec(film, conductivity_method="voxel"), tmp_path, log=lambda m: None)
    assert voxel["conductivity_s_m"] == voxel["conductivity_voxel_s_m"]
    assert voxel["conductivity_s_m"] == pytest.approx(out["conductivity_voxel_s_m"], rel=1e-8)  # the same solve


def test_the_se_comes_from_the_contact_network_with_the_voxel_solve_beside_it(tmp_path: Path):
    film = _film(tmp_path / "film.data")
    out = characterise(_spec(film), tmp_path, log=lambda m: None)
    assert out["se_method"] == "network" and out["se_converged"] and out["se_resolution_error"] is None
    pos = np.array([[(i + 0.5) * SPACING, (j + 0.5) * SPACING, 1.3 + k * SPACING]
                    for i in range(NX) for j in range(NX) for k in range(NZ)])
    ion = np.array([1.0 if (i + j) % 2 == 0 else 0.0 for i in range(NX) for j in range(NX) for k in range(NZ)])
    again = network_conductivity(pos, np.full(len(pos), DIAMETER / 2), ion, (NX * SPACING, NX * SPACING), 0.0,
                                 out["analysed_thickness_um"], cut_by_neighbours=True, kept_exponent=ION_KEPT_EXPONENT)
    assert out["se_diffusivity_rel"] == pytest.approx(again.effective, rel=1e-9) and again.effective > 0
    assert out["se_tortuosity"] == pytest.approx((out["fractions"]["SE"] / again.effective) ** 0.5)
    assert 0.5 < out["se_diffusivity_voxel_rel"] / out["se_diffusivity_rel"] < 2.0  # the cross-check
    voxel = characterise(_spec(film, se_method="voxel"), tmp_path, log=lambda m: None)
    assert voxel["se_diffusivity_rel"] == pytest.approx(out["se_diffusivity_voxel_rel"], rel=1e-8)  # the same solve
    assert voxel["se_resolution_error"]["d_rel"] is not None


def test_the_se_resolution_error_is_the_two_grid_convergence_index(tmp_path: Path):
    out = characterise(_spec(_film(tmp_path / "film.data"), se_method="voxel"), tmp_path, log=lambda m: None)
    err = out["se_resolution_error"]
    h, h_c = out["resolution_um"], err["resolution_um"]
    assert h_c == pytest.approx(h * COARSE_RATIO, rel=0.05)  # the coarse grid fits the box
    assert out["se_diffusivity_rel"] > 0 and err["d_rel_coarse"] > 0
    assert SAFETY_FACTOR == 3.0  # Roache's two-grid factor of safety
    assert err["d_rel"] == pytest.approx(3.0 * abs(out["se_diffusivity_rel"] - err["d_rel_coarse"]) / (h_c / h - 1))
    assert err["tau"] == pytest.approx(3.0 * abs(out["se_tortuosity"] - err["tau_coarse"]) / (h_c / h - 1))


def test_no_coarser_grid_below_three_voxels_a_bead(tmp_path: Path):
    # 1.0 um voxels: 3 across the 3 um beads, the 1.25 um coarse grid would give 2.4
    out = characterise(_spec(_film(tmp_path / "film.data"), resolution_um=1.0, se_method="voxel"), tmp_path,
                       log=lambda m: None)
    assert out["se_resolution_error"]["d_rel"] is None and "3 voxels" in out["se_resolution_error"]["why"]
