"""Slurry stage deck: random placement -> minimisation -> NPT compaction -> density average.

Source: seed Sec. 2.2-2.3 and 3.1; MODEL_NOTES.md "Process steps".

Ensemble. The seed runs NPT at 300 K and 1 atm with sphere rotation integrated. In ``units
micro`` kB*300 K is about 4e-6 pg um^2 us^-2, some six orders of magnitude below the
particles' LJ well depths, so the thermostat is in effect a drag and a Nose-Hoover barostat
whose mass is set from the *thermostat* temperature (``fix npt/sphere``: W = (N+1) kB T
Pdamp^2) is so light that the box diverges at the first step ("Non-numeric pressure").
This deck therefore integrates with ``fix nph/sphere`` (iso, rotation integrated) with the
barostat mass set through ``ptemp`` from the pressure-volume work per bead,
kB * ptemp = P0 * V_beads / N, and holds 300 K with ``fix langevin ... omega yes``
(translational and rotational). Together these sample NPT at 300 K and P0.

Density = total bead mass / box volume (pg um^-3 = g cm^-3), block-averaged over the last
``averaging_steps`` steps by ``fix ave/time`` into ``density_blocks.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .beads import BeadSystem
from .forcefield import ForceFieldParams, pair_lines
from .outputs import SimulationFailed, block_stats, checked_log, read_ave_time, run_stats
from .placement import place_random, write_data_file
from .units import BOLTZMANN_MICRO, atm_to_micro_pressure, micro_density_to_g_cm3

DATA_FILE = "system.data"
DECK_FILE = "in.slurry"
LOG_FILE = "log.lammps"
DENSITY_FILE = "density_blocks.txt"
FINAL_DATA = "final.data"
FINAL_RESTART = "final.restart"


@dataclass(frozen=True)
class SlurryRunSpec:
    """Run settings of the slurry stage (units micro unless the name says otherwise).

    temperature_K, pressure_atm: NPT set point (seed: 300 K, 1 atm).
    timestep_us: integration step (seed: 0.001 us).
    minimize_max_iter: cap on conjugate-gradient iterations of the initial minimisation.
    equilibration_steps: NPT steps before averaging starts.
    averaging_steps: NPT steps over which density is block-averaged.
    block_steps: length of one density block (a divisor of averaging_steps).
    sample_every: density is sampled every this many steps inside a block.
    thermo_every: thermo output interval (steps).
    pdamp_us: barostat relaxation time (us).
    langevin_damp_us: Langevin damping time (us).
    neighbor_skin_um: neighbour-list skin (um).
    lj_style: ``lj/cut`` or ``lj/smooth/linear``.
    seed: random seed of the velocity and Langevin streams.
    """

    temperature_K: float = 300.0
    pressure_atm: float = 1.0
    timestep_us: float = 0.001
    minimize_max_iter: int = 200
    equilibration_steps: int = 20_000
    averaging_steps: int = 10_000
    block_steps: int = 1_000
    sample_every: int = 10
    thermo_every: int = 1_000
    pdamp_us: float = 5.0
    langevin_damp_us: float = 1.0
    neighbor_skin_um: float = 1.0
    lj_style: str = "lj/cut"
    seed: int = 1

    @property
    def total_steps(self) -> int:
        return self.equilibration_steps + self.averaging_steps


def barostat_ptemp_K(system: BeadSystem, pressure_atm: float) -> float:
    """Barostat temperature for ``ptemp`` such that kB*ptemp = P0 * V_beads / N (K).

    V_beads is the summed volume of the bead spheres (um^3); N the bead count.
    """
    p0 = atm_to_micro_pressure(pressure_atm)
    v_beads = sum(t.count * t.volume_um3 for t in system.types)
    return p0 * v_beads / system.n_beads / BOLTZMANN_MICRO


def slurry_deck(system: BeadSystem, params: ForceFieldParams, run: SlurryRunSpec) -> str:
    """The LAMMPS input for one slurry trial; reads ``system.data`` from its directory."""
    p0 = atm_to_micro_pressure(run.pressure_atm)
    ptemp = barostat_ptemp_K(system, run.pressure_atm)
    # large seeds keep LAMMPS's RNGs happy; two streams from one study seed
    vseed = 100_000 + 7919 * run.seed % 900_000
    lseed = 100_000 + 104_729 * run.seed % 900_000
    nrep = run.block_steps // run.sample_every
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
        f"neighbor {run.neighbor_skin_um:g} bin",
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
        f"# NPT at {run.temperature_K:g} K and {run.pressure_atm:g} atm = {p0:.6g} kPa",
        f"velocity all create {run.temperature_K:g} {vseed} dist gaussian mom yes rot yes",
        f"fix npt_baro all nph/sphere iso {p0:.6g} {p0:.6g} {run.pdamp_us:g} ptemp {ptemp:.6g}",
        f"fix npt_temp all langevin {run.temperature_K:g} {run.temperature_K:g} "
        f"{run.langevin_damp_us:g} {lseed} omega yes",
        f"run {run.equilibration_steps}",
        "",
        "# density averaging window: block means to " + DENSITY_FILE,
        "variable rho equal density",
        f"fix rho_blocks all ave/time {run.sample_every} {nrep} {run.block_steps} v_rho file {DENSITY_FILE}",
        f"run {run.averaging_steps}",
        "",
        f"write_data {FINAL_DATA}",
        f"write_restart {FINAL_RESTART}",
        "",
    ]
    return "\n".join(lines)


# --- write inputs / read results -------------------------------------------------------

@dataclass(frozen=True)
class SlurryObservables:
    """What a slurry trial measured (experiment units where a name says so).

    density_g_cm3: time-averaged slurry density (g cm^-3).
    density_sem_g_cm3: standard error of that mean from block scatter (g cm^-3).
    density_drift_rel: relative change of a linear fit over the averaging window.
    n_blocks: number of density blocks averaged.
    atom_steps: atoms x steps over all runs; loop_time_s: LAMMPS loop time (s).
    """

    density_g_cm3: float
    density_sem_g_cm3: float
    density_drift_rel: float
    n_blocks: int
    atom_steps: int
    loop_time_s: float

    @property
    def atom_steps_per_s(self) -> float:
        return self.atom_steps / self.loop_time_s if self.loop_time_s > 0 else float("nan")

    def equilibrated(self, max_drift_rel: float) -> bool:
        """True when |drift| over the averaging window is at most ``max_drift_rel``."""
        return abs(self.density_drift_rel) <= max_drift_rel


def write_slurry_inputs(workdir: Path, system: BeadSystem, params: ForceFieldParams, run: SlurryRunSpec,
                        box_um: tuple[float, float, float]) -> None:
    """Write ``system.data`` (random non-overlapping placement) and ``in.slurry`` into
    ``workdir``. Placement is seeded by ``run.seed``."""
    workdir = Path(workdir)
    placement = place_random(system, box_um, seed=run.seed)
    write_data_file(workdir / DATA_FILE, placement, n_types=len(system.types))
    (workdir / DECK_FILE).write_text(slurry_deck(system, params, run))


def read_slurry_observables(workdir: Path) -> SlurryObservables:
    """Parse a finished slurry trial directory. Raises ``SimulationFailed`` with the reason
    read from the log when the run failed or left no density data."""
    workdir = Path(workdir)
    text = checked_log(workdir, LOG_FILE)
    dens = workdir / DENSITY_FILE
    if not dens.exists() or not (workdir / FINAL_DATA).exists():
        raise SimulationFailed("run ended without writing its density blocks and final state", workdir)
    steps, values = read_ave_time(dens)
    stats = block_stats(steps, values)
    if stats.n_blocks == 0 or not (stats.mean > 0):
        raise SimulationFailed("no finite density blocks in the averaging window", workdir)
    rs = run_stats(text)
    return SlurryObservables(
        density_g_cm3=micro_density_to_g_cm3(stats.mean),
        density_sem_g_cm3=micro_density_to_g_cm3(stats.sem),
        density_drift_rel=stats.drift_rel,
        n_blocks=stats.n_blocks,
        atom_steps=rs.atom_steps,
        loop_time_s=rs.loop_time_s,
    )
