"""Drying stage deck: homogeneous evaporation of a slurry state, then mounting the dried
film on the current collector.

Sources: seed Sec. 2.3 and 3.3; MODEL_NOTES.md "Process steps"; the group's public
homogeneous-drying inputs (periodic box, minimisation, then NPT with the barostat on z
only).

1. Evaporation: every CBD bead shrinks at once from its slurry size (7.5 um) to its solid
   size (3.0 um) with the solid CBD density, and the force field switches to the dried
   parameters (``dried_system``).
2. Equilibration as in the public ``in_evap_hom.run``: all three dimensions periodic,
   ``npt/sphere temp 300 300 0.2 z 40 100 1000`` (Nose-Hoover thermostat and a barostat on z
   only, the pressure ramped from 40 kPa to the set point; x and y stay fixed: the film is
   held laterally by the substrate, so it changes in thickness only).
3. Mounting: z is opened (``boundary p p f``); a granular wall (the current collector) is
   placed under the lowest bead and a lid over the highest, and the film relaxes between
   them under strong Langevin damping. The box's lower z bound is then moved onto the
   collector, so the written state has ``zlo`` = current-collector plane; that is what the
   calendering deck reads.
4. Run-on (``hold_steps`` > 0; ``drying_hold_deck``, a second LAMMPS run): the periodic
   film at the protocol's end, saved before mounting, runs on at the set pressure and its
   height is recorded: how far the dried film would still move past the end of the protocol
   (the stage's drift verdict).

``drying_deck`` is the stage's input: the whole protocol as one LAMMPS run. The same protocol
can also be written as a sequence of inputs (``drying_segments``, ``drying_segment_deck``;
used by ``bench/electrode_protocols.py --chunk-steps`` to spread the public 7e7-step run over
several sessions): the first does the work before the NPT(z) run and its first steps, each
ends with ``write_restart``, the next reads it and continues the same pressure ramp, the last
mounts the film. A restarted run is not bit-identical to the single one (LAMMPS: granular pair
forces depend on the velocities, which a restart holds at the full step), only statistically
equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .beads import BeadSystem
from .convergence import tail_plateau
from .forcefield import ForceFieldParams, WallContact, pair_lines
from .outputs import SimulationFailed, read_ave_time, read_status
from .runspec import NptRunSpec, velocity_seed
from .units import atm_to_micro_pressure

DRYING_DECK = "in.drying"
DRYING_LOG = "log.lammps"
UPSTREAM_DATA = "upstream.data"
DRIED_DATA = "final.data"
DRYING_STATUS = "drying_status.txt"
LZ_FILE = "lz_blocks.txt"
DRYING_END_RESTART = "drying.end.restart"
"""The periodic film at the end of the NPT(z) protocol (written only for a run-on)."""
DRYING_HOLD_DECK = "in.drying_hold"
DRYING_HOLD_LOG = "log.hold.lammps"


@dataclass(frozen=True)
class DryingRunSpec(NptRunSpec):
    """Run settings of the drying stage (units micro).

    equilibration_steps: periodic NPT(z) steps after evaporation. mount_steps: steps of the
    film relaxing between current collector and lid. mount_damp_us: Langevin damping while
    mounted (strong, to absorb the energy released when the periodic film is opened).
    wall: contact law of collector and lid. pressure_start_atm: start of the z pressure
    ramp (public: 40 kPa). block_steps, sample_every: the periodic film height (lz) is
    block-averaged into ``lz_blocks.txt``; window_blocks and tolerance_rel: the plateau test
    on it (``drying_status``). hold_steps: the run-on past the end of the protocol (0: none):
    after the dried state is written, the periodic film at the protocol's end runs on for
    this many NPT(z) steps at the set pressure and its height is recorded (``lz_hold``), the
    drift verdict's measurement. Other fields (``NptRunSpec``) as ``SlurryRunSpec``.
    """

    wall: WallContact
    pressure_start_atm: float = field(default=40.0 / 101.325, kw_only=True)
    equilibration_steps: int = 20_000
    mount_steps: int = 5_000
    tolerance_rel: float = field(default=0.01, kw_only=True)
    mount_damp_us: float = 0.1
    hold_steps: int = 0


def evaporation_lines(dried: BeadSystem, slurry: BeadSystem) -> list[str]:
    """``set`` commands giving every type whose size changed its dried diameter and density
    (diameter first: ``set density`` then sets mass = density x volume)."""
    lines = []
    for new, old in zip(dried.types, slurry.types):
        if new.diameter_um != old.diameter_um or new.mass_pg != old.mass_pg:
            lines.append(f"set type {new.type_id} diameter {new.diameter_um:.10g}")
            lines.append(f"set type {new.type_id} density {new.lammps_density:.10g}")
    return lines


def extent_lines() -> list[str]:
    """Computes of the film's lowest bead bottom (c_zbot) and highest bead top (c_ztop), um."""
    return [
        "variable zbot_atom atom z-radius",
        "variable ztop_atom atom z+radius",
        "compute zbot all reduce min v_zbot_atom",
        "compute ztop all reduce max v_ztop_atom",
    ]


def _seeds(run: DryingRunSpec) -> tuple[int, int]:
    """(velocity seed, Langevin seed) of a run."""
    return velocity_seed(run.seed), 100_000 + 104_729 * run.seed % 900_000


def _settings_lines(run: DryingRunSpec) -> list[str]:
    """Neighbour list, step, film-extent computes and thermo output: what a restart file does
    not keep, so every segment of a chunked run declares them again."""
    return [
        f"neighbor {run.neighbor_skin_um:g} bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {run.timestep_us:g}",
        *extent_lines(),
        "thermo_style custom step atoms temp press pzz lz density pe c_zbot c_ztop",
        "thermo_modify norm no lost error flush yes",
        f"thermo {run.thermo_every}",
    ]


def _setup_lines(slurry: BeadSystem, dried: BeadSystem, params: ForceFieldParams, run: DryingRunSpec) -> list[str]:
    """From reading the slurry state to the start of the NPT(z) run: evaporation, force field,
    minimisation, velocities, the barostat and the film-height record (``lz_start``)."""
    p0 = atm_to_micro_pressure(run.pressure_atm)
    p_start = atm_to_micro_pressure(run.pressure_start_atm)
    vseed, _ = _seeds(run)
    return [
        "# calib drying stage (units micro: pg, um, us; pressure kPa)",
        "units micro",
        "atom_style sphere",
        "boundary p p p",
        "newton off",
        "comm_modify vel yes",
        f"read_data {UPSTREAM_DATA}",
        "",
        "# homogeneous evaporation: beads take their dried size and density",
        *evaporation_lines(dried, slurry),
        *pair_lines(params, dried, run.lj_style),
        "",
        *_settings_lines(run),
        "min_style cg",
        f"minimize 1.0e-6 1.0e-8 {run.minimize_max_iter} {10 * run.minimize_max_iter}",
        "reset_timestep 0",
        "",
        f"# periodic equilibration, barostat on z only, {p_start:.6g} -> {p0:.6g} kPa (public inputs; "
        "x, y held by the substrate)",
        f"velocity all create {run.temperature_K:g} {vseed} dist gaussian mom yes rot yes",
        *_npt_lines(run, append=False),
        f'print "lz_start $(lz:%.17g)" file {DRYING_STATUS}',
    ]


def _npt_lines(run: DryingRunSpec, append: bool) -> list[str]:
    """The NPT(z) fix (ID ``dry_npt``: a chunked run's later segments re-create it under the
    same ID, so LAMMPS restores its thermostat and barostat state from the restart) and the
    block-averaged film height, written to ``lz_blocks.txt`` (``append``: added to it)."""
    p0 = atm_to_micro_pressure(run.pressure_atm)
    p_start = atm_to_micro_pressure(run.pressure_start_atm)
    return [
        f"fix dry_npt all npt/sphere temp {run.temperature_K:g} {run.temperature_K:g} {run.tdamp_us:g} "
        f"z {p_start:.6g} {p0:.6g} {run.pdamp_us:g}",
        "variable lz_now equal lz",
        f'fix lz_blocks all ave/time {run.sample_every} {run.block_steps // run.sample_every} {run.block_steps} '
        f'v_lz_now {"append" if append else "file"} {LZ_FILE} format " %.17g"',
    ]


def _mount_lines(run: DryingRunSpec) -> list[str]:
    """After the NPT(z) run: the film-height record (``lz_end``; with a run-on, the state is
    also saved for it: ``drying_hold_deck``), then the film mounted on the current collector
    and the dried state written."""
    _, lseed = _seeds(run)
    wall = run.wall.args()
    return [
        f'print "lz_end $(lz:%.17g)" append {DRYING_STATUS}',
        *([f"write_restart {DRYING_END_RESTART}"] if run.hold_steps > 0 else []),
        "unfix lz_blocks",
        "unfix dry_npt",
        "",
        "# mount the film on the current collector (z opened; collector below, lid above)",
        "run 0",
        "variable cc_z equal $(c_zbot)",
        "variable lid_z equal $(c_ztop)",
        "change_box all boundary p p f",
        "change_box all z final ${cc_z} $(v_lid_z+0.5*(v_lid_z-v_cc_z))",
        f"fix collector all wall/gran {wall} zplane ${{cc_z}} NULL",
        f"fix lid all wall/gran {wall} zplane NULL ${{lid_z}}",
        "fix mount_nve all nve/sphere",
        f"fix mount_temp all langevin {run.temperature_K:g} {run.temperature_K:g} "
        f"{run.mount_damp_us:g} {lseed + 1} omega yes",
        f"run {run.mount_steps}",
        f"write_data {DRIED_DATA}",
        "",
    ]


def drying_hold_deck(dried: BeadSystem, params: ForceFieldParams, run: DryingRunSpec) -> str:
    """The LAMMPS input of the run-on past the end of the protocol (``hold_steps`` > 0; a
    LAMMPS process of its own, run after ``drying_deck``: re-creating the granular pair style
    in the same process after ``clear`` would give its contact-history fix another ID and the
    restart's contact history would go unused). The periodic film at the protocol's end (its
    restart) runs ``hold_steps`` NPT(z) steps at the set pressure under the same fix ID (its
    thermostat and barostat state restored), and its height is recorded (``lz_hold``). The
    dried state is already written: the run-on measures the drift, it leaves the observable."""
    if run.hold_steps <= 0:
        raise ValueError("a run-on needs hold_steps > 0")
    p0 = atm_to_micro_pressure(run.pressure_atm)
    return "\n".join([
        f"# calib drying stage, run-on past the end of the protocol: {run.hold_steps} NPT(z) steps at "
        f"{p0:.6g} kPa from its end state (the drift verdict)",
        "newton off",
        f"read_restart {DRYING_END_RESTART}",
        "comm_modify vel yes",
        *pair_coeff_lines(params, dried, run.lj_style),
        "",
        *_settings_lines(run),
        f"fix dry_npt all npt/sphere temp {run.temperature_K:g} {run.temperature_K:g} {run.tdamp_us:g} "
        f"z {p0:.6g} {p0:.6g} {run.pdamp_us:g}",
        f"run {run.hold_steps}",
        f'print "lz_hold $(lz:%.17g)" append {DRYING_STATUS}',
        "",
    ])


def drying_deck(slurry: BeadSystem, dried: BeadSystem, params: ForceFieldParams, run: DryingRunSpec) -> str:
    """The LAMMPS input of one drying run; reads ``upstream.data`` (a slurry state)."""
    return "\n".join([
        *_setup_lines(slurry, dried, params, run),
        f"run {run.equilibration_steps}",
        *_mount_lines(run),
    ])


# ------------------------------------------------------------------ the same run in segments

DRYING_SEGMENT_DECK = "in.drying.seg{:03d}"
DRYING_SEGMENT_LOG = "log.seg{:03d}.lammps"
DRYING_SEGMENT_RESTART = "drying.seg{:03d}.restart"


@dataclass(frozen=True)
class DryingSegment:
    """One LAMMPS run of a drying run cut into segments (``drying_segments``): it runs the
    NPT(z) steps ``first_step`` to ``last_step`` of ``total_steps``. The first segment does the
    single deck's work up to the NPT(z) run; every segment but the last ends by writing
    ``restart`` (the next one reads it); the last mounts the film and writes ``final.data``."""

    index: int
    count: int
    first_step: int
    last_step: int
    total_steps: int

    @property
    def steps(self) -> int:
        return self.last_step - self.first_step

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    @property
    def deck(self) -> str:
        return DRYING_SEGMENT_DECK.format(self.index)

    @property
    def log(self) -> str:
        return DRYING_SEGMENT_LOG.format(self.index)

    @property
    def restart(self) -> str | None:
        """The restart file this segment writes (None: the last one writes ``final.data``)."""
        return None if self.is_last else DRYING_SEGMENT_RESTART.format(self.index)

    @property
    def restart_in(self) -> str | None:
        """The restart file this segment starts from (None: the first reads ``upstream.data``)."""
        return None if self.is_first else DRYING_SEGMENT_RESTART.format(self.index - 1)


def drying_segments(run: DryingRunSpec, chunk_steps: int) -> list[DryingSegment]:
    """The NPT(z) run of ``run`` cut into segments of ``chunk_steps`` (the last one shorter when
    they do not divide it). ``chunk_steps`` must be a multiple of ``block_steps``, so that the
    film-height blocks of ``lz_blocks.txt`` are those of the single run (a block cut by a
    restart would be lost)."""
    if chunk_steps <= 0:
        raise ValueError(f"chunk_steps must be positive, got {chunk_steps}")
    if chunk_steps % run.block_steps:
        raise ValueError(f"chunk_steps ({chunk_steps}) must be a multiple of block_steps ({run.block_steps})")
    total = run.equilibration_steps
    bounds = list(range(0, total, chunk_steps)) + [total] if total > 0 else [0, 0]
    n = len(bounds) - 1
    return [DryingSegment(i, n, bounds[i], bounds[i + 1], total) for i in range(n)]


def pair_coeff_lines(params: ForceFieldParams, system: BeadSystem, lj_style: str = "lj/cut") -> list[str]:
    """The ``pair_coeff`` lines of ``pair_lines``, for an input that reads a restart file.

    The restart keeps ``pair_style hybrid/overlay`` with its sub-styles' settings but not the
    per-pair coefficients nor the hybrid's type map (LAMMPS: "All pair coeffs are not set"),
    so these are given again. The ``pair_style`` line must not be: re-issuing it re-creates the
    sub-styles, and the new ``gran/hertz/history`` instance's contact-history fix gets another
    ID (``NEIGH_HISTORY_HH<n>``), so the restart's contact history would go unused."""
    return [ln for ln in pair_lines(params, system, lj_style) if ln.startswith("pair_coeff")]


def drying_segment_deck(slurry: BeadSystem, dried: BeadSystem, params: ForceFieldParams, run: DryingRunSpec,
                        seg: DryingSegment) -> str:
    """The LAMMPS input of one segment of a chunked drying run (``drying_segments``).

    Every segment runs with ``run N start 0 stop total_steps``, so the barostat's target
    pressure is the same linear function of the step as in ``drying_deck``'s single run. A
    later segment reads the previous restart and declares again what it does not keep (the
    ``newton`` and ``comm_modify`` settings, pair coefficients, neighbour, thermo, computes,
    variables, fixes); the fix ``dry_npt`` re-created under its ID takes its Nose-Hoover
    thermostat and barostat state from the restart, and the film-height blocks and status
    lines are appended to the single run's files."""
    run_line = f"run {seg.steps} start 0 stop {seg.total_steps}"
    if seg.is_first:
        lines = _setup_lines(slurry, dried, params, run)
    else:
        lines = [
            f"# calib drying stage, segment {seg.index + 1} of {seg.count}: NPT(z) steps {seg.first_step} to "
            f"{seg.last_step} of {seg.total_steps}",
            "newton off",
            f"read_restart {seg.restart_in}",
            "comm_modify vel yes",
            *pair_coeff_lines(params, dried, run.lj_style),
            "",
            *_settings_lines(run),
            "",
            *_npt_lines(run, append=True),
        ]
    lines.append(run_line)
    if seg.is_last:
        lines += _mount_lines(run)
    else:
        lines += [f'print "lz_step_{seg.last_step} $(lz:%.17g)" append {DRYING_STATUS}',
                  f"write_restart {seg.restart}", ""]
    return "\n".join(lines)


def write_drying_segments(workdir: Path, slurry: BeadSystem, dried: BeadSystem, params: ForceFieldParams,
                          run: DryingRunSpec, chunk_steps: int) -> list[DryingSegment]:
    """Write the decks of the drying run in segments of ``chunk_steps`` into ``workdir`` (the
    caller places ``upstream.data`` there) and return the segments."""
    segs = drying_segments(run, chunk_steps)
    for seg in segs:
        (Path(workdir) / seg.deck).write_text(drying_segment_deck(slurry, dried, params, run, seg))
    if run.hold_steps > 0:
        (Path(workdir) / DRYING_HOLD_DECK).write_text(drying_hold_deck(dried, params, run))
    return segs


def write_drying_inputs(workdir: Path, slurry: BeadSystem, dried: BeadSystem, params: ForceFieldParams,
                        run: DryingRunSpec) -> None:
    """Write ``in.drying`` (and with a run-on ``in.drying_hold``) into ``workdir`` (the caller
    places ``upstream.data`` there)."""
    (Path(workdir) / DRYING_DECK).write_text(drying_deck(slurry, dried, params, run))
    if run.hold_steps > 0:
        (Path(workdir) / DRYING_HOLD_DECK).write_text(drying_hold_deck(dried, params, run))


@dataclass(frozen=True)
class DryingStatus:
    """The periodic film's height (the box's lz, um) before and after the NPT(z) run, its
    relative change (negative: the film thins, as in the seed) and whether lz plateaued
    over the last ``window_blocks`` blocks (``convergence.plateau_test``); with a run-on, the
    height after ``hold_steps`` more steps at the set pressure (``lz_hold_um``)."""

    lz_start_um: float
    lz_end_um: float
    thickness_change_rel: float
    converged: bool
    change_rel_last_window: float
    lz_hold_um: float | None = None
    hold_steps: int = 0


def drying_status(workdir: Path, run: DryingRunSpec) -> DryingStatus:
    """Read ``drying_status.txt`` and ``lz_blocks.txt``; ``SimulationFailed`` if missing."""
    workdir = Path(workdir)
    path = workdir / DRYING_STATUS
    missing = "drying ended without writing its film-height record"
    if not (workdir / LZ_FILE).exists():
        raise SimulationFailed(missing, workdir)
    vals = read_status(workdir, DRYING_STATUS, missing, float)
    if not {"lz_start", "lz_end"} <= set(vals):
        raise SimulationFailed(f"incomplete drying status: {path.read_text()!r}", workdir)
    _, lz = read_ave_time(workdir / LZ_FILE)
    test = tail_plateau(lz, run.window_blocks, run.tolerance_rel)
    if run.hold_steps > 0 and "lz_hold" not in vals:
        raise SimulationFailed("drying ended without the film height after its run-on (lz_hold)", workdir)
    return DryingStatus(vals["lz_start"], vals["lz_end"], vals["lz_end"] / vals["lz_start"] - 1.0,
                        bool(test and test.converged), test.change_rel if test else float("nan"),
                        vals.get("lz_hold") if run.hold_steps > 0 else None, run.hold_steps)
