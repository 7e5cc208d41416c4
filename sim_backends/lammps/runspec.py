"""Run settings the LAMMPS deck specs share, as frozen base dataclasses, and the seed of the
velocity stream.

``DeckSpec`` (every deck: shear, slurry, drying, calendering) < ``MicroRunSpec`` (the stage
decks in LAMMPS units micro: slurry, drying, calendering) < ``NptRunSpec`` (the decks that
minimise the state and run NPT with a pressure ramp: slurry, drying). Their fields are
keyword-only, so a spec's own fields keep their places (a required one may follow them); a
spec may give a shared field another default (calendering: ``timestep_us``, drying:
``pressure_start_atm``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class DeckSpec:
    """What every deck sets (steps): ``sample_every``, the sampling interval of its block
    averages; ``thermo_every``, the interval of LAMMPS's thermo output."""

    sample_every: int = 10
    thermo_every: int = 1_000


@dataclass(frozen=True, kw_only=True)
class MicroRunSpec(DeckSpec):
    """Settings of a stage deck in LAMMPS units micro (pg, um, us).

    temperature_K: thermostat set point (seed: 300 K). timestep_us: integration step (us).
    tdamp_us: thermostat damping (public inputs: 0.2 us). block_steps: length of one block
    of the deck's block averages (steps). neighbor_skin_um: neighbour-list skin (um).
    lj_style: ``lj/cut`` or ``lj/smooth/linear``. seed: the run's random seed (placement,
    velocities: ``velocity_seed``).
    """

    temperature_K: float = 300.0
    timestep_us: float = 0.001
    tdamp_us: float = 0.2
    block_steps: int = 1_000
    neighbor_skin_um: float = 1.0
    lj_style: str = "lj/cut"
    seed: int = 1


@dataclass(frozen=True, kw_only=True)
class NptRunSpec(MicroRunSpec):
    """A stage deck that minimises its state and runs NPT under a pressure ramp.

    pressure_atm: set point P0 (seed: 1 atm). pressure_start_atm: start of the ramp (atm).
    pdamp_us: barostat damping (public inputs: 1000 us). minimize_max_iter: cap on the
    conjugate-gradient iterations of the initial minimisation. window_blocks, tolerance_rel:
    the plateau test on the deck's block means (``convergence.plateau_test``: the last
    ``window_blocks`` blocks change by at most ``tolerance_rel``, relative).
    """

    pressure_atm: float = 1.0
    pressure_start_atm: float = 0.0
    pdamp_us: float = 1000.0
    minimize_max_iter: int = 200
    window_blocks: int = 10
    tolerance_rel: float = 0.005


def velocity_seed(seed: int) -> int:
    """The seed LAMMPS's ``velocity all create`` gets for run seed ``seed``: 100000 + (7919 x
    seed mod 900000), an integer in [100000, 1000000)."""
    return 100_000 + 7919 * seed % 900_000
