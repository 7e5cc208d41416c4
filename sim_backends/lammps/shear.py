"""Shear viscosity by non-equilibrium MD (SLLOD), reusable on any LAMMPS state.

Source: seed Sec. 3.2; MODEL_NOTES.md "Viscosity by non-equilibrium CGMD"; LAMMPS
``fix deform`` / ``fix nvt/sllod`` / ``compute temp/deform`` documentation. The box is tilted
at a constant engineering rate (``fix deform ... xy erate R remap v``: velocity gradient
dv_x/dy = R), the SLLOD equations are thermostatted with the temperature of the motion
relative to the streaming profile (``temp/deform``), and eta = -P_xy / R. Block means of
-P_xy are written to ``shear_blocks.txt``; ``steady_state`` finds the start of the steady
part and gives mean, standard error and whether it converged.

The deck is independent of the electrode model: it reads a data or restart file and takes
the pair settings as lines, so it is validated on a plain Lennard-Jones fluid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .outputs import SimulationFailed, checked_log, read_ave_time

SHEAR_DECK = "in.shear"
SHEAR_LOG = "log.lammps"
SHEAR_BLOCKS = "shear_blocks.txt"


@dataclass(frozen=True)
class ShearRunSpec:
    """One shear run (LAMMPS units of ``units``).

    state_file: data or restart file to start from (``read_data`` unless it ends in
    ``.restart``). pair_lines: pair_style/pair_coeff lines (ignored settings in a restart
    file are overridden). shear_rate: engineering rate R (1/time). temperature, tdamp: SLLOD
    thermostat. steps: run length; block_steps / sample_every: -P_xy block averaging.
    velocity_seed: if given, velocities are drawn afresh at ``temperature``.
    """

    state_file: str
    pair_lines: tuple[str, ...]
    shear_rate: float
    temperature: float
    tdamp: float
    timestep: float
    steps: int
    block_steps: int
    sample_every: int = 10
    units: str = "lj"
    atom_style: str = "atomic"
    neighbor_skin: float = 0.3
    thermo_every: int = 1000
    velocity_seed: int | None = None
    comm_vel: bool = False

    def __post_init__(self) -> None:
        if self.shear_rate <= 0:
            raise ValueError("shear_rate must be positive")
        if self.steps % self.block_steps or self.block_steps % self.sample_every:
            raise ValueError("steps must be a multiple of block_steps, block_steps of sample_every")

    @property
    def strain(self) -> float:
        """Total shear strain of the run (rate x time)."""
        return self.shear_rate * self.steps * self.timestep


def shear_deck(spec: ShearRunSpec) -> str:
    """The LAMMPS input of one shear run; reads ``spec.state_file`` from its directory."""
    read = "read_restart" if spec.state_file.endswith(".restart") else "read_data"
    nrep = spec.block_steps // spec.sample_every
    lines = [
        f"# calib NEMD shear run: SLLOD at engineering rate {spec.shear_rate:g} (1/time, units {spec.units})",
        f"units {spec.units}",
        f"atom_style {spec.atom_style}",
        # pair_style first: read_data then accepts a file's own Pair Coeffs section
        *[ln for ln in spec.pair_lines if ln.startswith("pair_style")],
        f"{read} {spec.state_file}",
        "change_box all triclinic",
        *(["comm_modify vel yes"] if spec.comm_vel else []),
        *[ln for ln in spec.pair_lines if not ln.startswith("pair_style")],
        f"neighbor {spec.neighbor_skin:g} bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {spec.timestep:g}",
        *([f"velocity all create {spec.temperature:g} {spec.velocity_seed} dist gaussian mom yes"]
          if spec.velocity_seed is not None else []),
        "compute tdef all temp/deform",
        f"fix shear_nvt all nvt/sllod temp {spec.temperature:g} {spec.temperature:g} {spec.tdamp:g}",
        "fix_modify shear_nvt temp tdef",
        f"fix shear_box all deform 1 xy erate {spec.shear_rate:.10g} remap v",
        "thermo_style custom step temp press pxy lx ly xy",
        "thermo_modify temp tdef norm no lost error flush yes",
        f"thermo {spec.thermo_every}",
        "variable mpxy equal -pxy",
        f"fix pxy_blocks all ave/time {spec.sample_every} {nrep} {spec.block_steps} v_mpxy file {SHEAR_BLOCKS}",
        f"run {spec.steps}",
        "",
    ]
    return "\n".join(lines)


def write_shear_inputs(workdir: Path, spec: ShearRunSpec) -> None:
    (Path(workdir) / SHEAR_DECK).write_text(shear_deck(spec))


@dataclass(frozen=True)
class SteadyState:
    """Steady part of a block series: mean and standard error over blocks[start:], and
    whether the drift test passed (``converged``)."""

    mean: float
    sem: float
    start_block: int
    n_blocks: int
    converged: bool


def steady_state(values: Sequence[float], z: float = 2.0, min_blocks: int = 8) -> SteadyState:
    """Find the steady part of block means ``values``.

    Candidate starts k = 0, n/8, 2n/8, 3n/8, n/2; the first k whose remaining blocks show no
    significant linear drift (|slope x span| <= z x SEM of their mean) and number at least
    ``min_blocks`` is taken. If none passes, k = n/2 and ``converged`` is False.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return SteadyState(float(v.mean()) if n else math.nan, math.nan, 0, n, False)
    for k in sorted({int(round(f * n / 8)) for f in range(5)}):
        tail = v[k:]
        if len(tail) < min(min_blocks, n):
            break
        sem = float(tail.std(ddof=1) / math.sqrt(len(tail)))
        drift = float(np.polyfit(np.arange(len(tail)), tail, 1)[0] * (len(tail) - 1))
        if abs(drift) <= z * sem:
            return SteadyState(float(tail.mean()), sem, k, len(tail), True)
    k = n // 2
    tail = v[k:]
    return SteadyState(float(tail.mean()), float(tail.std(ddof=1) / math.sqrt(len(tail))), k, len(tail), False)


def read_shear_stress(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, -P_xy block means) of a finished shear run; raises ``SimulationFailed``."""
    workdir = Path(workdir)
    checked_log(workdir, SHEAR_LOG)
    if not (workdir / SHEAR_BLOCKS).exists():
        raise SimulationFailed("shear run ended without writing its stress blocks", workdir)
    return read_ave_time(workdir / SHEAR_BLOCKS)


def viscosity(workdir: Path, shear_rate: float) -> SteadyState:
    """eta = -P_xy / rate over the steady part (units of the run: pressure x time)."""
    _, mpxy = read_shear_stress(workdir)
    return steady_state(mpxy / shear_rate)
