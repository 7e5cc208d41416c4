"""Calendering stage deck: a granular plane compresses a dried film on its current
collector by a given degree, holds, and (optionally) is removed for spring-back.

Sources: seed Sec. 3.3 ("a plane moving downward at a constant speed ... the interactions
between the wall and the particles are governed by the GH FFs"); MODEL_NOTES.md.

The state read (``../dried.data`` by default) has ``zlo`` on the current-collector plane
(``drying`` writes it so). T0 = top of the highest bead - collector. The piston is a
``plane`` region moved by a variable and made a Hertzian wall by ``fix wall/gran/region``;
it starts just above the film and descends at ``speed`` to collector + (1 - degree) T0 and
holds there for ``hold_steps`` (Nose-Hoover ``nvt/sphere``, as the public inputs); then the
film relaxes for ``release_steps``, with the plane
in place or, if ``release``, without it (spring-back). ``calender_status.txt`` records T0,
the top while held, the final top and the number of bead centres beyond the plane (a bead
pushed through it) after the hold and, with the plane kept, at the end. ``relax_blocks.txt``
holds block means of the beads' mean height above the collector during the relaxation, the
record of the stage's convergence verdict (``relaxation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .drying import extent_lines
from .forcefield import ForceFieldParams, WallContact, pair_lines
from .beads import BeadSystem
from .convergence import tail_plateau
from .outputs import SimulationFailed, read_ave_time, read_status
from .runspec import MicroRunSpec

CALENDER_DECK = "in.calender"
CALENDER_LOG = "log.lammps"
CALENDER_STATUS = "calender_status.txt"
CALENDERED_DATA = "final.data"
RELAX_FILE = "relax_blocks.txt"
"""Block means of the film's mean bead height above the collector (um) while it relaxes."""
MAX_DEGREE_PCT = 60.0
"""Calendering degrees lie in [0, MAX_DEGREE_PCT) % of the film's thickness."""


@dataclass(frozen=True)
class CalenderRunSpec(MicroRunSpec):
    """One calendering degree (units micro).

    degree_pct: thickness reduction, in [0, 60) %. speed_um_per_us: piston speed (public
    ``Calendering/in_cal.run``: 0.02 um/us, with timestep 1e-4 us and ``nvt/sphere`` at
    damping ``tdamp_us`` 0.2 us).
    gap_um: start of the piston above the film. hold_steps: steps held at the final
    position before the held thickness is taken; release_steps: relaxation steps after it,
    without the plane if ``release`` (spring-back), else with it in place.
    wall: contact law of collector and piston. state_file: the dried state. block_steps,
    sample_every: the relaxation record's block length and sampling interval (steps). Other
    fields: ``MicroRunSpec`` (``timestep_us`` here defaults to 1e-4 us).
    """

    degree_pct: float
    wall: WallContact
    timestep_us: float = field(default=1e-4, kw_only=True)
    speed_um_per_us: float = 0.02
    gap_um: float = 0.1
    hold_steps: int = 5_000
    release: bool = False
    release_steps: int = 10_000
    state_file: str = "../dried.data"

    def __post_init__(self) -> None:
        if self.block_steps % self.sample_every:
            raise ValueError("block_steps must be a multiple of sample_every")
        if not (0.0 <= self.degree_pct < MAX_DEGREE_PCT):
            raise ValueError(f"calendering degree must be in [0, {MAX_DEGREE_PCT:g}) %, got {self.degree_pct:g}")


def calender_deck(system: BeadSystem, params: ForceFieldParams, run: CalenderRunSpec) -> str:
    """The LAMMPS input of one calendering degree."""
    wall = run.wall.args()
    frac = run.degree_pct / 100.0
    lines = [
        f"# calib calendering stage, degree {run.degree_pct:g} % (units micro: pg, um, us)",
        "units micro",
        "atom_style sphere",
        "boundary p p f",
        "newton off",
        "comm_modify vel yes",
        f"read_data {run.state_file}",
        "",
        *pair_lines(params, system, run.lj_style),
        f"neighbor {run.neighbor_skin_um:g} bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {run.timestep_us:g}",
        *extent_lines(),
        "thermo_style custom step atoms temp press pzz pe c_zbot c_ztop",
        "thermo_modify norm no lost error flush yes",
        f"thermo {run.thermo_every}",
        "run 0",
        "variable cc_z equal $(zlo)",
        "variable t0 equal $(c_ztop-zlo)",
        f"variable target_z equal $(v_cc_z+{1.0 - frac:.10g}*v_t0)",
        f"variable start_z equal $(v_cc_z+v_t0+{run.gap_um:g})",
        "change_box all z final ${cc_z} $(v_start_z+0.5*v_t0)",
        f"variable n_compress equal $(ceil((v_start_z-v_target_z)/({run.speed_um_per_us:g}*dt)))",
        "reset_timestep 0",
        f"variable piston_lin equal v_start_z-{run.speed_um_per_us:g}*step*dt",
        "variable piston_z equal ternary(v_piston_lin>v_target_z,v_piston_lin,v_target_z)",
        "variable beyond_atom atom z>v_piston_z",
        "compute beyond all reduce sum v_beyond_atom",
        "region piston plane 0 0 0 0 0 -1 side in move NULL NULL v_piston_z units box",
        f"fix collector all wall/gran {wall} zplane ${{cc_z}} NULL",
        f"fix piston all wall/gran/region {wall} region piston",
        f"fix cal_nvt all nvt/sphere temp {run.temperature_K:g} {run.temperature_K:g} {run.tdamp_us:g}",
        "thermo_style custom step atoms temp press pzz pe c_zbot c_ztop v_piston_z c_beyond",
        "thermo_modify norm no lost error flush yes",
        "run ${n_compress}",
        f"run {run.hold_steps}",
        f'print "t0 ${{t0}} held $(c_ztop-v_cc_z) piston $(v_piston_z-v_cc_z) beyond $(c_beyond)" '
        f"file {CALENDER_STATUS}",
    ]
    if run.release:
        lines.append("unfix piston")
    lines += [
        "compute zmean all reduce ave z",
        "variable zrel equal c_zmean-v_cc_z",
        f"fix relax_blocks all ave/time {run.sample_every} {run.block_steps // run.sample_every} {run.block_steps} "
        f'v_zrel file {RELAX_FILE} format " %.17g"',
        f"run {run.release_steps}",
        "unfix relax_blocks",
        f'print "final $(c_ztop-v_cc_z)" append {CALENDER_STATUS}' if run.release else
        f'print "final $(c_ztop-v_cc_z) beyond_end $(c_beyond)" append {CALENDER_STATUS}',
        f"write_data {CALENDERED_DATA}",
        "",
    ]
    return "\n".join(lines)


def write_calender_inputs(workdir: Path, system: BeadSystem, params: ForceFieldParams, run: CalenderRunSpec) -> None:
    (Path(workdir) / CALENDER_DECK).write_text(calender_deck(system, params, run))


@dataclass(frozen=True)
class CalenderStatus:
    """What the deck recorded (um above the collector): thickness before (t0), top of the
    film while held, piston position, beads beyond the piston (the larger count of the two
    checks) and the top at the end (after spring-back if the plane was removed)."""

    t0_um: float
    held_um: float
    piston_um: float
    beyond: int
    final_um: float


def read_calender_status(workdir: Path) -> CalenderStatus:
    """Parse ``calender_status.txt``; raises ``SimulationFailed`` when it is missing,
    incomplete, or a bead was pushed through the piston."""
    path = Path(workdir) / CALENDER_STATUS
    vals = read_status(workdir, CALENDER_STATUS, "calendering ended without writing its status", float)
    if not {"t0", "held", "piston", "beyond", "final"} <= set(vals):
        raise SimulationFailed(f"incomplete calendering status: {path.read_text()!r}", Path(workdir))
    st = CalenderStatus(vals["t0"], vals["held"], vals["piston"],
                        int(max(vals["beyond"], vals.get("beyond_end", 0))), vals["final"])
    if st.beyond > 0:
        raise SimulationFailed(f"{st.beyond} bead(s) escaped through the calendering wall (centre above the "
                               "piston): the wall is too soft for this force field", Path(workdir))
    return st


@dataclass(frozen=True)
class Relaxation:
    """The film's mean bead height (um above the collector) over the relaxation: its relative
    change across the last ``window`` blocks (``convergence.plateau_test``) and whether that
    is within the tolerance."""

    blocks: int
    window: int
    change_rel: float
    converged: bool


def relaxation(workdir: Path, window_blocks: int, tolerance_rel: float) -> Relaxation:
    """Plateau test of ``relax_blocks.txt`` over the last ``window_blocks`` blocks (fewer if the
    relaxation had fewer; under 4 blocks it cannot pass); ``SimulationFailed`` if missing."""
    path = Path(workdir) / RELAX_FILE
    if not path.exists():
        raise SimulationFailed("calendering ended without its relaxation record", Path(workdir))
    _, z = read_ave_time(path)
    test = tail_plateau(z, window_blocks, tolerance_rel)
    window = min(window_blocks, len(z) // 2 * 2)
    return Relaxation(len(z), window, test.change_rel, test.converged) if test else \
        Relaxation(len(z), window, float("nan"), False)
