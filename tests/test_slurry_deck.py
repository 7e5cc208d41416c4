"""The slurry deck's protocol (public inputs: npt/sphere with a pressure ramp, then a hold at
the set point until the density plateaus), checked line by line against hand-written
expectations, and the random placement's guarantees."""

from __future__ import annotations

import numpy as np
import pytest

from calib.fidelity import BUILTIN_FIDELITIES
from calib.stages.slurry import slurry_run_spec
from calib.stages.system import slurry_system
from calib.study import load_study
from conftest import DEFAULT_STUDY
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY
from sim_backends.lammps.placement import paper_scaled_box, place_random
from sim_backends.lammps.slurry import SlurryRunSpec, slurry_deck


def _smoke():
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = BUILTIN_FIDELITIES["smoke"]
    return loaded, fid, slurry_system(loaded.dataset, fid)


def test_deck_follows_the_public_npt_protocol_in_micro_units():
    loaded, fid, system = _smoke()
    run = slurry_run_spec(loaded.spec, fid, seed=1)
    lines = slurry_deck(system, TABLE_S1_SLURRY, run).splitlines()
    assert "units micro" in lines and "atom_style sphere" in lines and "comm_modify vel yes" in lines
    # ramp 0 -> 1 atm (101.325 kPa) with the public damping, then the hold at 1 atm
    assert "fix npt all npt/sphere temp 300 300 0.2 iso 0 101.325 1000" in lines
    assert "fix npt all npt/sphere temp 300 300 0.2 iso 101.325 101.325 1000" in lines
    ramp = lines.index("fix npt all npt/sphere temp 300 300 0.2 iso 0 101.325 1000")
    assert lines[ramp + 1] == f"run {fid.equilibration_steps}"
    # the density blocks start before the ramp (the whole trajectory), at full precision
    blocks = next(i for i, ln in enumerate(lines) if ln.startswith("fix rho_blocks"))
    assert blocks < ramp and lines[blocks].endswith('file density_blocks.txt format " %.17g"')
    assert f"variable blk loop {fid.max_steps // fid.block_steps}" in lines
    assert f"run {fid.block_steps}" in lines
    assert 'if "${plateau} > 0" then "variable stopped equal 1" "jump SELF density_done"' in lines
    assert not any("langevin" in ln or "nph" in ln for ln in lines)
    assert lines.index("write_data final.data") > lines.index("label density_done")


def test_plateau_variable_encodes_the_window_test():
    run = SlurryRunSpec(ramp_steps=2000, block_steps=1000, sample_every=10, window_blocks=4, averaging_blocks=4,
                        min_hold_blocks=6, max_hold_blocks=8, tolerance_rel=0.01)
    _, _, system = _smoke()
    deck = slurry_deck(system, TABLE_S1_SLURRY, run)
    assert "variable half_a equal (v_w1+v_w2)/2" in deck and "variable half_b equal (v_w3+v_w4)/2" in deck
    assert ('variable plateau equal "v_blocks_done >= 6 && abs(v_half_b - v_half_a) <= 0.01'
            '*abs(v_win_mean)"') in deck
    no_stop = slurry_deck(system, TABLE_S1_SLURRY, SlurryRunSpec(**{**run.__dict__, "early_stop": False}))
    assert "jump SELF density_done" not in no_stop


@pytest.mark.parametrize("bad", [{"window_blocks": 5}, {"window_blocks": 2, "averaging_blocks": 2,
                                                        "min_hold_blocks": 2},
                                 {"averaging_blocks": 20}, {"ramp_steps": 1500}])
def test_run_spec_refuses_inconsistent_windows(bad):
    base = dict(ramp_steps=2000, block_steps=1000, sample_every=10, window_blocks=4, averaging_blocks=4,
                min_hold_blocks=6, max_hold_blocks=8)
    with pytest.raises(ValueError):
        SlurryRunSpec(**{**base, **bad})


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


def test_auto_neighbor_binning_is_multi_for_polydisperse_beads_only():
    from calib.stages.slurry import neighbor_style
    from sim_backends.lammps.beads import Formulation, Phase, SizeClass, build_slurry_system

    _, fid, system = _smoke()
    assert fid.neighbor_style == "auto"
    assert neighbor_style(fid, TABLE_S1_SLURRY, system) == "multi"  # AM rc 15 um, SE 2 um: rc 3 um
    mono = build_slurry_system(Formulation((Phase("AM", 1.0, 4.75, (SizeClass(10.0, 1.0),), 1.14),)), 50)
    assert neighbor_style(fid, TABLE_S1_SLURRY, mono) == "bin"
    assert neighbor_style(fid.model_copy(update={"neighbor_style": "bin"}), TABLE_S1_SLURRY, system) == "bin"
