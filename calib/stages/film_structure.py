"""What the drying, calendering and characterisation stages share: a film state read into
a voxelised structure, the walls' contact law, the voxel-grid memory check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
from pydantic import Field, PositiveFloat

from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.forcefield import ForceFieldParams, WallContact
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import read_sphere_data
from sim_backends.microstructure import ElectrodeStructure, GridTooLarge, electrode_structure

from calib.core.errors import InputError
from calib.spec.study_file import SpecModel

if TYPE_CHECKING:
    from calib.stages.upstream_state import Lineage
    from calib.stages.base import StudyView

DRIED_STATE = "dried.data"
MAX_VOXEL_BYTES = 2 * 1024**3
"""Largest voxel grid the porosity analysis may allocate (one byte per voxel)."""


class WallSettings(SpecModel):
    """Contact law of the granular walls (current collector, lid, calendering plane).
    Unset fields take the trial's own Table S1 contact values, as the seed describes
    ("the same parameters described in Table S1")."""

    kn: PositiveFloat | None = None
    gamma_n: PositiveFloat | None = None
    xu: float | None = Field(default=None, ge=0)


def nanoporosity_of(loaded: StudyView) -> dict[str, float]:
    """Nanoporosity per phase: the dataset's, with the study's ``drying.cbd_nanoporosity``
    overriding CBD (seed: CBD counted as 50 % nanoporous)."""
    assert loaded.dataset.system is not None
    out = {name: p.nanoporosity for name, p in loaded.dataset.system.phases.items()}
    if loaded.spec.drying.cbd_nanoporosity is not None:
        out["CBD"] = loaded.spec.drying.cbd_nanoporosity
    return out


def check_film_state(loaded: "StudyView", lineage: "Lineage", beads: str) -> None:
    """The upstream state holds this dataset's ``beads`` (``slurry`` or ``dried``) at its bead
    count, and the porosity grid over it fits (``InputError`` otherwise)."""
    from calib.stages.upstream_state import check_composition, state_bead_count
    from calib.stages.bead_systems import systems_for

    state = Path(lineage.state_file)
    slurry, dried = systems_for(loaded.dataset, state_bead_count(state))
    check_composition(state, slurry if beads == "slurry" else dried,
                      f"dataset {loaded.spec.dataset} ({lineage.stage} state)")
    check_resolution(loaded, lineage)


def wall_of(settings: WallSettings, params: ForceFieldParams) -> WallContact:
    """The walls' contact law: the study's values where given, else the trial's Table S1."""
    own = WallContact.of(params)
    return WallContact(settings.kn if settings.kn is not None else own.kn,
                       settings.gamma_n if settings.gamma_n is not None else own.gamma_n,
                       settings.xu if settings.xu is not None else own.xu)


def analyse_state(path: Path, system: BeadSystem, collector_z: float | None, resolution_um: float,
                  nanoporosity: Mapping[str, float], workdir: Path) -> ElectrodeStructure:
    """Voxelised structure of a film state (``collector_z`` None: the box's ``zlo``). Solid
    radii are the beads' dry radii (AM and SE without their solvent shell). Raises
    ``SimulationFailed`` if a bead centre lies below the collector (escaped through it)."""
    data = read_sphere_data(path)
    cz = data.lo[2] if collector_z is None else collector_z
    phase = {t.type_id: t.phase for t in system.types}
    dry = {t.type_id: t.dry_diameter_um for t in system.types}
    below = int(np.sum(data.positions[:, 2] < cz))
    if below:
        raise SimulationFailed(f"{below} bead(s) escaped through the current collector", workdir)
    phases = [phase[int(t)] for t in data.types]
    solid_r = np.array([dry[int(t)] / 2.0 for t in data.types])
    try:
        return electrode_structure(data.positions, data.diameters / 2.0, solid_r, phases, data.lo, data.hi, cz,
                                   resolution_um, nanoporosity, max_bytes=MAX_VOXEL_BYTES)
    except GridTooLarge as exc:  # checked up front too (check_grid); a film may outgrow its start
        raise SimulationFailed(f"porosity grid: {exc}", workdir) from exc


def check_resolution(loaded: StudyView, lineage: Lineage) -> None:
    """Refuse a voxel resolution whose grid over the upstream box would need more memory than
    allowed (the film is never taller than the box it starts in, plus half for the lid)."""
    data = read_sphere_data(Path(lineage.state_file))
    check_grid(loaded, [h - lo for lo, h in zip(data.lo, data.hi)], "the state")


def check_grid(loaded: "StudyView", edges_um, what: str, resolution_um: float | None = None,
               field: str = "drying.resolution_um") -> None:
    """Refuse (``InputError`` on ``field``) a voxel grid of ``resolution_um`` (default: the
    study's ``drying.resolution_um``) over a box of ``edges_um``, plus half in height, that
    would exceed ``MAX_VOXEL_BYTES``."""
    res = loaded.spec.drying.resolution_um if resolution_um is None else resolution_um
    need = math.prod(max(1, round(e / res)) for e in edges_um) * 1.5
    if need > MAX_VOXEL_BYTES:
        e = edges_um
        raise InputError(str(loaded.path), field,
                         f"a {res:g} um grid over {what} ({e[0]:.0f} x {e[1]:.0f} x {e[2]:.0f} um) needs about "
                         f"{need / 1024**3:.1f} GiB, over the {MAX_VOXEL_BYTES / 1024**3:.0f} GiB allowed: "
                         "use a coarser resolution")


def structure_observables(s: ElectrodeStructure, prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}thickness_um": s.thickness_um, f"{prefix}porosity": s.porosity}
    out.update({f"{prefix}fraction_{k}": v for k, v in s.fractions.items()})
    return out


def study_or_fidelity(settings, name: str, fidelity_value: float | None) -> float:
    """A setting the study file gives explicitly wins; else the fidelity's override; else the
    setting's default (the public value)."""
    if name in settings.model_fields_set or fidelity_value is None:
        return getattr(settings, name)
    return fidelity_value


def profiles_dict(s: ElectrodeStructure) -> dict:
    """Porosity and phase profiles along z (JSON-able, um above the collector)."""
    return {"z_um": [round(float(z), 4) for z in s.z_um],
            "porosity": [round(float(v), 5) for v in s.porosity_profile],
            **{k: [round(float(v), 5) for v in arr] for k, arr in s.phase_profiles.items()}}


