"""The dataset's particle system as bead systems (``sim_backends.lammps.beads``), shared by
every stage."""

from __future__ import annotations

from objectives.dataset import Dataset
from sim_backends.lammps.beads import (BeadSystem, Formulation, Phase, SizeClass, SolidBead, build_slurry_system,
                                       dried_system)

from calib.spec.fidelity import Fidelity


def formulation_of(dataset: Dataset) -> Formulation:
    """The dataset's system as a ``sim_backends`` formulation (checked by ``study.load_study``:
    size classes, the AM/SE shell factor and the solid CBD bead are present)."""
    assert dataset.system is not None
    phases = []
    for name, p in dataset.system.phases.items():
        assert p.size_classes is not None
        solid = (SolidBead(p.dried_diameter_um, p.dried_density_g_cm3)
                 if p.dried_diameter_um is not None and p.dried_density_g_cm3 is not None else None)
        extra = {} if p.dried_diameter_factor is None else {"dried_diameter_factor": p.dried_diameter_factor}
        phases.append(Phase(name=name, weight_fraction=p.weight_fraction, density_g_cm3=p.density_g_cm3,
                            size_classes=tuple(SizeClass(c.diameter_um, c.number_fraction) for c in p.size_classes),
                            slurry_diameter_factor=p.slurry_diameter_factor or 1.0, solid=solid, **extra))
    return Formulation(tuple(phases))


def slurry_system(dataset: Dataset, size: int | Fidelity) -> BeadSystem:
    """The slurry beads of the dataset's composition at ``size`` beads (a fidelity: its
    ``n_beads``)."""
    return build_slurry_system(formulation_of(dataset), size.n_beads if isinstance(size, Fidelity) else size)


def systems_for(dataset: Dataset, n_beads: int) -> tuple[BeadSystem, BeadSystem]:
    """(slurry, dried) bead systems of the dataset's composition at ``n_beads`` beads."""
    formulation = formulation_of(dataset)
    slurry = build_slurry_system(formulation, n_beads)
    return slurry, dried_system(slurry, formulation)


def column_system(dataset: Dataset, n_beads: int, column: str) -> BeadSystem:
    """The beads a Table S1 ``column`` acts on: ``slurry`` beads, or ``dried`` ones."""
    slurry, dried = systems_for(dataset, n_beads)
    return slurry if column == "slurry" else dried
