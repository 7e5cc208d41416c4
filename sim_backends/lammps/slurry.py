"""Slurry stage deck: random placement -> minimisation -> NPT under one of two protocols.

- ``seed`` (the seed's and the public ``Slurry/in_slurry.run``'s): the pressure is ramped
  linearly from ``pressure_start_atm`` to P0 over the whole run (``ramp_steps``) and the
  density is read at its end (the mean of the last ``averaging_blocks`` blocks). In this
  model the density never levels off at 1 atm (docs/stages/slurry.md), so the value is that
  of the protocol: it depends on the run's length, and a shorter run stands in for it only
  through a measured compression (``compression.py``).
- ``ramp_hold``: a ramp of ``ramp_steps``, then P0 held block by block until the density
  passes the plateau test or ``max_hold_blocks`` is reached. Kept as a named alternative;
  at P0 = 1 atm it does not converge in any affordable length.

Sources: seed Sec. 2.2-2.3 and 3.1; the group's public ``Slurry/in_slurry.run``
(MODEL_NOTES.md "Conventions of the group's public inputs").

Ensemble (public inputs): ``fix npt/sphere temp 300 300 0.2 iso P_start P0 1000`` (Nose-Hoover
thermostat, damping 0.2 us; barostat, damping 1000 us; rotation integrated). The public run
ramps the pressure from 0 to 100 kPa over its whole length; here the ramp from
``pressure_start_atm`` to P0 lasts ``ramp_steps`` and the run then holds P0 (seed: 1 atm) so
that the density can be tested for convergence at the set point.

Density = total bead mass / box volume (pg um^-3 = g cm^-3): the beads carry the dry
composite plus the solvent (CBD beads), as the public ``slurry_density`` does. Block means
of ``block_steps`` are written for the whole run (ramp included) to ``density_blocks.txt``.
During the hold the run goes on block by block until the plateau test
(``convergence.plateau_test``) passes on the last ``window_blocks`` blocks (and at least
``min_hold_blocks`` blocks were run), or ``max_hold_blocks`` is reached.
``density_status.txt`` records the blocks run and whether the test stopped the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .beads import BeadSystem
from .convergence import PlateauTest, blocking_sem, lammps_plateau_lines, lammps_plateau_shift, plateau_test
from .forcefield import ForceFieldParams, pair_lines
from .outputs import SimulationFailed, checked_log, read_ave_time, run_stats
from .placement import place_random, write_data_file
from .runspec import NptRunSpec, velocity_seed
from .units import atm_to_micro_pressure, g_cm3_to_micro_density, micro_density_to_g_cm3

DATA_FILE = "system.data"
DECK_FILE = "in.slurry"
LOG_FILE = "log.lammps"
DENSITY_FILE = "density_blocks.txt"
DENSITY_STATUS = "density_status.txt"
FINAL_DATA = "final.data"
FINAL_RESTART = "final.restart"
PROTOCOLS = ("seed", "ramp_hold")
SEED_BLOCKS = 200
"""Density blocks of a seed-protocol run, whatever its length (block i ends at (i + 1) / 200
of the run), so that runs of any compression compare at equal fractions."""
SEED_END_BLOCKS = 2
"""A seed-protocol density is the mean of the last SEED_END_BLOCKS blocks (the last 1 %)."""


@dataclass(frozen=True)
class SlurryRunSpec(NptRunSpec):
    """Run settings of the slurry stage (units micro unless the name says otherwise).

    Shared fields (``NptRunSpec``): temperature_K, pressure_atm: NPT set point (seed: 300 K,
    1 atm). pressure_start_atm: start of the pressure ramp (public inputs: 0).
    timestep_us: integration step (seed: 0.001 us). minimize_max_iter: cap on
    conjugate-gradient iterations of the initial minimisation. block_steps: length of one
    density block; sample_every: sampling interval inside it. tdamp_us, pdamp_us: thermostat
    and barostat damping (public: 0.2 and 1000 us). neighbor_skin_um: neighbour-list skin
    (um). lj_style: ``lj/cut`` or ``lj/smooth/linear``. seed: random seed of the placement
    and the velocity stream. thermo_every: thermo output interval. window_blocks: blocks in
    the plateau test's window (even, >= 4). tolerance_rel: the plateau test's tolerance
    (relative change across the window).

    ramp_steps: NPT steps of the pressure ramp.
    min_hold_blocks: blocks at P0 before the run may stop (>= window_blocks and the
    averaging window). max_hold_blocks: most blocks at P0. averaging_blocks: blocks the
    reported density averages (the last ones; at least ``window_blocks``).
    early_stop: stop at the first passing window; otherwise run ``max_hold_blocks``.
    neighbor_style: neighbour-list binning (``bin``/``multi``).
    protocol: ``seed`` (ramp over the whole run, density at its end; the hold fields are
    unused) or ``ramp_hold`` (ramp, then hold until the plateau test passes).
    """

    ramp_steps: int = 20_000
    averaging_blocks: int = 10
    min_hold_blocks: int = 10
    max_hold_blocks: int = 100
    early_stop: bool = True
    neighbor_style: str = "bin"
    protocol: str = "ramp_hold"
    halt_above_g_cm3: float | None = None
    """Protocol ``seed`` only: end the run at the first density block whose mean exceeds this
    (g/cm^3; ``fix halt`` on the block mean, checked at every block's end). The density only
    rises along the seed protocol, so the run's end density is at least that block's
    (``SEED_MONOTONE_NOTE``); None: run the whole protocol."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.ramp_steps % self.block_steps or self.block_steps % self.sample_every:
            raise ValueError("ramp_steps must be a multiple of block_steps, block_steps of sample_every")
        if self.halt_above_g_cm3 is not None and (self.protocol != "seed" or not self.halt_above_g_cm3 > 0):
            raise ValueError("halt_above_g_cm3 needs protocol seed and a positive density")
        if self.protocol == "seed":
            if not 1 <= self.averaging_blocks <= self.ramp_steps // self.block_steps:
                raise ValueError("averaging_blocks must be between 1 and the run's blocks (ramp_steps / block_steps)")
            return
        if self.window_blocks < 4 or self.window_blocks % 2:
            raise ValueError("window_blocks must be even and at least 4")
        if not (self.window_blocks <= self.averaging_blocks <= self.min_hold_blocks <= self.max_hold_blocks):
            raise ValueError("need window_blocks <= averaging_blocks <= min_hold_blocks <= max_hold_blocks")

    @property
    def total_blocks(self) -> int:
        """Density blocks of the whole run at most (the ramp, then the longest hold)."""
        hold = 0 if self.protocol == "seed" else self.max_hold_blocks
        return self.ramp_steps // self.block_steps + hold


def slurry_deck(system: BeadSystem, params: ForceFieldParams, run: SlurryRunSpec) -> str:
    """The LAMMPS input for one slurry trial; reads ``system.data`` from its directory."""
    p0 = atm_to_micro_pressure(run.pressure_atm)
    p_start = atm_to_micro_pressure(run.pressure_start_atm)
    nrep = run.block_steps // run.sample_every
    npt = (f"npt/sphere temp {run.temperature_K:g} {run.temperature_K:g} {run.tdamp_us:g} "
           f"iso {{p_a:.6g}} {{p_b:.6g}} {run.pdamp_us:g}")
    lines = [
        "# calib slurry stage (units micro: pg, um, us; pressure kPa)",
        "units micro",
        "atom_style sphere",
        "boundary p p p",
        "newton off",
        "comm_modify vel yes",
        f"read_data {DATA_FILE}",
        "",
        *pair_lines(params, system, run.lj_style),
        "",
        f"neighbor {run.neighbor_skin_um:g} {run.neighbor_style}",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {run.timestep_us:g}",
        "thermo_style custom step atoms temp press vol density pe ke",
        "thermo_modify norm no lost error flush yes",
        f"thermo {run.thermo_every}",
        "",
        "# energy minimisation of the random placement",
        "min_style cg",
        f"minimize 1.0e-6 1.0e-8 {run.minimize_max_iter} {10 * run.minimize_max_iter}",
        "reset_timestep 0",
        "",
        f"velocity all create {run.temperature_K:g} {velocity_seed(run.seed)} dist gaussian mom yes rot yes",
        "# density block means for the whole run (the trajectory), full precision",
        "variable rho equal density",
        f'fix rho_blocks all ave/time {run.sample_every} {nrep} {run.block_steps} v_rho file {DENSITY_FILE} '
        'format " %.17g"',
        f"# pressure ramp {run.pressure_start_atm:g} -> {run.pressure_atm:g} atm ({p_start:.6g} -> {p0:.6g} kPa)"
        + (" over the whole run (protocol seed)" if run.protocol == "seed" else ""),
        f"fix npt all {npt.format(p_a=p_start, p_b=p0)}",
        *_halt_lines(run),
        f"run {run.ramp_steps}",
    ]
    if run.protocol == "seed":
        return "\n".join(lines + [
            f'print "blocks $(step/{run.block_steps}) stopped $(step<{run.ramp_steps}) steps $(step)" '
            f"file {DENSITY_STATUS}",  # stopped 1: the band's fix halt ended the run
            f"write_data {FINAL_DATA}",
            f"write_restart {FINAL_RESTART}",
            "",
        ])
    lines += [
        "unfix npt",
        f"# hold {run.pressure_atm:g} atm block by block until the density plateaus",
        f"fix npt all {npt.format(p_a=p0, p_b=p0)}",
        *lammps_plateau_lines(run.window_blocks, run.tolerance_rel, run.min_hold_blocks, "f_rho_blocks"),
        "variable stopped equal 0",
        f"variable blk loop {run.max_hold_blocks}",
        "label next_block",
        f"run {run.block_steps}",
        "variable blocks_done equal ${blk}",
        *lammps_plateau_shift(run.window_blocks, "f_rho_blocks"),
    ]
    if run.early_stop:
        lines.append('if "${plateau} > 0" then "variable stopped equal 1" "jump SELF density_done"')
    lines += [
        "next blk",
        "jump SELF next_block",
        "label density_done",
        f'print "blocks ${{blocks_done}} stopped ${{stopped}} steps $(step)" file {DENSITY_STATUS}',
        f"write_data {FINAL_DATA}",
        f"write_restart {FINAL_RESTART}",
        "",
    ]
    return "\n".join(lines)


def _halt_lines(run: SlurryRunSpec) -> list[str]:
    """``fix halt`` on the density block mean (defined after ``rho_blocks``, so it reads the
    block just completed), or nothing."""
    if run.halt_above_g_cm3 is None:
        return []
    rho = g_cm3_to_micro_density(run.halt_above_g_cm3)
    return [f"# stop once a block's density exceeds {run.halt_above_g_cm3:.6g} g/cm^3: the end cannot be lower",
            "variable rho_block equal f_rho_blocks",
            f"fix band_stop all halt {run.block_steps} v_rho_block > {rho:.10g} error soft"]


SEED_MONOTONE_NOTE = """Along the seed protocol the block-mean density does not fall: over the 124
200-bead seed-protocol runs of ``bench/results/compression.jsonl`` (13 parameter sets, k = 1
to 1000, 200 blocks each) no block before the last two exceeded the run's end density by
more than 0.02 % (``bench/early_stop.py``). A block above a density therefore bounds the end
density from below, which is what ``halt_above_g_cm3`` relies on."""


# --- write inputs / read results -------------------------------------------------------

@dataclass(frozen=True)
class SlurryObservables:
    """What a slurry trial measured (experiment units where a name says so).

    density_g_cm3: density averaged over the last ``averaging_blocks`` blocks (g cm^-3).
    density_sem_g_cm3: its standard error by blocking (correlation-aware; g cm^-3).
    density_change_rel: the plateau test's relative change across its last window.
    converged: the plateau test passed on the last window (``convergence.plateau_test``).
    converged_step: the step at which it first passed (None if never).
    n_blocks: density blocks averaged; hold_steps: steps run at the set pressure.
    stopped_early: the run ended at its first passing window (ramp_hold), or (seed) at a
    block above ``halt_above_g_cm3``: then ``density_g_cm3`` is that block's, a lower bound
    of the end density, and ``stopped_fraction`` the fraction of the protocol run.
    atom_steps: atoms x steps over all runs; loop_time_s: LAMMPS loop time (s).
    """

    density_g_cm3: float
    density_sem_g_cm3: float
    density_change_rel: float
    converged: bool
    converged_step: int | None
    n_blocks: int
    hold_steps: int
    stopped_early: bool
    atom_steps: int
    loop_time_s: float
    stopped_fraction: float | None = None

    @property
    def atom_steps_per_s(self) -> float:
        return self.atom_steps / self.loop_time_s if self.loop_time_s > 0 else float("nan")


def write_slurry_inputs(workdir: Path, system: BeadSystem, params: ForceFieldParams, run: SlurryRunSpec,
                        box_um: tuple[float, float, float]) -> None:
    """Write ``system.data`` (random non-overlapping placement) and ``in.slurry`` into
    ``workdir``. Placement is seeded by ``run.seed``."""
    workdir = Path(workdir)
    placement = place_random(system, box_um, seed=run.seed)
    write_data_file(workdir / DATA_FILE, placement, n_types=len(system.types))
    (workdir / DECK_FILE).write_text(slurry_deck(system, params, run))


def density_trajectory(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(step at the end of each block, block-mean density in g cm^-3) of a slurry run."""
    steps, values = read_ave_time(Path(workdir) / DENSITY_FILE)
    return steps, micro_density_to_g_cm3(values)


def density_convergence(steps: np.ndarray, values: np.ndarray, run: SlurryRunSpec) -> PlateauTest:
    """The plateau test on the hold part of a density trajectory."""
    return plateau_test(values[steps > run.ramp_steps], run.window_blocks, run.tolerance_rel)


def read_slurry_observables(workdir: Path, run: SlurryRunSpec) -> SlurryObservables:
    """Parse a finished slurry trial directory (``run``: the spec its deck was written from).
    Raises ``SimulationFailed`` with the reason read from the log when the run failed or left
    no density data."""
    workdir = Path(workdir)
    text = checked_log(workdir, LOG_FILE)
    if not (workdir / DENSITY_FILE).exists() or not (workdir / FINAL_DATA).exists():
        raise SimulationFailed("run ended without writing its density blocks and final state", workdir)
    steps, values = density_trajectory(workdir)
    if run.protocol == "seed":
        return _seed_observables(steps, values, run, run_stats(text), workdir, text)
    hold = values[steps > run.ramp_steps]
    if len(hold) == 0 or not np.all(np.isfinite(hold)) or not (hold.mean() > 0):
        raise SimulationFailed("no finite density blocks at the set pressure", workdir)
    test = density_convergence(steps, values, run)
    window = hold[-run.averaging_blocks:]
    hold_steps = int(steps[-1]) - run.ramp_steps
    rs = run_stats(text)
    first = None if test.first_pass is None else run.ramp_steps + (test.first_pass + 1) * run.block_steps
    return SlurryObservables(
        density_g_cm3=float(window.mean()),
        density_sem_g_cm3=blocking_sem(window, min_blocks=4),
        density_change_rel=test.change_rel,
        converged=test.converged,
        converged_step=first,
        n_blocks=len(window),
        hold_steps=hold_steps,
        stopped_early=run.early_stop and hold_steps < run.max_hold_blocks * run.block_steps,
        atom_steps=rs.atom_steps,
        loop_time_s=rs.loop_time_s,
    )


def _seed_observables(steps: np.ndarray, values: np.ndarray, run: SlurryRunSpec, rs, workdir: Path,
                      text: str = "") -> SlurryObservables:
    """A seed-protocol run: the density at its end (mean of the last ``averaging_blocks``
    blocks). It is the protocol's value, so ``converged`` says only that the run completed
    the protocol; ``density_change_rel`` is the rise over the last 10 % of the run (how far
    from level the protocol leaves it); the standard error is not measured by one run (NaN:
    replicates measure it)."""
    n = run.ramp_steps // run.block_steps
    halted = (run.halt_above_g_cm3 is not None and 0 < len(values) < n and np.all(np.isfinite(values))
              and values[-1] > run.halt_above_g_cm3 and "Fix halt condition for fix-id band_stop" in text)
    if halted:  # stopped by the band: its last block bounds the end density from below
        return SlurryObservables(
            density_g_cm3=float(values[-1]), density_sem_g_cm3=float("nan"),
            density_change_rel=float(values[-1] / values[max(0, len(values) - 1 - max(1, n // 10))] - 1.0),
            converged=True, converged_step=None, n_blocks=1, hold_steps=0, stopped_early=True,
            atom_steps=rs.atom_steps, loop_time_s=rs.loop_time_s, stopped_fraction=len(values) / n)
    if len(values) < n or not np.all(np.isfinite(values)) or not (values[-1] > 0):
        raise SimulationFailed(f"the protocol ended after {len(values)} of its {n} density blocks, or with a "
                               "non-finite density", workdir)
    tail = max(1, n // 10)
    return SlurryObservables(
        density_g_cm3=float(values[-run.averaging_blocks:].mean()),
        density_sem_g_cm3=float("nan"),
        density_change_rel=float(values[-1] / values[-1 - tail] - 1.0),
        converged=True,
        converged_step=None,
        n_blocks=run.averaging_blocks,
        hold_steps=0,
        stopped_early=False,
        atom_steps=rs.atom_steps,
        loop_time_s=rs.loop_time_s,
    )
