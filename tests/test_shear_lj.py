"""The NEMD shear measurement validated on a plain Lennard-Jones fluid, outside the
electrode model.

Reference: shear viscosity of the LJ liquid at its triple point, rho* = 0.8442, T* = 0.722:
Green-Kubo eta*(0) = 3.24 +- 0.04 (N = 2048), "Shear-rate dependence of the viscosity of the
Lennard-Jones liquid at the triple point", Ferrario, Ciccotti, Holian and Ryckaert,
Phys. Rev. A 44, 6936 (1991). The same paper finds the NEMD viscosity falling off
quadratically at low shear rate, so a rate of 0.05 (strain rate in tau^-1) stays within a
few per cent of eta*(0); the test allows 10 %.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sim_backends.lammps.install import locate_lammps
from sim_backends.lammps.shear import SHEAR_DECK, ShearRunSpec, shear_result, write_shear_inputs

pytestmark = pytest.mark.lammps

ETA_REF = 3.24  # Ferrario et al. 1991, Green-Kubo, rho* 0.8442, T* 0.722
LJ_PAIR = ("pair_style lj/cut 2.5", "pair_coeff * * 1.0 1.0 2.5", "pair_modify shift no")


def _run(workdir: Path, deck_file: str) -> None:
    inst = locate_lammps()
    proc = subprocess.run(inst.argv(deck_file, log=f"{deck_file}.log"), cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, **inst.env})
    assert proc.returncode == 0, (workdir / f"{deck_file}.log").read_text()[-2000:]


def test_lj_triple_point_viscosity_within_ten_percent(tmp_path: Path):
    prep = "\n".join([
        "units lj", "atom_style atomic", "lattice fcc 0.8442", "region box block 0 6 0 6 0 6",
        "create_box 1 box", "create_atoms 1 box", "mass 1 1.0", *LJ_PAIR,
        "velocity all create 0.722 87287 dist gaussian mom yes", "fix nvt all nvt temp 0.722 0.722 0.5",
        "timestep 0.005", "run 4000", "write_data lj.data", ""])
    (tmp_path / "in.prep").write_text(prep)
    _run(tmp_path, "in.prep")
    spec = ShearRunSpec(state_file="lj.data", pair_lines=LJ_PAIR, shear_rate=0.05, temperature=0.722, tdamp=0.5,
                        timestep=0.005, block_steps=500, segment_blocks=4, max_segments=16, window=6,
                        min_segments=7, precision=0.03)
    write_shear_inputs(tmp_path, spec)
    _run(tmp_path, SHEAR_DECK)
    (tmp_path / f"{SHEAR_DECK}.log").rename(tmp_path / "log.lammps")  # where the reader looks for the log
    res = shear_result(tmp_path, spec)
    assert res.converged
    assert res.sem < 0.05 * ETA_REF
    assert abs(res.viscosity - ETA_REF) <= 0.10 * ETA_REF, (res.viscosity, res.sem)
    assert res.strain == pytest.approx(0.05 * res.steps * 0.005)
    assert res.steps < spec.steps  # the steady-state test ended it early
    assert res.steps % spec.segment_steps == 0 and res.steps >= 7 * spec.segment_steps


def test_shear_deck_uses_sllod_with_deform_temperature():
    from sim_backends.lammps.shear import shear_deck

    spec = ShearRunSpec(state_file="final.restart", pair_lines=LJ_PAIR, shear_rate=1.8e-5, temperature=300.0,
                        tdamp=1.0, timestep=0.001, block_steps=100, segment_blocks=5, max_segments=2,
                        min_segments=4, units="micro")
    deck = shear_deck(spec)
    assert "read_restart final.restart" in deck
    assert "fix shear_box all deform 1 xy erate 1.8e-05 remap v" in deck
    assert "compute tdef all temp/deform" in deck and "fix_modify shear_nvt temp tdef" in deck
    assert deck.index("pair_style") < deck.index("read_restart") < deck.index("pair_coeff")
    assert spec.strain == pytest.approx(1.8e-5 * 1000 * 0.001)
