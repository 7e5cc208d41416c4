"""The drying protocol written as a chain of LAMMPS inputs (``drying_segments``,
``drying_segment_deck``; the bench's ``--chunk-steps``): against the single-run deck, the
segments follow the same pressure ramp, keep the fix IDs, chain their restarts, add up to the
same steps, and the last mounts the film as the single run does. The last test runs a tiny
chain in real LAMMPS and checks that the restart state (barostat, contact history) is taken up."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ssb_formulation, ssb_system
from sim_backends.lammps.beads import dried_system
from sim_backends.lammps.drying import (DRIED_DATA, DRYING_END_RESTART, DRYING_HOLD_DECK, DRYING_STATUS, LZ_FILE,
                                        UPSTREAM_DATA, DryingRunSpec, drying_deck, drying_hold_deck,
                                        drying_segment_deck, drying_segments, drying_status, write_drying_inputs,
                                        write_drying_segments)
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, WallContact, pair_lines
from sim_backends.lammps.outputs import SimulationFailed, read_ave_time

WALL = WallContact.of(TABLE_S1_DRIED)
RUN_RE = re.compile(r"^run (\d+)(?: start (\d+) stop (\d+))?$", re.M)
NPT_RE = re.compile(r"^fix dry_npt all npt/sphere temp \S+ \S+ \S+ z (\S+) (\S+) \S+$", re.M)


def _systems(n: int = 200):
    slurry = ssb_system(n)
    return slurry, dried_system(slurry, ssb_formulation())


def _ramp(deck: str, npt_start: int = 0):
    """(first step, last step, target pressure at a step) of the deck's NPT(z) run: LAMMPS's
    fix nh ramps p_start -> p_stop linearly from the run's ``start`` to its ``stop`` (default:
    the run's own first and last step)."""
    p_start, p_stop = map(float, NPT_RE.search(deck).groups())
    m = RUN_RE.search(deck, deck.index("fix dry_npt"))
    n = int(m.group(1))
    start, stop = (int(m.group(2)), int(m.group(3))) if m.group(2) else (npt_start, npt_start + n)
    return npt_start, npt_start + n, lambda step: p_start + (step - start) / (stop - start) * (p_stop - p_start)


def _fix_ids(deck: str) -> list[str]:
    return re.findall(r"^fix (\S+) ", deck, re.M)


@pytest.mark.parametrize("total, chunk", [(25_000, 10_000), (40_000, 10_000), (70_000_000, 5_000_000)])
def test_segments_follow_the_single_runs_ramp_and_chain_their_restarts(total, chunk):
    slurry, dried = _systems()
    run = DryingRunSpec(wall=WALL, equilibration_steps=total, mount_steps=567)
    single = drying_deck(slurry, dried, TABLE_S1_DRIED, run)
    _, _, p_single = _ramp(single)
    segs = drying_segments(run, chunk)
    decks = [drying_segment_deck(slurry, dried, TABLE_S1_DRIED, run, s) for s in segs]
    assert len(segs) == -(-total // chunk)
    assert sum(s.steps for s in segs) == total  # the steps add up
    assert [s.first_step for s in segs] == [0] + [s.last_step for s in segs[:-1]]
    assert segs[-1].last_step == total

    npt_line = NPT_RE.search(single).group(0)
    first = 0
    for seg, deck in zip(segs, decks):
        lo, hi, p = _ramp(deck, first)
        assert (lo, hi) == (seg.first_step, seg.last_step)
        for step in (lo, (lo + hi) // 2, hi):  # the target pressure is the single run's at every step
            assert p(step) == pytest.approx(p_single(step), rel=1e-12, abs=1e-12)
        assert NPT_RE.search(deck).group(0) == npt_line  # same fix, same ID (state restored from the restart)
        assert _fix_ids(deck)[:2] == ["dry_npt", "lz_blocks"]
        first = hi
    # the ramp ends at the set point, as the single run's
    assert _ramp(decks[-1], segs[-1].first_step)[2](total) == pytest.approx(101.325)

    # the first segment: the single deck up to its NPT run, then a restart
    head = single[:single.index(f"run {total}")]
    assert decks[0].startswith(head) and "velocity all create" in head and "reset_timestep 0" in head
    assert f"file {LZ_FILE}" in decks[0] and f"write_restart {segs[0].restart}" in decks[0]
    assert "write_data" not in decks[0] and "read_restart" not in decks[0]
    # later segments: read the previous restart, declare again what it does not keep
    coeffs = [ln for ln in pair_lines(TABLE_S1_DRIED, dried) if ln.startswith("pair_coeff")]
    for prev, seg, deck in zip(segs, segs[1:], decks[1:]):
        lines = deck.splitlines()
        assert lines.index("newton off") < lines.index(f"read_restart {prev.restart}") \
            < lines.index("comm_modify vel yes")
        assert all(c in lines for c in coeffs) and not any(ln.startswith("pair_style") for ln in lines)
        for absent in ("read_data", "velocity", "minimize", "reset_timestep", "set type"):
            assert absent not in deck
        assert f"append {LZ_FILE}" in deck and "compute zbot" in deck and "thermo_style" in deck
        assert f'file {DRYING_STATUS}' not in deck  # appended to, never overwritten
    for seg, deck in zip(segs[:-1], decks[:-1]):
        assert deck.rstrip().endswith(f"write_restart {seg.restart}") and "write_data" not in deck
    # the last: the single deck's mounting, word for word, and the dried state
    tail = single[single.index(f"run {total}") + len(f"run {total}"):]
    assert decks[-1].endswith(tail) and decks[-1].rstrip().endswith(f"write_data {DRIED_DATA}")
    assert "write_restart" not in decks[-1]
    assert _fix_ids(decks[-1])[2:] == _fix_ids(single)[2:] == ["collector", "lid", "mount_nve", "mount_temp"]


def test_one_segment_is_the_single_run_and_bad_chunks_are_refused():
    slurry, dried = _systems()
    run = DryingRunSpec(wall=WALL, equilibration_steps=20_000)
    (seg,) = drying_segments(run, 20_000)
    assert seg.restart_in is None and seg.restart is None
    deck = drying_segment_deck(slurry, dried, TABLE_S1_DRIED, run, seg)
    assert deck == drying_deck(slurry, dried, TABLE_S1_DRIED, run).replace("run 20000\n",
                                                                             "run 20000 start 0 stop 20000\n", 1)
    with pytest.raises(ValueError, match="multiple of block_steps"):
        drying_segments(run, 1500)
    with pytest.raises(ValueError, match="positive"):
        drying_segments(run, 0)


def _lattice_state(path: Path, system) -> Path:
    """A slurry-like state: the beads on a cubic lattice of 12 um (no overlaps), 6 per edge."""
    from sim_backends.lammps.placement import Placement, write_data_file

    types = np.concatenate([np.full(t.count, t.type_id) for t in system.types])
    diam = np.concatenate([np.full(t.count, t.diameter_um) for t in system.types])
    dens = np.concatenate([np.full(t.count, t.lammps_density) for t in system.types])
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)[:len(types)]
    write_data_file(path, Placement((72.0, 72.0, 72.0), types, diam, dens, 6.0 + 12.0 * grid),
                    n_types=len(system.types))
    return path


def _lmp(workdir: Path, deck: str, log: str) -> str:
    from sim_backends.lammps.install import locate_lammps

    lmp = locate_lammps()
    proc = subprocess.run(lmp.argv(deck, log), cwd=workdir, env={**os.environ, **lmp.env}, timeout=120,
                          capture_output=True, text=True)
    text = (workdir / log).read_text()
    assert proc.returncode == 0 and "ERROR" not in text, text[-2000:]
    return text


@pytest.mark.lammps
def test_a_chain_of_segments_restores_the_barostat_and_contact_history(tmp_path: Path):
    slurry, dried = _systems()
    run = DryingRunSpec(wall=WALL, equilibration_steps=600, mount_steps=100, minimize_max_iter=50,
                        block_steps=100, sample_every=10, thermo_every=100)
    one, chain = tmp_path / "single", tmp_path / "chain"
    for d in (one, chain):
        d.mkdir()
        _lattice_state(d / UPSTREAM_DATA, slurry)
    write_drying_inputs(one, slurry, dried, TABLE_S1_DRIED, run)
    _lmp(one, "in.drying", "log.lammps")
    segs = write_drying_segments(chain, slurry, dried, TABLE_S1_DRIED, run, 200)
    assert len(segs) == 3
    for seg in segs:
        text = _lmp(chain, seg.deck, seg.log)
        if seg.index:
            assert "fix style: npt/sphere, fix ID: dry_npt" in text
            assert "Resetting peratom fix info from restart file:\n  fix style: NEIGH_HISTORY" in text
            assert "Unused restart file" not in text
            assert "newton off" in text[text.index("Neighbor list info"):]
    assert (chain / DRIED_DATA).exists()
    steps1, lz1 = read_ave_time(one / LZ_FILE)
    steps2, lz2 = read_ave_time(chain / LZ_FILE)
    assert list(steps2) == list(steps1) == list(range(100, 601, 100))  # every block, once
    np.testing.assert_allclose(lz2, lz1, rtol=1e-4)
    status = [(chain / DRYING_STATUS).read_text().split(), (one / DRYING_STATUS).read_text().split()]
    assert status[0][:2] == status[1][:2]  # lz_start: the same minimised state
    assert status[0][-2] == "lz_end" and float(status[0][-1]) == pytest.approx(float(status[1][-1]), rel=1e-4)


def test_the_run_on_follows_the_dried_state_and_holds_the_set_pressure():
    """With ``hold_steps``: the protocol's end is saved before mounting and the dried state is
    written as without a run-on; the run-on deck reads the saved film and holds it at the set
    pressure under the same fix ID (its barostat state restored); a chunked run's last
    segment ends as the single deck."""
    slurry, dried = _systems()
    plain = DryingRunSpec(wall=WALL, equilibration_steps=40_000, mount_steps=567)
    held = DryingRunSpec(wall=WALL, equilibration_steps=40_000, mount_steps=567, hold_steps=4_000)
    a, b = (drying_deck(slurry, dried, TABLE_S1_DRIED, r) for r in (plain, held))
    assert DRYING_END_RESTART not in a
    assert b.replace(f"write_restart {DRYING_END_RESTART}\n", "") == a
    lines = b.splitlines()
    assert lines.index(f"write_restart {DRYING_END_RESTART}") == \
        lines.index(next(ln for ln in lines if "lz_end" in ln)) + 1 < lines.index("unfix dry_npt")
    with pytest.raises(ValueError, match="hold_steps"):
        drying_hold_deck(dried, TABLE_S1_DRIED, plain)
    hold = drying_hold_deck(dried, TABLE_S1_DRIED, held).splitlines()
    assert hold.index("newton off") < hold.index(f"read_restart {DRYING_END_RESTART}") \
        < hold.index("comm_modify vel yes") < hold.index("run 4000")
    coeffs = [ln for ln in pair_lines(TABLE_S1_DRIED, dried) if ln.startswith("pair_coeff")]
    assert all(c in hold for c in coeffs) and not any(ln.startswith("pair_style") for ln in hold)
    p_start, p_stop = map(float, NPT_RE.search("\n".join(hold)).groups())
    assert p_start == p_stop == pytest.approx(101.325)  # held at the set point, not ramped on
    assert _fix_ids("\n".join(hold)) == ["dry_npt"]
    assert hold[-1] == f'print "lz_hold $(lz:%.17g)" append {DRYING_STATUS}'
    segs = drying_segments(held, 15_000)
    last = drying_segment_deck(slurry, dried, TABLE_S1_DRIED, held, segs[-1])
    assert last.endswith(b[b.index("run 40000") + len("run 40000"):])


@pytest.mark.lammps
def test_a_run_on_leaves_the_dried_state_alone_and_records_the_height(tmp_path: Path):
    slurry, dried = _systems()
    kw = dict(wall=WALL, equilibration_steps=600, mount_steps=100, minimize_max_iter=50, block_steps=100,
              sample_every=10, thermo_every=100)
    runs = {"plain": DryingRunSpec(**kw), "held": DryingRunSpec(**kw, hold_steps=300)}
    for name, run in runs.items():
        d = tmp_path / name
        d.mkdir()
        _lattice_state(d / UPSTREAM_DATA, slurry)
        write_drying_inputs(d, slurry, dried, TABLE_S1_DRIED, run)
        _lmp(d, "in.drying", "log.lammps")
    assert not (tmp_path / "plain" / DRYING_HOLD_DECK).exists()
    text = _lmp(tmp_path / "held", DRYING_HOLD_DECK, "log.hold.lammps")
    assert "fix style: npt/sphere, fix ID: dry_npt" in text
    assert "Resetting peratom fix info from restart file:\n  fix style: NEIGH_HISTORY" in text
    assert "Unused restart file" not in text
    assert (tmp_path / "plain" / DRIED_DATA).read_bytes() == (tmp_path / "held" / DRIED_DATA).read_bytes()
    plain = drying_status(tmp_path / "plain", runs["plain"])
    st = drying_status(tmp_path / "held", runs["held"])
    assert plain.lz_hold_um is None and st.lz_hold_um is not None and st.hold_steps == 300
    assert (st.lz_start_um, st.lz_end_um) == (plain.lz_start_um, plain.lz_end_um)
    assert st.lz_hold_um != st.lz_end_um  # it ran on
    (tmp_path / "held" / DRYING_STATUS).write_text(
        (tmp_path / "held" / DRYING_STATUS).read_text().replace("lz_hold", "lz_other"))
    with pytest.raises(SimulationFailed, match="lz_hold"):
        drying_status(tmp_path / "held", runs["held"])
