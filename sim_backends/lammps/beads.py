"""Bead system builder: from a formulation (wt %) to bead counts per type and size class.

Sources: seed paper (Alabdali et al., Sec. 2.2 and 3.1; ../shared/reference) for the
formulation, the 5089-bead paper scale, the 14 % solvent shell on AM and SE in the slurry and
the 7.5 um / 0.9 g cm^-3 slurry CBD bead.

Mass convention (documented in docs/model.md): the formulation's weight fractions are split
over bead types with each bead's *mass*. An AM or SE bead carries the mass of its dry
particle (dry diameter x material density); a slurry CBD bead carries its own effective mass
(7.5 um at 0.9 g cm^-3, carbon + binder + solvent, as the seed defines it). In the slurry the
AM and SE beads are drawn with the enlarged diameter (dry x 1.14) at the same mass, so the
LAMMPS per-atom density is mass / volume of the enlarged sphere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .units import g_cm3_to_micro_density

PHASES = ("AM", "SE", "CBD")


@dataclass(frozen=True)
class SizeClass:
    """One particle size class of a phase.

    diameter_um: dry particle diameter (um).
    number_fraction: fraction of the phase's particles in this class (sums to 1 per phase).
    """

    diameter_um: float
    number_fraction: float


@dataclass(frozen=True)
class Phase:
    """One material phase of the electrode.

    name: ``AM``, ``SE`` or ``CBD``.
    weight_fraction: mass fraction in the dry formulation (0..1).
    density_g_cm3: density of the bead material (g cm^-3).
    size_classes: dry diameters and their number fractions.
    slurry_diameter_factor: bead diameter in the slurry / dry diameter (1.14 for AM and SE
        in the seed; 1.0 for the CBD bead whose slurry diameter is given directly).
    """

    name: str
    weight_fraction: float
    density_g_cm3: float
    size_classes: tuple[SizeClass, ...]
    slurry_diameter_factor: float = 1.0

    def particle_mass_pg(self, diameter_um: float) -> float:
        """Mass of one particle of dry diameter ``diameter_um`` (pg)."""
        return g_cm3_to_micro_density(self.density_g_cm3) * math.pi / 6.0 * diameter_um**3

    def mean_particle_mass_pg(self) -> float:
        """Number-weighted mean particle mass of the phase (pg)."""
        return sum(c.number_fraction * self.particle_mass_pg(c.diameter_um) for c in self.size_classes)


@dataclass(frozen=True)
class Formulation:
    """A slurry formulation: the phases (wt % of the dry composite) of one electrode."""

    phases: tuple[Phase, ...]

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class BeadType:
    """One LAMMPS atom type: a phase's size class.

    type_id: LAMMPS type number (1-based).
    phase: ``AM``/``SE``/``CBD``.
    dry_diameter_um: the particle's dry diameter (um).
    diameter_um: the bead diameter used in the simulation at this stage (um).
    mass_pg: bead mass (pg).
    count: number of beads of this type.
    """

    type_id: int
    phase: str
    dry_diameter_um: float
    diameter_um: float
    mass_pg: float
    count: int

    @property
    def lammps_density(self) -> float:
        """Per-atom density for ``atom_style sphere`` so that LAMMPS's mass equals ``mass_pg``
        (pg um^-3 = g cm^-3)."""
        return self.mass_pg / (math.pi / 6.0 * self.diameter_um**3)

    @property
    def volume_um3(self) -> float:
        """Volume of one bead sphere at the stage diameter (um^3)."""
        return math.pi / 6.0 * self.diameter_um**3


@dataclass(frozen=True)
class BeadSystem:
    """Bead types with their counts; ``exact_counts`` are the unrounded counts per type."""

    types: tuple[BeadType, ...]
    exact_counts: tuple[float, ...]

    @property
    def n_beads(self) -> int:
        return sum(t.count for t in self.types)

    @property
    def total_mass_pg(self) -> float:
        return sum(t.count * t.mass_pg for t in self.types)

    def phase_mass_fraction(self, phase: str) -> float:
        """Mass fraction of ``phase`` in the built system (0..1)."""
        m = sum(t.count * t.mass_pg for t in self.types if t.phase == phase)
        return m / self.total_mass_pg

    def phase_count(self, phase: str) -> int:
        return sum(t.count for t in self.types if t.phase == phase)

    def types_of(self, phase: str) -> tuple[BeadType, ...]:
        return tuple(t for t in self.types if t.phase == phase)


def _largest_remainder(exact: list[float], total: int) -> list[int]:
    """Round ``exact`` (summing to ``total``) to integers summing to ``total``; each result
    differs from its exact value by less than one (Hamilton's method)."""
    floors = [math.floor(x) for x in exact]
    short = total - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: exact[i] - floors[i], reverse=True)
    for i in order[:short]:
        floors[i] += 1
    return floors


def build_slurry_system(formulation: Formulation, n_beads: int) -> BeadSystem:
    """Bead counts per type and size class for ``n_beads`` beads in the slurry.

    Solves N_phase = w_phase * M / <m_phase> for the total mass M that gives ``n_beads``,
    splits each phase over its size classes by number fraction, and rounds with the
    largest-remainder method so that the counts sum to ``n_beads`` and each type is within
    one bead of its exact value. Types are numbered in the order AM classes, SE classes,
    CBD classes (ascending dry diameter inside a phase).
    """
    if n_beads < 1:
        raise ValueError(f"n_beads must be positive, got {n_beads}")
    beads_per_mass = sum(p.weight_fraction / p.mean_particle_mass_pg() for p in formulation.phases)
    total_mass = n_beads / beads_per_mass
    rows: list[tuple[Phase, SizeClass, float]] = []
    for name in PHASES:
        try:
            phase = formulation.phase(name)
        except KeyError:
            continue
        n_phase = phase.weight_fraction * total_mass / phase.mean_particle_mass_pg()
        for c in sorted(phase.size_classes, key=lambda c: c.diameter_um):
            rows.append((phase, c, n_phase * c.number_fraction))
    exact = [r[2] for r in rows]
    counts = _largest_remainder(exact, n_beads)
    types = tuple(
        BeadType(
            type_id=i + 1,
            phase=phase.name,
            dry_diameter_um=c.diameter_um,
            diameter_um=c.diameter_um * phase.slurry_diameter_factor,
            mass_pg=phase.particle_mass_pg(c.diameter_um),
            count=n,
        )
        for i, ((phase, c, _), n) in enumerate(zip(rows, counts))
    )
    return BeadSystem(types=types, exact_counts=tuple(exact))


def dried_system(system: BeadSystem, dried: dict[str, tuple[float, float]]) -> BeadSystem:
    """The bead system after homogeneous evaporation (seed Sec. 3.3): every bead of a phase
    in ``dried`` (phase -> (diameter um, density g cm^-3), e.g. CBD 7.5 -> 3.0 um at solid
    CBD density) takes that diameter and density; the other beads keep their simulation
    diameter and mass (AM and SE keep their solvent shell as the group's public inputs do;
    porosity is measured with their dry diameters)."""
    types = []
    for t in system.types:
        if t.phase in dried:
            d, rho = dried[t.phase]
            mass = g_cm3_to_micro_density(rho) * math.pi / 6.0 * d**3
            types.append(BeadType(t.type_id, t.phase, d, d, mass, t.count))
        else:
            types.append(t)
    return BeadSystem(types=tuple(types), exact_counts=system.exact_counts)
