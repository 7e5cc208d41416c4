"""Stage glue: from a study's dataset and fidelity to bead systems, trial inputs and scored
observables. The one place where ``calib`` joins ``objectives`` and ``sim_backends``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from objectives.dataset import Dataset
from objectives.errors import TargetError, density_error
from objectives.scalarise import scalarise
from sim_backends.lammps.beads import BeadSystem, Formulation, Phase, SizeClass, build_slurry_system
from sim_backends.lammps.forcefield import ForceFieldParams
from sim_backends.lammps.placement import paper_scaled_box
from sim_backends.lammps.slurry import (DECK_FILE, FINAL_DATA, LOG_FILE, SlurryObservables, SlurryRunSpec,
                                        read_slurry_observables, write_slurry_inputs)

from .fidelity import Fidelity
from .study import StudySpec


def formulation_of(dataset: Dataset) -> Formulation:
    """The dataset's system as a ``sim_backends`` formulation (size classes required)."""
    assert dataset.system is not None
    phases = []
    for name, p in dataset.system.phases.items():
        assert p.size_classes is not None
        phases.append(Phase(name=name, weight_fraction=p.weight_fraction, density_g_cm3=p.density_g_cm3,
                            size_classes=tuple(SizeClass(c.diameter_um, c.number_fraction) for c in p.size_classes),
                            slurry_diameter_factor=p.slurry_diameter_factor))
    return Formulation(tuple(phases))


def slurry_system(dataset: Dataset, fidelity: Fidelity) -> BeadSystem:
    return build_slurry_system(formulation_of(dataset), fidelity.n_beads)


def slurry_run_spec(spec: StudySpec, fidelity: Fidelity, seed: int) -> SlurryRunSpec:
    s = spec.slurry
    return SlurryRunSpec(
        temperature_K=s.temperature_K, pressure_atm=s.pressure_atm, timestep_us=fidelity.timestep_us,
        minimize_max_iter=fidelity.minimize_max_iter, equilibration_steps=fidelity.equilibration_steps,
        averaging_steps=fidelity.averaging_steps, block_steps=fidelity.block_steps,
        sample_every=fidelity.sample_every, thermo_every=fidelity.thermo_every, pdamp_us=s.pdamp_us,
        langevin_damp_us=s.langevin_damp_us, neighbor_skin_um=s.neighbor_skin_um, lj_style=spec.lj_style,
        seed=seed,
    )


@dataclass(frozen=True)
class StageInputs:
    """What a stage wrote into a trial directory: the deck to run and files worth keeping."""

    deck: str
    log: str
    artifacts: tuple[str, ...]


def prepare_slurry_trial(workdir: Path, spec: StudySpec, dataset: Dataset, fidelity: Fidelity,
                         params: ForceFieldParams, seed: int) -> StageInputs:
    system = slurry_system(dataset, fidelity)
    box = tuple(x * fidelity.initial_box_scale for x in paper_scaled_box(system.n_beads))
    write_slurry_inputs(workdir, system, params, slurry_run_spec(spec, fidelity, seed), box)  # type: ignore[arg-type]
    return StageInputs(deck=DECK_FILE, log=LOG_FILE, artifacts=(DECK_FILE, LOG_FILE, FINAL_DATA))


@dataclass(frozen=True)
class Score:
    """A scored trial: target errors, the scalarised value and the raw observables."""

    errors: tuple[TargetError, ...]
    value: float
    observables: dict[str, float]
    equilibrated: bool


def score_slurry(obs: SlurryObservables, spec: StudySpec, dataset: Dataset) -> Score:
    errors = (density_error(obs.density_g_cm3, dataset.targets["slurry_density"]),)
    value = scalarise(errors, spec.objective.scalarisation, spec.objective.targets)
    observables = {k: float(v) for k, v in asdict(obs).items()}
    observables["atom_steps_per_s"] = obs.atom_steps_per_s
    eq = obs.equilibrated(spec.slurry.max_density_drift_rel)
    return Score(errors, value, observables, eq)


def read_slurry(workdir: Path) -> SlurryObservables:
    return read_slurry_observables(workdir)
