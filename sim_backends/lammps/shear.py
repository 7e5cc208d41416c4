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
SHEAR_STATUS = "shear_status.txt"


@dataclass(frozen=True)
class ShearRunSpec:
    """One shear run (LAMMPS units of ``units``).

    state_file: data or restart file to start from (``read_data`` unless it ends in
    ``.restart``). pair_lines: pair_style/pair_coeff lines (ignored settings in a restart
    file are overridden). shear_rate: engineering rate R (1/time). temperature, tdamp: SLLOD
    thermostat. The run is ``max_segments`` segments of ``segment_blocks`` blocks of
    ``block_steps`` steps; -P_xy is sampled every ``sample_every`` steps inside a block.
    early_stop: stop after the first segment k >= ``min_segments`` whose mean agrees with
    segment k-1's within ``z`` combined standard errors (``segment_steady``); otherwise every
    segment runs (a fixed-length run). velocity_seed: if given, velocities are drawn afresh
    at ``temperature``. setup_lines: commands before the state is read (``newton off``,
    ``comm_modify vel yes`` for granular pair styles).
    """

    state_file: str
    pair_lines: tuple[str, ...]
    shear_rate: float
    temperature: float
    tdamp: float
    timestep: float
    block_steps: int
    segment_blocks: int = 8
    max_segments: int = 4
    early_stop: bool = True
    min_segments: int = 2
    z: float = 2.0
    sample_every: int = 10
    units: str = "lj"
    atom_style: str = "atomic"
    neighbor_skin: float = 0.3
    thermo_every: int = 1000
    velocity_seed: int | None = None
    setup_lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.shear_rate <= 0:
            raise ValueError("shear_rate must be positive")
        if self.block_steps % self.sample_every:
            raise ValueError("block_steps must be a multiple of sample_every")
        if self.segment_blocks < 2:
            raise ValueError("segment_blocks must be at least 2 (a segment's standard error needs two blocks)")
        if self.max_segments < 1 or self.min_segments < 2:
            raise ValueError("need max_segments >= 1 and min_segments >= 2 (min_segments > max_segments: the run "
                             "never stops early and cannot converge)")

    @property
    def segment_steps(self) -> int:
        return self.segment_blocks * self.block_steps

    @property
    def steps(self) -> int:
        """Steps of the full-length run (early stopping may end it sooner)."""
        return self.max_segments * self.segment_steps

    @property
    def strain(self) -> float:
        """Total shear strain of the full-length run (rate x time)."""
        return self.shear_rate * self.steps * self.timestep


def shear_deck(spec: ShearRunSpec) -> str:
    """The LAMMPS input of one shear run; reads ``spec.state_file`` from its directory.

    The run is a LAMMPS loop over segments; with ``early_stop`` the loop leaves as soon as
    two consecutive segment means agree (the test of ``segment_steady``, computed from the
    block means by a second ``fix ave/time``). ``shear_status.txt`` gets the segments run.
    """
    read = "read_restart" if spec.state_file.endswith(".restart") else "read_data"
    nrep = spec.block_steps // spec.sample_every
    w = spec.segment_blocks
    lines = [
        f"# calib NEMD shear run: SLLOD at engineering rate {spec.shear_rate:g} (1/time, units {spec.units})",
        f"units {spec.units}",
        f"atom_style {spec.atom_style}",
        *spec.setup_lines,
        # pair_style first: read_data then accepts a file's own Pair Coeffs section
        *[ln for ln in spec.pair_lines if ln.startswith("pair_style")],
        f"{read} {spec.state_file}",
        "change_box all triclinic",
        *[ln for ln in spec.pair_lines if not ln.startswith("pair_style")],
        f"neighbor {spec.neighbor_skin:g} bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {spec.timestep:g}",
        "reset_timestep 0",
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
        # segment statistics: mean and mean square of the segment's block means
        "variable blk equal f_pxy_blocks",
        "variable blk2 equal f_pxy_blocks*f_pxy_blocks",
        f"fix seg_stats all ave/time {spec.block_steps} {w} {spec.segment_steps} v_blk v_blk2",
        "variable seg_mean equal f_seg_stats[1]",
        f"variable seg_sem equal sqrt(abs(f_seg_stats[2]-f_seg_stats[1]*f_seg_stats[1])/{w - 1})",
        "variable m_prev equal 0",
        "variable s_prev equal 0",
        f"variable seg loop {spec.max_segments}",
        "label next_segment",
        f"run {spec.segment_steps}",
        "variable segments_done equal ${seg}",
        "variable m_now equal ${seg_mean}",
        "variable s_now equal ${seg_sem}",
    ]
    if spec.early_stop:
        lines += [
            f'variable steady equal "v_segments_done >= {spec.min_segments} && '
            f'abs(v_m_now - v_m_prev) <= {spec.z:g}*sqrt(v_s_now*v_s_now + v_s_prev*v_s_prev)"',
            'if "${steady} > 0" then "jump SELF shear_done"',
        ]
    lines += [
        "variable m_prev equal ${m_now}",
        "variable s_prev equal ${s_now}",
        "next seg",
        "jump SELF next_segment",
        "label shear_done",
        f'print "segments ${{segments_done}} steps $(step) strain $(step*dt*{spec.shear_rate:.10g})" file {SHEAR_STATUS}',
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


def segment_steady(values: Sequence[float], segment_blocks: int, z: float = 2.0, min_segments: int = 2
                   ) -> SteadyState:
    """The early-stopping test of the shear deck, on block means ``values``.

    Segments are consecutive runs of ``segment_blocks`` blocks. The series is steady at the
    first segment k >= ``min_segments`` (1-based) whose mean differs from segment k-1's by at
    most ``z`` x sqrt(SEM_k^2 + SEM_{k-1}^2); the estimate is the mean and standard error of
    the blocks of those two segments. If no segment passes, the last two segments are used
    and ``converged`` is False.
    """
    v = np.asarray(values, dtype=float)
    w = segment_blocks
    n_seg = len(v) // w
    if n_seg < 2:
        return SteadyState(float(v.mean()) if len(v) else math.nan, math.nan, 0, len(v), False)

    def seg(k: int) -> tuple[float, float]:
        x = v[(k - 1) * w:k * w]
        return float(x.mean()), float(x.std(ddof=1) / math.sqrt(w))

    last = n_seg
    for k in range(max(2, min_segments), n_seg + 1):
        (m1, s1), (m2, s2) = seg(k - 1), seg(k)
        if abs(m2 - m1) <= z * math.sqrt(s1 * s1 + s2 * s2):
            last = k
            break
    else:
        tail = v[(n_seg - 2) * w:n_seg * w]
        return SteadyState(float(tail.mean()), float(tail.std(ddof=1) / math.sqrt(len(tail))),
                           (n_seg - 2) * w, len(tail), False)
    tail = v[(last - 2) * w:last * w]
    return SteadyState(float(tail.mean()), float(tail.std(ddof=1) / math.sqrt(len(tail))), (last - 2) * w,
                       len(tail), True)


def read_shear_stress(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, -P_xy block means) of a finished shear run; raises ``SimulationFailed``."""
    workdir = Path(workdir)
    checked_log(workdir, SHEAR_LOG)
    if not (workdir / SHEAR_BLOCKS).exists():
        raise SimulationFailed("shear run ended without writing its stress blocks", workdir)
    return read_ave_time(workdir / SHEAR_BLOCKS)


@dataclass(frozen=True)
class ShearResult:
    """A finished shear run: viscosity (run units: pressure x time) over the steady part,
    its standard error, whether it converged, the steps run and the strain reached."""

    shear_rate: float
    viscosity: float
    sem: float
    converged: bool
    steps: int
    strain: float
    n_blocks: int


def shear_result(workdir: Path, spec: ShearRunSpec) -> ShearResult:
    """Analyse a finished run of ``spec`` in ``workdir``: with ``early_stop`` the deck's own
    stopping test re-applied to the block means; for a fixed-length run the drift test
    (``steady_state``) over all blocks."""
    steps, mpxy = read_shear_stress(workdir)
    eta = mpxy / spec.shear_rate
    ss = (segment_steady(eta, spec.segment_blocks, spec.z, spec.min_segments) if spec.early_stop
          else steady_state(eta))
    run_steps = int(steps[-1]) if len(steps) else 0
    return ShearResult(spec.shear_rate, ss.mean, ss.sem, ss.converged, run_steps,
                       spec.shear_rate * run_steps * spec.timestep, len(eta))


def viscosity(workdir: Path, shear_rate: float) -> SteadyState:
    """eta = -P_xy / rate over the steady part found by the drift test (``steady_state``);
    run units (pressure x time). For a fixed-length reference run."""
    _, mpxy = read_shear_stress(workdir)
    return steady_state(mpxy / shear_rate)
