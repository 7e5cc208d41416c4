"""The slurry deck in real LAMMPS at smoke size (Table S1 slurry column): the barostat holds
1 atm, the density trajectory is written, and LAMMPS's early stop and the Python plateau test
agree on the same blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calib.spec.fidelity import BUILTIN_FIDELITIES
from calib.stages.bead_systems import slurry_system
from calib.study.load import load_study
from conftest import DEFAULT_STUDY
from sim_backends.backend import JobState, Task
from sim_backends.lammps.convergence import plateau_test
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY
from sim_backends.lammps.install import locate_lammps
from sim_backends.lammps.outputs import thermo_rows
from sim_backends.lammps.placement import paper_scaled_box
from sim_backends.lammps.slurry import SlurryRunSpec, density_trajectory, read_slurry_observables, write_slurry_inputs
from sim_backends.local import LocalBackend

pytestmark = pytest.mark.lammps

PRESSURE_BAND_KPA = 5.0
"""Stated band: every thermo row of the hold within 5 kPa of 1 atm = 101.325 kPa."""


def _run(tmp: Path, run: SlurryRunSpec) -> Path:
    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = BUILTIN_FIDELITIES["smoke"]
    system = slurry_system(loaded.dataset, fid)
    box = tuple(x * fid.initial_box_scale for x in paper_scaled_box(system.n_beads))
    write_slurry_inputs(tmp, system, TABLE_S1_SLURRY, run, box)
    lmp = locate_lammps()
    backend = LocalBackend()
    res = backend.wait(backend.submit(Task(tmp, lmp.argv("in.slurry"), lmp.env, timeout_s=300)))
    assert res.state == JobState.DONE, (tmp / "log.lammps").read_text()[-2000:]
    return tmp


def test_barostat_holds_one_atmosphere_and_early_stop_matches_python(tmp_path: Path):
    run = SlurryRunSpec(ramp_steps=6000, block_steps=1000, sample_every=10, window_blocks=4, averaging_blocks=4,
                        min_hold_blocks=4, max_hold_blocks=30, tolerance_rel=0.03, thermo_every=500,
                        neighbor_style="multi")
    wd = _run(tmp_path, run)
    rows = thermo_rows((wd / "log.lammps").read_text())
    # each block is a new `run`; its set-up row repeats the previous row's step with the
    # pressure of a fresh force evaluation (about 107 kPa here): the dynamics' rows are the
    # first of each step
    seen: set[int] = set()
    hold = []
    for r in rows:
        step = int(r["Step"])
        if step > run.ramp_steps and step not in seen:
            hold.append(float(r["Press"]))
        seen.add(step)
    assert len(hold) >= 8
    assert max(abs(p - 101.325) for p in hold) < PRESSURE_BAND_KPA, hold
    steps, rho = density_trajectory(wd)
    assert steps[0] == 1000 and np.all(np.diff(steps) == 1000)  # the whole run, ramp included
    obs = read_slurry_observables(wd, run)
    test = plateau_test(rho[steps > run.ramp_steps], run.window_blocks, run.tolerance_rel)
    assert obs.converged == test.converged
    status = (wd / "density_status.txt").read_text().split()
    blocks, stopped = int(status[1]), int(status[3])
    assert blocks == obs.hold_steps // 1000
    if stopped:  # LAMMPS stopped at the first window Python also finds
        assert obs.stopped_early and obs.converged
        assert test.first_pass == blocks - 1
    else:
        assert blocks == run.max_hold_blocks and test.first_pass is None and not obs.converged
    assert obs.density_g_cm3 == pytest.approx(rho[-4:].mean())
    assert obs.density_sem_g_cm3 > 0


def test_a_run_too_short_to_converge_says_so(tmp_path: Path):
    run = SlurryRunSpec(ramp_steps=2000, block_steps=1000, sample_every=10, window_blocks=4, averaging_blocks=4,
                        min_hold_blocks=4, max_hold_blocks=4, tolerance_rel=1e-6, neighbor_style="multi")
    obs = read_slurry_observables(_run(tmp_path, run), run)
    assert not obs.converged and obs.converged_step is None and not obs.stopped_early
    assert obs.hold_steps == 4000 and abs(obs.density_change_rel) > 1e-6


def _seed_run(tmp: Path, halt: float | None) -> tuple[Path, SlurryRunSpec]:
    """The smoke fidelity's seed-protocol run of Table S1 (study seed 1), stopped above
    ``halt`` g/cm^3 when given."""
    from dataclasses import replace

    from calib.stages.slurry_runs import slurry_run_spec

    loaded = load_study(DEFAULT_STUDY, fidelity="smoke")
    fid = loaded.spec.fidelity_spec()
    system = slurry_system(loaded.dataset, fid)
    run = replace(slurry_run_spec(loaded.spec, fid, 1, "multi"), halt_above_g_cm3=halt)
    tmp.mkdir()
    write_slurry_inputs(tmp, system, TABLE_S1_SLURRY, run, paper_scaled_box(system.n_beads))
    lmp = locate_lammps()
    backend = LocalBackend()
    res = backend.wait(backend.submit(Task(tmp, lmp.argv("in.slurry"), lmp.env, timeout_s=300)))
    assert res.state == JobState.DONE, (tmp / "log.lammps").read_text()[-2000:]
    return tmp, run


def test_the_band_stops_a_run_out_of_band_and_keeps_one_inside_it(tmp_path: Path):
    full_dir, full_run = _seed_run(tmp_path / "full", None)
    steps, rho = density_trajectory(full_dir)
    full = read_slurry_observables(full_dir, full_run)
    assert full.stopped_fraction is None and len(rho) == 200
    # a band the run crosses at about 40 % of the protocol: LAMMPS stops at that block
    thr = float(rho[79])
    first = int(np.argmax(rho > thr))
    cut_dir, cut_run = _seed_run(tmp_path / "cut", thr)
    cut = read_slurry_observables(cut_dir, cut_run)
    assert cut.stopped_early and cut.stopped_fraction == pytest.approx((first + 1) / 200)
    assert cut.density_g_cm3 == pytest.approx(rho[first], rel=1e-9)  # the same trajectory, cut short
    assert cut.density_g_cm3 <= full.density_g_cm3 and cut.atom_steps < full.atom_steps
    assert "Fix halt condition" in (cut_dir / "log.lammps").read_text()
    status = (cut_dir / "density_status.txt").read_text().split()
    assert status[1] == str(first + 1) and status[3] == "1"  # blocks run, stopped by the band
    # a band above the end density: the run completes the protocol, the same density
    kept_dir, kept_run = _seed_run(tmp_path / "kept", full.density_g_cm3 * 1.01)
    kept = read_slurry_observables(kept_dir, kept_run)
    assert kept.stopped_fraction is None and not kept.stopped_early
    assert kept.density_g_cm3 == pytest.approx(full.density_g_cm3, rel=1e-12)
    assert (kept_dir / "density_status.txt").read_text().split()[1:4] == ["200", "stopped", "0"]
