"""The slurry deck's protocols (``seed``, the public inputs': npt/sphere with the pressure
ramped over the whole run; ``ramp_hold``: a ramp, then a hold at the set point until the
density plateaus) and their compression, checked line by line against hand-written
expectations, and the random placement's guarantees."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
import pytest

from calib.spec.fidelity import BUILTIN_FIDELITIES
from calib.stages.slurry_runs import slurry_run_spec
from calib.stages.bead_systems import slurry_system
from calib.study.load import load_study
from conftest import DEFAULT_STUDY
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY
from sim_backends.lammps.placement import paper_scaled_box, place_random
from sim_backends.lammps.slurry import SlurryRunSpec, slurry_deck


def _smoke():
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = BUILTIN_FIDELITIES["smoke"]
    return loaded, fid, slurry_system(loaded.dataset, fid)


def test_ramp_hold_deck_ramps_then_holds_until_the_plateau():
    loaded, fid, system = _smoke()
    loaded = loaded.with_section("slurry", protocol="ramp_hold")
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


def test_seed_deck_ramps_over_the_whole_compressed_run():
    """Smoke runs the seed protocol (the default; 2e7 steps at k = 1) compressed 1000-fold
    under the undamped law: 20,000 steps, Tdamp = 0.2 x 1000^2 us, the public T, Pdamp and
    step; one ramp 0 -> 1 atm over the whole run, 200 density blocks of 100 steps, no hold."""
    loaded, fid, system = _smoke()
    assert loaded.spec.slurry.protocol == "seed" and loaded.spec.slurry.compression_law == "undamped"
    assert fid.compression == 1000
    run = slurry_run_spec(loaded.spec, fid, seed=1)
    lines = slurry_deck(system, TABLE_S1_SLURRY, run).splitlines()
    ramp = "fix npt all npt/sphere temp 300 300 200000 iso 0 101.325 1000"
    assert ramp in lines and lines[lines.index(ramp) + 1] == "run 20000"
    assert "timestep 0.001" in lines and "velocity all create 300 107919 dist gaussian mom yes rot yes" in lines
    assert 'fix rho_blocks all ave/time 10 10 100 v_rho file density_blocks.txt format " %.17g"' in lines
    assert [ln.split()[3] for ln in lines if ln.startswith("fix ")] == ["ave/time", "npt/sphere"]
    assert not any("plateau" in ln or ln.startswith("label") for ln in lines)
    assert lines[-3:] == ['print "blocks $(step/100) stopped $(step<20000) steps $(step)" file density_status.txt',
                          "write_data final.data", "write_restart final.restart"]
    assert not any("halt" in ln for ln in lines)  # no band: the whole protocol


def test_a_band_halts_on_the_block_mean_after_the_blocks_are_averaged():
    """``halt_above_g_cm3``: fix halt every block on the block mean (in LAMMPS micro units,
    the units module's conversion), defined after the averaging fix so it reads the block
    just completed; seed protocol only."""
    from dataclasses import replace

    from sim_backends.lammps.slurry import SlurryRunSpec
    from sim_backends.lammps.units import g_cm3_to_micro_density

    loaded, fid, system = _smoke()
    run = replace(slurry_run_spec(loaded.spec, fid, seed=1), halt_above_g_cm3=2.09)
    lines = slurry_deck(system, TABLE_S1_SLURRY, run).splitlines()
    halt = f"fix band_stop all halt 100 v_rho_block > {g_cm3_to_micro_density(2.09):.10g} error soft"
    assert halt in lines and "variable rho_block equal f_rho_blocks" in lines
    assert [ln.split()[3] for ln in lines if ln.startswith("fix ")] == ["ave/time", "npt/sphere", "halt"]
    assert lines[lines.index(halt) + 1] == "run 20000"
    with pytest.raises(ValueError, match="halt_above_g_cm3 needs protocol seed"):
        SlurryRunSpec(halt_above_g_cm3=2.0)  # ramp_hold
    with pytest.raises(ValueError, match="halt_above_g_cm3 needs protocol seed"):
        replace(run, halt_above_g_cm3=0.0)


def test_compression_laws_against_hand_computed_settings():
    """k = 10 on the public protocol (2e7 steps of 0.001 us, 300 K, Tdamp 0.2, Pdamp 1000):
    undamped: 2e6 steps with Tdamp 20 us (0.2 x 10^2), T, Pdamp and step kept;
    temperature: 2e6 steps at 30,000 K; thermal: also Tdamp 0.02 and Pdamp 100 us, so the
    barostat mass ~ T Pdamp^2 = 3e8 K us^2 stays; timestep: 2e6 steps of 0.01 us."""
    from sim_backends.lammps.compression import NptProtocol, barostat_mass_factor, compress

    full = NptProtocol(steps=20_000_000, timestep_us=0.001, temperature_K=300.0, tdamp_us=0.2, pdamp_us=1000.0)
    assert compress(full, 1) is full
    u = compress(full, 10)
    assert (u.steps, u.timestep_us, u.temperature_K, u.pdamp_us) == (2_000_000, 0.001, 300.0, 1000.0)
    assert u.tdamp_us == pytest.approx(20.0)
    assert compress(full, 100, "undamped").tdamp_us == pytest.approx(2000.0)
    t = compress(full, 10, "temperature")
    assert (t.steps, t.timestep_us, t.temperature_K, t.tdamp_us, t.pdamp_us) == (2_000_000, 0.001, 30_000.0, 0.2,
                                                                                  1000.0)
    th = compress(full, 10, "thermal")
    assert (th.steps, th.temperature_K) == (2_000_000, 30_000.0)
    assert th.tdamp_us == pytest.approx(0.02) and th.pdamp_us == pytest.approx(100.0)
    assert barostat_mass_factor(th) == pytest.approx(barostat_mass_factor(full)) == pytest.approx(3e8)
    assert th.duration_us == pytest.approx(full.duration_us / 10)
    ts = compress(full, 10, "timestep")
    assert (ts.steps, ts.temperature_K) == (2_000_000, 300.0) and ts.timestep_us == pytest.approx(0.01)
    assert ts.duration_us == pytest.approx(full.duration_us)
    for bad in (0, -1, 2.5, True, 3):  # 3 does not divide 2e7
        with pytest.raises(ValueError):
            compress(full, bad)
    with pytest.raises(ValueError):
        compress(full, 10, "faster")


GOLDEN_DECK = Path(__file__).parent / "golden" / "slurry_seed_protocol_table_s1.in"
"""The slurry deck of the default study's protocol uncompressed (the seed's: smoke's 200 beads
at k = 1), Table S1 slurry column, seed 1, the neighbor style a trial resolves ('auto' ->
multi): checked in, reviewed against
MODEL_NOTES.md (see ``test_golden_deck_holds_the_seed_model``), never written by a normal
test run."""
UPDATE_GOLDEN = "CALIB_UPDATE_GOLDEN"
"""``CALIB_UPDATE_GOLDEN=1`` rewrites the golden deck from the code (and fails, so that the
new file is reviewed and committed before the test passes again)."""


def _golden_case_deck() -> str:
    from calib.stages.slurry_settings import neighbor_style

    loaded, fid, system = _smoke()
    loaded = loaded.with_section("slurry", protocol="seed")
    fid = fid.model_copy(update={"compression": 1})
    run = slurry_run_spec(loaded.spec, fid, seed=1, neighbor=neighbor_style(fid, TABLE_S1_SLURRY, system))
    return slurry_deck(system, TABLE_S1_SLURRY, run)


def test_deck_matches_the_checked_in_golden():
    deck = _golden_case_deck()
    if os.environ.get(UPDATE_GOLDEN) == "1":
        GOLDEN_DECK.write_text(deck)
        pytest.fail(f"{GOLDEN_DECK} rewritten from the code ({UPDATE_GOLDEN}=1): review its diff against "
                    f"MODEL_NOTES.md, commit it, and rerun without {UPDATE_GOLDEN}")
    assert GOLDEN_DECK.is_file(), f"{GOLDEN_DECK} is missing: it is checked in, not generated by the tests"
    want = GOLDEN_DECK.read_text()
    if deck != want:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), deck.splitlines(keepends=True),
                                            fromfile=f"golden/{GOLDEN_DECK.name}", tofile="slurry_deck()"))
        pytest.fail(f"the slurry deck differs from the checked-in golden (if the change is intended, rerun with "
                    f"{UPDATE_GOLDEN}=1 and review the new file):\n{diff}")


def test_golden_deck_holds_the_seed_model():
    """The checked-in golden itself, against the seed's model written out by hand
    (MODEL_NOTES.md): micro units, spheres with ghost velocities, LJ (lj/cut) overlaid on one
    Hertzian law with kt/kn = 1.378 and gamma_t/gamma_n = 0.959, Table S1 slurry multipliers
    of the dry diameters (AM 10 um; SE 2 um smallest class; CBD at its solid 3 um bead),
    Lorentz-Berthelot-like cross terms, dt 0.001 us, npt/sphere at 300 K (Tdamp 0.2 us,
    Pdamp 1000 us) ramped 0 -> 1 atm (101.325 kPa) over the public 2e7 steps, density
    written in 200 blocks, no other integrator or thermostat."""
    lines = GOLDEN_DECK.read_text().splitlines()
    for line in ("units micro", "atom_style sphere", "boundary p p p", "comm_modify vel yes", "read_data system.data",
                 "timestep 0.001", "pair_coeff * * gran/hertz/history"):
        assert line in lines, line
    kn, gamma_n, xu = 0.1, 55.0, 0.016
    assert (f"pair_style hybrid/overlay lj/cut 15 gran/hertz/history {kn:g} {1.378 * kn:g} {gamma_n:g} "
            f"{0.959 * gamma_n:g} {xu:g} 1") in lines  # global cutoff: the largest rc, AM's 1.5 x 10 um
    am = (1.0 * 10, 0.99 * 10, 1.5 * 10)
    se2 = (10.5 * 2, 0.99 * 2, 1.5 * 2)
    cbd = (0.88 * 3.0, 0.97 * 3.0, 2.2 * 3.0)

    def coeff(i: int, j: int) -> tuple[float, float, float]:
        (line,) = [ln for ln in lines if ln.startswith(f"pair_coeff {i} {j} lj/cut ")]
        return tuple(float(x) for x in line.split()[4:7])

    assert coeff(1, 1) == pytest.approx(am) and coeff(2, 2) == pytest.approx(se2)
    assert coeff(7, 7) == pytest.approx(cbd)
    assert coeff(1, 2) == pytest.approx(((am[0] * se2[0]) ** 0.5, (am[1] + se2[1]) / 2, (am[2] + se2[2]) / 2),
                                        rel=1e-5)
    assert coeff(1, 7) == pytest.approx(((am[0] * cbd[0]) ** 0.5, (am[1] + cbd[1]) / 2, (am[2] + cbd[2]) / 2),
                                        rel=1e-5)
    assert sum(ln.startswith("pair_coeff ") and " lj/cut " in ln for ln in lines) == 7 * 8 // 2  # 7 types
    fixes = [ln.split()[3] for ln in lines if ln.startswith("fix ")]
    assert fixes == ["ave/time", "npt/sphere"]
    ramp = lines.index("fix npt all npt/sphere temp 300 300 0.2 iso 0 101.325 1000")
    assert lines[ramp + 1] == "run 20000000"
    assert 'fix rho_blocks all ave/time 10000 10 100000 v_rho file density_blocks.txt format " %.17g"' in lines
    assert "neighbor 1 multi" in lines  # polydisperse beads: multi binning (auto)
    assert lines[-2:] == ["write_data final.data", "write_restart final.restart"]


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
    from calib.stages.slurry_settings import neighbor_style
    from sim_backends.lammps.beads import Formulation, Phase, SizeClass, build_slurry_system

    _, fid, system = _smoke()
    assert fid.neighbor_style == "auto"
    assert neighbor_style(fid, TABLE_S1_SLURRY, system) == "multi"  # AM rc 15 um, SE 2 um: rc 3 um
    mono = build_slurry_system(Formulation((Phase("AM", 1.0, 4.75, (SizeClass(10.0, 1.0),), 1.14),)), 50)
    assert neighbor_style(fid, TABLE_S1_SLURRY, mono) == "bin"
    assert neighbor_style(fid.model_copy(update={"neighbor_style": "bin"}), TABLE_S1_SLURRY, system) == "bin"
