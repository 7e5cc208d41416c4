"""The slurry deck against its golden file, and the random placement's guarantees.

Regenerate the golden file on purpose with:  CALIB_REGEN_GOLDEN=1 pytest tests/test_slurry_deck.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from calib.fidelity import BUILTIN_FIDELITIES
from calib.stages import slurry_run_spec, slurry_system
from calib.study import load_study
from conftest import DEFAULT_STUDY
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY
from sim_backends.lammps.placement import paper_scaled_box, place_random
from sim_backends.lammps.slurry import barostat_ptemp_K, slurry_deck

GOLDEN = Path(__file__).parent / "data" / "in.slurry.smoke.golden"


def _smoke():
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = BUILTIN_FIDELITIES["smoke"]
    return loaded, fid, slurry_system(loaded.dataset, fid)


def test_deck_matches_golden_file():
    loaded, fid, system = _smoke()
    deck = slurry_deck(system, TABLE_S1_SLURRY, slurry_run_spec(loaded.spec, fid, seed=1))
    if os.environ.get("CALIB_REGEN_GOLDEN"):
        GOLDEN.write_text(deck)
    assert deck == GOLDEN.read_text()


def test_deck_states_npt_set_point_in_micro_units():
    loaded, fid, system = _smoke()
    deck = slurry_deck(system, TABLE_S1_SLURRY, slurry_run_spec(loaded.spec, fid, seed=1))
    assert "units micro" in deck
    assert "nph/sphere iso 101.325 101.325" in deck  # 1 atm in kPa
    assert "langevin 300 300" in deck and "omega yes" in deck
    assert f"run {fid.equilibration_steps}" in deck and f"run {fid.averaging_steps}" in deck
    assert "write_data final.data" in deck and "write_restart final.restart" in deck


def test_barostat_temperature_from_pv_work():
    _, _, system = _smoke()
    v = sum(t.count * np.pi / 6 * t.diameter_um**3 for t in system.types)
    kb = 1.3806504e-8  # pg um^2 us^-2 K^-1
    assert barostat_ptemp_K(system, 1.0) == __import__("pytest").approx(101.325 * v / system.n_beads / kb)


def test_placement_has_no_overlaps_and_stays_in_box():
    _, fid, system = _smoke()
    box = tuple(x * fid.initial_box_scale for x in paper_scaled_box(system.n_beads))
    p = place_random(system, box, seed=3)
    assert len(p.type_ids) == system.n_beads
    assert np.all(p.positions_um >= 0) and np.all(p.positions_um < np.array(box))
    d = p.positions_um[:, None, :] - p.positions_um[None, :, :]
    d -= np.array(box) * np.round(d / np.array(box))
    dist = np.sqrt((d**2).sum(-1))
    contact = 0.5 * (p.diameters_um[:, None] + p.diameters_um[None, :])
    np.fill_diagonal(dist, np.inf)
    assert np.all(dist >= contact)
    again = place_random(system, box, seed=3)
    assert np.array_equal(p.positions_um, again.positions_um)
