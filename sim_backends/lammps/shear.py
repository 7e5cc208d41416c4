"""Shear viscosity by non-equilibrium MD (SLLOD), reusable on any LAMMPS state.

Source: seed Sec. 3.2; MODEL_NOTES.md "Viscosity by non-equilibrium CGMD"; LAMMPS
``fix deform`` / ``fix nvt/sllod`` / ``compute temp/deform`` documentation. The box is tilted
at a constant engineering rate (``fix deform ... xy erate R remap v``: velocity gradient
dv_x/dy = R), the SLLOD equations are thermostatted with the temperature of the motion
relative to the streaming profile (``temp/deform``), and eta = -P_xy / R. Block means of
-P_xy are written to ``shear_blocks.txt``; the deck stops at the first steady window of
segment means (``window_test``, re-applied in Python by ``segment_steady``), and
``shear_result`` gives mean, standard error, strain and whether it converged.

The deck is independent of the electrode model: it reads a data or restart file and takes
the pair settings as lines, so it is validated on a plain Lennard-Jones fluid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .convergence import blocking_sem  # noqa: F401  (re-exported)
from .outputs import SimulationFailed, checked_log, read_ave_time, read_status
from .runspec import DeckSpec

SHEAR_DECK = "in.shear"
SHEAR_LOG = "log.lammps"
SHEAR_BLOCKS = "shear_blocks.txt"
SHEAR_STATUS = "shear_status.txt"


@dataclass(frozen=True)
class ShearRunSpec(DeckSpec):
    """One shear run (LAMMPS units of ``units``).

    state_file: data or restart file to start from (``read_data`` unless it ends in
    ``.restart``). pair_lines: pair_style/pair_coeff lines (ignored settings in a restart
    file are overridden). shear_rate: engineering rate R (1/time). temperature, tdamp: SLLOD
    thermostat. -P_xy is sampled every ``sample_every`` steps into blocks of
    ``block_steps``; ``segment_blocks`` blocks make a segment (a batch of the steady-state
    test, ``window_test``); the run has at most ``max_segments`` segments.
    early_stop: stop after the first segment k >= ``min_segments`` at which the last
    ``window`` segment means pass ``window_test`` (z, precision); otherwise every segment
    runs. velocity_seed: if given, velocities are drawn afresh at ``temperature``.
    setup_lines: commands before the state is read (``newton off``, ``comm_modify vel yes``
    for granular pair styles). sample_every, thermo_every: ``DeckSpec``.
    """

    state_file: str
    pair_lines: tuple[str, ...]
    shear_rate: float
    temperature: float
    tdamp: float
    timestep: float
    block_steps: int
    segment_blocks: int = 8
    max_segments: int = 8
    early_stop: bool = True
    min_segments: int = 4
    window: int = 4
    z: float = 2.0
    precision: float = 0.05
    units: str = "lj"
    atom_style: str = "atomic"
    neighbor_skin: float = 0.3
    velocity_seed: int | None = None
    setup_lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.shear_rate <= 0:
            raise ValueError("shear_rate must be positive")
        if self.block_steps % self.sample_every or self.block_steps <= self.sample_every:
            raise ValueError("block_steps must be a multiple of sample_every, and larger")
        if self.window < 4 or self.window % 2:
            raise ValueError("window must be an even number of segments, at least 4")
        if self.max_segments < 1 or self.min_segments < self.window:
            raise ValueError("need max_segments >= 1 and min_segments >= window (min_segments > max_segments: "
                             "the run never stops early and cannot converge)")
        if self.segment_blocks < 1 or self.precision <= 0 or self.z <= 0:
            raise ValueError("segment_blocks, precision and z must be positive")

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


def _window_formulas(k: int, z: float, precision: float, min_segments: int) -> list[str]:
    """LAMMPS variables of ``window_test`` over the rotating segment means w1..wk."""
    h = k // 2
    ws = [f"v_w{i}" for i in range(1, k + 1)]
    return [
        f"variable win_mean equal ({'+'.join(ws)})/{k}",
        f"variable win_sd equal sqrt(({'+'.join(f'({w}-v_win_mean)^2' for w in ws)})/{k - 1})",
        f"variable half_a equal ({'+'.join(ws[:h])})/{h}",
        f"variable half_b equal ({'+'.join(ws[h:])})/{h}",
        # pooled standard deviation within the two halves (a trend across them does not inflate it)
        f"variable half_sd equal sqrt(({'+'.join(f'({w}-v_half_a)^2' for w in ws[:h])}+"
        f"{'+'.join(f'({w}-v_half_b)^2' for w in ws[h:])})/{2 * (h - 1)})",
        f'variable steady equal "v_segments_done >= {min_segments} && '
        f'abs(v_half_b - v_half_a) <= {z:.17g}*sqrt({2.0 / h:.17g})*v_half_sd && '
        f'v_win_sd/sqrt({k}) <= {precision:.17g}*abs(v_win_mean)"',
    ]


def shear_deck(spec: ShearRunSpec) -> str:
    """The LAMMPS input of one shear run; reads ``spec.state_file`` from its directory.

    The run is a LAMMPS loop over segments. After each segment its mean -P_xy (the mean of
    its block means, from a second ``fix ave/time``) enters a rotating window of the last
    ``window`` segment means; with ``early_stop`` the loop ends as soon as the window passes
    ``window_test``. ``shear_status.txt`` records the segments run and whether the test
    stopped the run.
    """
    read = "read_restart" if spec.state_file.endswith(".restart") else "read_data"
    nrep = spec.block_steps // spec.sample_every
    k = spec.window
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
        f"fix shear_box all deform 1 xy erate {spec.shear_rate:.17g} remap v",
        "thermo_style custom step temp press pxy lx ly xy",
        "thermo_modify temp tdef norm no lost error flush yes",
        f"thermo {spec.thermo_every}",
        "variable mpxy equal -pxy",
        f'fix pxy_blocks all ave/time {spec.sample_every} {nrep} {spec.block_steps} v_mpxy file {SHEAR_BLOCKS} '
        f'format " %.15g"',
        "variable blk equal f_pxy_blocks",
        f"fix seg_stats all ave/time {spec.block_steps} {spec.segment_blocks} {spec.segment_steps} v_blk",
        *[f"variable w{i} equal 0" for i in range(1, k + 1)],
        "variable segments_done equal 0",
        "variable stopped equal 0",
        *_window_formulas(k, spec.z, spec.precision, spec.min_segments),
        f"variable seg loop {spec.max_segments}",
        "label next_segment",
        f"run {spec.segment_steps}",
        "variable segments_done equal ${seg}",
        *[f"variable w{i} equal ${{w{i + 1}}}" for i in range(1, k)],
        f"variable w{k} equal $(f_seg_stats:%.17g)",
    ]
    if spec.early_stop:
        lines += ['if "${steady} > 0" then "variable stopped equal 1" "jump SELF shear_done"']
    lines += [
        "next seg",
        "jump SELF next_segment",
        "label shear_done",
        f'print "segments ${{segments_done}} stopped ${{stopped}} steps $(step)" file {SHEAR_STATUS}',
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


def window_test(means: Sequence[float], z: float = 2.0, precision: float = 0.05) -> tuple[bool, float, float]:
    """The steady-state test on a window of k (even) consecutive segment means, each a batch
    mean of block means. Steady when (1) the two halves' means differ by at most z standard
    errors of that difference, z x sqrt(2/(k/2)) x s_p with s_p the pooled standard deviation
    within the halves (a trend across the window does not inflate it), and (2) the window
    mean is known to ``precision``: sd/sqrt(k) <= precision x |mean|. Returns (steady, mean,
    standard error sd/sqrt(k))."""
    m = np.asarray(means, dtype=float)
    k = len(m)
    h = k // 2
    a, b = m[:h], m[h:]
    mean = float(m.mean())
    sd = float(m.std(ddof=1))
    pooled = math.sqrt((float(((a - a.mean()) ** 2).sum()) + float(((b - b.mean()) ** 2).sum())) / (2 * (h - 1)))
    drift = abs(float(b.mean() - a.mean()))
    steady = drift <= z * math.sqrt(2.0 / h) * pooled and sd / math.sqrt(k) <= precision * abs(mean)
    return steady, mean, sd / math.sqrt(k)


def segment_means(values: Sequence[float], segment_blocks: int) -> np.ndarray:
    """Means of consecutive whole segments of ``segment_blocks`` block means."""
    v = np.asarray(values, dtype=float)
    n = len(v) // segment_blocks
    return v[:n * segment_blocks].reshape(n, segment_blocks).mean(axis=1) if n else np.zeros(0)


def segment_steady(values: Sequence[float], segment_blocks: int, window: int = 4, z: float = 2.0,
                   precision: float = 0.05, min_segments: int | None = None) -> SteadyState:
    """The shear deck's early-stopping test applied to block means ``values``: the first
    segment k >= ``min_segments`` (default ``window``) whose last ``window`` segment means
    pass ``window_test``. The estimate is that window's mean and batch-means standard error
    (``start_block``/``n_blocks`` in blocks). If no segment passes, the last ``window``
    segments (all, if fewer) are used and ``converged`` is False."""
    m = segment_means(values, segment_blocks)
    n = len(m)
    first = max(window, min_segments or window)
    for k in range(first, n + 1):
        ok, mean, sem = window_test(m[k - window:k], z, precision)
        if ok:
            return SteadyState(mean, sem, (k - window) * segment_blocks, window * segment_blocks, True)
    tail = m[max(0, n - window):]
    if len(tail) < 2:
        return SteadyState(float(tail.mean()) if len(tail) else math.nan, math.nan, 0, len(tail) * segment_blocks,
                           False)
    return SteadyState(float(tail.mean()), float(tail.std(ddof=1) / math.sqrt(len(tail))),
                       (n - len(tail)) * segment_blocks, len(tail) * segment_blocks, False)


def batch_mean(values: Sequence[float], segment_blocks: int, skip_segments: int = 0) -> SteadyState:
    """Mean and batch-means standard error over all whole segments after ``skip_segments``
    (the estimate of a fixed-length run); ``converged`` is always False: no test is made."""
    m = segment_means(values, segment_blocks)[skip_segments:]
    if len(m) < 2:
        return SteadyState(float(m.mean()) if len(m) else math.nan, math.nan, 0, len(m) * segment_blocks, False)
    return SteadyState(float(m.mean()), float(m.std(ddof=1) / math.sqrt(len(m))), skip_segments * segment_blocks,
                       len(m) * segment_blocks, False)


def read_shear_stress(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, -P_xy block means) of a finished shear run; raises ``SimulationFailed``."""
    workdir = Path(workdir)
    checked_log(workdir, SHEAR_LOG)
    if not (workdir / SHEAR_BLOCKS).exists():
        raise SimulationFailed("shear run ended without writing its stress blocks", workdir)
    steps, values = read_ave_time(workdir / SHEAR_BLOCKS)
    keep = steps > 0  # a step-0 row appears when a block is a single sample
    return steps[keep], values[keep]


def read_shear_status(workdir: Path) -> tuple[int, bool]:
    """(segments run, stopped by the steady-state test) from ``shear_status.txt``."""
    path = Path(workdir) / SHEAR_STATUS
    vals = read_status(workdir, SHEAR_STATUS, "shear run ended without writing its status")
    try:
        return int(vals["segments"]), int(float(vals["stopped"])) == 1
    except (ValueError, KeyError) as exc:
        raise SimulationFailed(f"unreadable {SHEAR_STATUS}: {path.read_text()[:200]!r}", Path(workdir)) from exc


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
    """Analyse a finished run of ``spec`` in ``workdir``.

    With ``early_stop``: converged when LAMMPS's own test stopped the run
    (``shear_status.txt``); the estimate is the last ``window`` segments (the window that
    passed). A fixed-length run (``early_stop`` off) reports the batch mean of every segment
    after the first ``min_segments - window`` (the start-up transient) and whether the test
    would have passed anywhere.
    """
    steps, mpxy = read_shear_stress(workdir)
    eta = mpxy / spec.shear_rate
    segments, stopped = read_shear_status(workdir)
    w = spec.segment_blocks
    if spec.early_stop:
        m = segment_means(eta[:segments * w], w)
        tail = m[max(0, len(m) - spec.window):]
        sem = float(tail.std(ddof=1) / math.sqrt(len(tail))) if len(tail) > 1 else math.nan
        ss = SteadyState(float(tail.mean()) if len(tail) else math.nan, sem, (len(m) - len(tail)) * w,
                         len(tail) * w, stopped)
    else:
        found = segment_steady(eta, w, spec.window, spec.z, spec.precision, spec.min_segments)
        ss = batch_mean(eta, w, max(0, spec.min_segments - spec.window))
        ss = SteadyState(ss.mean, ss.sem, ss.start_block, ss.n_blocks, found.converged)
    run_steps = int(steps[-1]) if len(steps) else 0
    return ShearResult(spec.shear_rate, ss.mean, ss.sem, ss.converged, run_steps,
                       spec.shear_rate * run_steps * spec.timestep, len(eta))
