"""Bead system builder: from a formulation (wt %) to bead counts per type and size class.

Sources: seed paper (Alabdali et al., Sec. 2.2 and 3.1; ../shared/reference) for the
formulation, the 5089-bead paper scale, the 14 % solvent shell on AM and SE in the slurry and
the 7.5 um / 0.9 g cm^-3 slurry CBD bead; the group's public LAMMPS inputs
(``Slurry/init_structure.txt``, ``Drying_homogeneous/force_fields_params.txt``;
MODEL_NOTES.md "Conventions of the group's public inputs") for the counting convention.

Counting convention (public inputs; docs/model.md "Beads"):

- The dry formulation's weight fractions are split over bead types with each bead's *solid*
  mass: an AM or SE bead carries its dry particle's mass (dry diameter x material density);
  a CBD bead is counted at its *solid* size and density (seed: 3.0 um; solid CBD density =
  bulk x (1 - nanoporosity)), ``n_CBD = CBD mass / solid CBD bead mass``.
- In the slurry every CBD bead is the seed's wet bead (7.5 um at 0.9 g cm^-3): CBD plus
  solvent. The solvent mass is the difference, summed over the CBD beads; the implied solids
  content is dry mass / (dry mass + solvent mass) (``BeadSystem.solids_content``).
- AM and SE are drawn with the enlarged diameter (dry x ``slurry_diameter_factor``, seed
  1.14) at their dry mass; after drying with dry x ``dried_diameter_factor`` (public 1.02).
- Every Lennard-Jones multiplier of Table S1 acts on one diameter per type, the same in all
  stages: ``BeadType.lj_diameter_um`` = the dry particle diameter for AM and SE, the solid
  (dried) CBD diameter for CBD.

The dried state therefore reproduces the dry formulation within one bead per phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .units import g_cm3_to_micro_density

PHASES = ("AM", "SE", "CBD")

PUBLIC_DRIED_DIAMETER_FACTOR = 1.02
"""AM/SE bead diameter after drying / dry particle diameter (``exp_par`` of the group's public
drying inputs)."""


def sphere_mass_pg(diameter_um: float, density_g_cm3: float) -> float:
    """Mass of a sphere (pg) of ``diameter_um`` (um) at ``density_g_cm3`` (g cm^-3 = pg um^-3)."""
    return g_cm3_to_micro_density(density_g_cm3) * math.pi / 6.0 * diameter_um**3


@dataclass(frozen=True)
class SizeClass:
    """One particle size class of a phase.

    diameter_um: particle diameter (um): the dry diameter for AM and SE, the wet slurry bead
        diameter for a phase with a ``solid`` bead (CBD: 7.5 um).
    number_fraction: fraction of the phase's particles in this class (sums to 1 per phase).
    """

    diameter_um: float
    number_fraction: float


@dataclass(frozen=True)
class SolidBead:
    """The solid bead of a phase that carries solvent in the slurry (CBD): its diameter (um)
    and density (g cm^-3) after drying, which also set its count."""

    diameter_um: float
    density_g_cm3: float

    @property
    def mass_pg(self) -> float:
        return sphere_mass_pg(self.diameter_um, self.density_g_cm3)


@dataclass(frozen=True)
class Phase:
    """One material phase of the electrode.

    name: ``AM``, ``SE`` or ``CBD``.
    weight_fraction: mass fraction in the dry formulation (0..1).
    density_g_cm3: density of the slurry bead material (g cm^-3): the particle's for AM and
        SE, the wet bead's (CBD + solvent, seed 0.9) for a phase with a ``solid`` bead.
    size_classes: diameters and their number fractions (see ``SizeClass``).
    slurry_diameter_factor: bead diameter in the slurry / dry diameter (1.14 for AM and SE
        in the seed; 1.0 for the CBD bead whose slurry diameter is given directly).
    dried_diameter_factor: bead diameter after drying / dry diameter (AM, SE; public 1.02).
    solid: the phase's solid bead when its slurry bead also carries solvent (CBD), else None.
    """

    name: str
    weight_fraction: float
    density_g_cm3: float
    size_classes: tuple[SizeClass, ...]
    slurry_diameter_factor: float = 1.0
    dried_diameter_factor: float = PUBLIC_DRIED_DIAMETER_FACTOR
    solid: SolidBead | None = None

    def __post_init__(self) -> None:
        if not (self.slurry_diameter_factor > 0 and self.dried_diameter_factor > 0):
            raise ValueError(f"{self.name}: diameter factors must be positive")

    def particle_mass_pg(self, diameter_um: float) -> float:
        """Mass of one slurry bead of diameter ``diameter_um`` at the phase density (pg)."""
        return sphere_mass_pg(diameter_um, self.density_g_cm3)

    def counting_mass_pg(self) -> float:
        """Mean dry (solid) mass of one bead of the phase (pg): what the dry weight fraction is
        divided by to count its beads."""
        if self.solid is not None:
            return self.solid.mass_pg
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
    dry_diameter_um: the solid particle's diameter (um): what porosity counts as solid, and
        the diameter every LJ multiplier acts on (``lj_diameter_um``).
    diameter_um: the bead diameter used in the simulation at this stage (um).
    mass_pg: bead mass at this stage (pg).
    count: number of beads of this type.
    solid_mass_pg: the bead's dry (solid) mass (pg): its share of the dry formulation.
    """

    type_id: int
    phase: str
    dry_diameter_um: float
    diameter_um: float
    mass_pg: float
    count: int
    solid_mass_pg: float | None = None

    @property
    def lj_diameter_um(self) -> float:
        """The one diameter the Table S1 LJ multipliers act on, in every stage (um)."""
        return self.dry_diameter_um

    @property
    def dry_mass_pg(self) -> float:
        return self.mass_pg if self.solid_mass_pg is None else self.solid_mass_pg

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

    @property
    def dry_mass_pg(self) -> float:
        """Mass of the dry composite (pg): every bead at its solid mass."""
        return sum(t.count * t.dry_mass_pg for t in self.types)

    @property
    def solvent_mass_pg(self) -> float:
        """Solvent carried by the beads at this stage (pg; 0 after drying)."""
        return self.total_mass_pg - self.dry_mass_pg

    @property
    def solids_content(self) -> float:
        """Dry mass / (dry mass + solvent mass) at this stage (1 after drying)."""
        return self.dry_mass_pg / self.total_mass_pg

    def phase_mass_fraction(self, phase: str) -> float:
        """Mass fraction of ``phase`` in the built system at this stage (0..1)."""
        m = sum(t.count * t.mass_pg for t in self.types if t.phase == phase)
        return m / self.total_mass_pg

    def phase_dry_mass_fraction(self, phase: str) -> float:
        """Mass fraction of ``phase`` in the dry composite (0..1), solvent excluded."""
        m = sum(t.count * t.dry_mass_pg for t in self.types if t.phase == phase)
        return m / self.dry_mass_pg

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

    Counts by the public convention: N_phase = w_phase * M / m_solid(phase) for the dry mass
    M that gives ``n_beads`` beads, with m_solid the mean dry particle mass (AM, SE) or the
    solid bead mass (a phase with ``solid``, CBD). Each phase is split over its size classes
    by number fraction and rounded with the largest-remainder method, so that the counts sum
    to ``n_beads`` and each type is within one bead of its exact value. Slurry beads: AM/SE
    at dry x ``slurry_diameter_factor`` with their dry mass; CBD at its wet size and density
    (solid + solvent mass). Types are numbered AM classes, SE classes, CBD classes (ascending
    diameter inside a phase).
    """
    if n_beads < 1:
        raise ValueError(f"n_beads must be positive, got {n_beads}")
    present = [formulation.phase(n) for n in PHASES if any(p.name == n for p in formulation.phases)]
    for p in present:
        if p.solid is not None and any(p.particle_mass_pg(c.diameter_um) < p.solid.mass_pg for c in p.size_classes):
            raise ValueError(f"{p.name}: the slurry bead is lighter than its solid bead (negative solvent mass)")
    beads_per_mass = sum(p.weight_fraction / p.counting_mass_pg() for p in present)
    dry_mass = n_beads / beads_per_mass
    rows: list[tuple[Phase, SizeClass, float]] = []
    for phase in present:
        n_phase = phase.weight_fraction * dry_mass / phase.counting_mass_pg()
        for c in sorted(phase.size_classes, key=lambda c: c.diameter_um):
            rows.append((phase, c, n_phase * c.number_fraction))
    exact = [r[2] for r in rows]
    counts = _largest_remainder(exact, n_beads)
    types = []
    for i, ((phase, c, _), n) in enumerate(zip(rows, counts)):
        if phase.solid is not None:
            types.append(BeadType(i + 1, phase.name, phase.solid.diameter_um, c.diameter_um,
                                  phase.particle_mass_pg(c.diameter_um), n, solid_mass_pg=phase.solid.mass_pg))
        else:
            types.append(BeadType(i + 1, phase.name, c.diameter_um, c.diameter_um * phase.slurry_diameter_factor,
                                  phase.particle_mass_pg(c.diameter_um), n))
    return BeadSystem(types=tuple(types), exact_counts=tuple(exact))


def dried_system(system: BeadSystem, formulation: Formulation) -> BeadSystem:
    """The bead system after homogeneous evaporation (seed Sec. 3.3; public drying inputs):
    a bead carrying solvent (CBD) takes its solid size and mass (7.5 -> 3.0 um); AM and SE
    lose their solvent shell and take dry x ``dried_diameter_factor`` (public 1.02) at their
    dry mass."""
    types = []
    for t in system.types:
        phase = formulation.phase(t.phase)
        if phase.solid is not None:
            types.append(replace(t, diameter_um=phase.solid.diameter_um, mass_pg=phase.solid.mass_pg,
                                 solid_mass_pg=None))
        else:
            types.append(replace(t, diameter_um=t.dry_diameter_um * phase.dried_diameter_factor,
                                 solid_mass_pg=None))
    return BeadSystem(types=tuple(types), exact_counts=system.exact_counts)
