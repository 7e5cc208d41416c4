"""Drying and calendering trials: from an upstream state to scored electrode observables.

Like ``stages.SlurryTrial`` a trial gives its LAMMPS runs (``first_runs``/``next_runs``)
and scores the finished ones (``score``). A drying trial is one run in the trial directory;
a calendering trial runs one degree per sub-directory ``calender_NN/``, all submitted
together, each reading the shared ``dried.data``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from objectives.dataset import Dataset
from objectives.errors import TargetError
from objectives.porosity import CalenderedErrorResult, calendered_porosity_error, dried_porosity_error
from sim_backends.lammps.beads import BeadSystem, build_slurry_system, dried_system
from sim_backends.lammps.calendering import (CALENDER_DECK, CALENDER_LOG, CALENDER_STATUS, CALENDERED_DATA,
                                             CalenderRunSpec, read_calender_status, write_calender_inputs)
from sim_backends.lammps.drying import (DRIED_DATA, DRYING_DECK, DRYING_LOG, DRYING_STATUS, LZ_FILE, UPSTREAM_DATA,
                                        DryingRunSpec, DryingStatus, drying_status, write_drying_inputs)
from sim_backends.lammps.forcefield import ForceFieldParams, WallContact
from sim_backends.lammps.outputs import SimulationFailed, checked_log, run_stats
from sim_backends.lammps.placement import read_sphere_data
from sim_backends.microstructure import ElectrodeStructure, GridTooLarge, electrode_structure

from .errors import InputError
from .fidelity import Fidelity
from .lineage import Lineage, check_composition, state_bead_count
from .plots import POROSITY_PLOT, PROFILE_PLOT, plot_porosity_vs_degree, plot_profiles
from .stages import Run, Score, formulation_of, named_errors, scalarised
from .study import LoadedStudy, StudySpec, WallSettings

DRIED_STATE = "dried.data"
MAX_VOXEL_BYTES = 2 * 1024**3
"""Largest voxel grid the porosity analysis may allocate (one byte per voxel)."""


def nanoporosity_of(loaded: LoadedStudy) -> dict[str, float]:
    """Nanoporosity per phase: the dataset's, with the study's ``drying.cbd_nanoporosity``
    overriding CBD (seed: CBD counted as 50 % nanoporous)."""
    assert loaded.dataset.system is not None
    out = {name: p.nanoporosity for name, p in loaded.dataset.system.phases.items()}
    if loaded.spec.drying.cbd_nanoporosity is not None:
        out["CBD"] = loaded.spec.drying.cbd_nanoporosity
    return out


def systems_for(dataset: Dataset, n_beads: int) -> tuple[BeadSystem, BeadSystem]:
    """(slurry, dried) bead systems of the dataset's composition at ``n_beads`` beads."""
    formulation = formulation_of(dataset)
    slurry = build_slurry_system(formulation, n_beads)
    return slurry, dried_system(slurry, formulation)


def check_upstream_state(loaded: LoadedStudy, lineage: Lineage) -> None:
    """The upstream state must hold this dataset's composition at its stage: slurry beads
    for drying, dried beads for calendering (``InputError`` otherwise)."""
    state = Path(lineage.state_file)
    slurry, dried = systems_for(loaded.dataset, state_bead_count(state))
    expected = slurry if loaded.spec.stage == "drying" else dried
    check_composition(state, expected, f"dataset {loaded.spec.dataset} ({lineage.stage} state)")


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


def check_resolution(loaded: LoadedStudy, lineage: Lineage) -> None:
    """Refuse a voxel resolution whose grid over the upstream box would need more memory than
    allowed (the film is never taller than the box it starts in, plus half for the lid)."""
    data = read_sphere_data(Path(lineage.state_file))
    check_grid(loaded, [h - lo for lo, h in zip(data.lo, data.hi)], "the state")


def check_grid(loaded: LoadedStudy, edges_um, what: str) -> None:
    """Refuse (``InputError`` on ``drying.resolution_um``) a voxel grid over a box of
    ``edges_um``, plus half in height, that would exceed ``MAX_VOXEL_BYTES``."""
    res = loaded.spec.drying.resolution_um
    need = math.prod(max(1, round(e / res)) for e in edges_um) * 1.5
    if need > MAX_VOXEL_BYTES:
        e = edges_um
        raise InputError(str(loaded.path), "drying.resolution_um",
                         f"a {res:g} um grid over {what} ({e[0]:.0f} x {e[1]:.0f} x {e[2]:.0f} um) needs about "
                         f"{need / 1024**3:.1f} GiB, over the {MAX_VOXEL_BYTES / 1024**3:.0f} GiB allowed: "
                         "use a coarser resolution")


def structure_observables(s: ElectrodeStructure, prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}thickness_um": s.thickness_um, f"{prefix}porosity": s.porosity}
    out.update({f"{prefix}fraction_{k}": v for k, v in s.fractions.items()})
    return out


def _study_or_fidelity(settings, name: str, fidelity_value: float | None) -> float:
    """A setting the study file gives explicitly wins; else the fidelity's override; else the
    setting's default (the public value)."""
    if name in settings.model_fields_set or fidelity_value is None:
        return getattr(settings, name)
    return fidelity_value


def status_observables(st: DryingStatus) -> dict[str, float]:
    """The periodic film's thickness change on drying and whether its height converged."""
    return {"thickness_change_rel": st.thickness_change_rel, "lz_converged": float(st.converged),
            "lz_change_rel_last_window": st.change_rel_last_window}


def profiles_dict(s: ElectrodeStructure) -> dict:
    """Porosity and phase profiles along z (JSON-able, um above the collector)."""
    return {"z_um": [round(float(z), 4) for z in s.z_um],
            "porosity": [round(float(v), 5) for v in s.porosity_profile],
            **{k: [round(float(v), 5) for v in arr] for k, arr in s.phase_profiles.items()}}


def _plots(make) -> tuple[Path, ...]:
    """Plots are a convenience: one that fails is left out, never a failed trial."""
    try:
        return tuple(make())
    except Exception:
        return ()


class DryingTrial:
    """One drying trial: evaporation + equilibration + mounting, then the film's porosity."""

    def __init__(self, workdir: Path, loaded: LoadedStudy, fidelity: Fidelity, params: ForceFieldParams,
                 seed: int, lineage: Lineage) -> None:
        self.workdir = Path(workdir)
        self.loaded, self.spec, self.fidelity, self.params, self.seed = loaded, loaded.spec, fidelity, params, seed
        self.lineage = lineage
        self.slurry_system, self.system = systems_for(loaded.dataset, state_bead_count(Path(lineage.state_file)))
        self.structure: ElectrodeStructure | None = None
        self.status: DryingStatus | None = None

    def run_spec(self) -> DryingRunSpec:
        d, f = self.spec.drying, self.fidelity
        return DryingRunSpec(wall=wall_of(d.wall, self.params), temperature_K=d.temperature_K,
                             pressure_atm=d.pressure_atm, pressure_start_atm=d.pressure_start_atm,
                             timestep_us=f.timestep_us,
                             minimize_max_iter=f.minimize_max_iter, equilibration_steps=f.drying_steps,
                             mount_steps=f.drying_mount_steps, thermo_every=f.thermo_every, pdamp_us=d.pdamp_us,
                             tdamp_us=d.tdamp_us, mount_damp_us=d.mount_damp_us, block_steps=f.block_steps,
                             sample_every=f.sample_every, window_blocks=f.window_steps // f.block_steps,
                             tolerance_rel=self.spec.slurry.density_tolerance_rel,
                             neighbor_skin_um=d.neighbor_skin_um, lj_style=self.spec.lj_style, seed=self.seed)

    def first_runs(self) -> list[Run]:
        shutil.copyfile(self.lineage.state_file, self.workdir / UPSTREAM_DATA)
        write_drying_inputs(self.workdir, self.slurry_system, self.system, self.params, self.run_spec())
        return [Run("drying", self.workdir, DRYING_DECK, DRYING_LOG,
                    (DRYING_DECK, DRYING_LOG, DRIED_DATA, DRYING_STATUS, LZ_FILE))]

    def next_runs(self) -> list[Run]:
        return []

    def measure(self) -> ElectrodeStructure:
        """The dried film's structure; raises ``SimulationFailed`` on unusable outputs."""
        checked_log(self.workdir, DRYING_LOG)
        state = self.workdir / DRIED_DATA
        if not state.exists():
            raise SimulationFailed("drying ended without writing its dried state", self.workdir)
        self.structure = analyse_state(state, self.system, None, self.spec.drying.resolution_um,
                                       nanoporosity_of(self.loaded), self.workdir)
        self.status = drying_status(self.workdir, self.run_spec())
        return self.structure

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        s = self.measure()
        errors: list = []
        if "dried_porosity" in self.spec.objective.targets:
            errors.append(dried_porosity_error(s.porosity, self.loaded.dataset.targets["dried_porosity"]))
        value = scalarised(named_errors(errors), self.spec, self.seed, None)
        obs = structure_observables(s)
        assert self.status is not None
        obs.update(status_observables(self.status))
        stats = run_stats((self.workdir / DRYING_LOG).read_text(errors="replace"))
        obs["atom_steps_per_s"] = stats.atom_steps_per_s
        plots = _plots(lambda: (plot_profiles(self.workdir / PROFILE_PLOT, {"dried": s}),))
        return Score(tuple(errors), value, obs, True,
                     summary=f"dried thickness {s.thickness_um:.1f} um, porosity {100 * s.porosity:.1f} %",
                     details={"profiles": profiles_dict(s), "lineage": self.lineage.as_dict()}, plots=plots)


@dataclass(frozen=True)
class DegreeResult:
    """One calendering degree: thickness before, while held and at the end (after release,
    if any), um; porosity and phase fractions at the end; the plane's held height above the
    collector (um: (1 - degree) x T0; the held top exceeds it by the beads' overlap with it)."""

    degree_pct: float
    thickness_before_um: float
    thickness_held_um: float
    thickness_um: float
    porosity: float
    fractions: dict[str, float]
    plane_um: float = math.nan

    def as_dict(self) -> dict:
        return asdict(self)


class CalenderingTrial:
    """One calendering trial: every degree from the same dried state, run concurrently."""

    def __init__(self, workdir: Path, loaded: LoadedStudy, fidelity: Fidelity, params: ForceFieldParams,
                 seed: int, lineage: Lineage, degrees_pct: tuple[float, ...] | None = None) -> None:
        self.workdir = Path(workdir)
        self.loaded, self.spec, self.fidelity, self.params, self.seed = loaded, loaded.spec, fidelity, params, seed
        self.lineage = lineage
        self.degrees = tuple(degrees_pct if degrees_pct is not None else loaded.calender_degrees_pct())
        _, self.system = systems_for(loaded.dataset, state_bead_count(Path(lineage.state_file)))
        self.results: list[DegreeResult] = []
        self.structures: dict[float, ElectrodeStructure] = {}

    def degree_dir(self, i: int) -> Path:
        return self.workdir / f"calender_{i:02d}"

    def run_spec(self, degree: float) -> CalenderRunSpec:
        c, f = self.spec.calendering, self.fidelity
        return CalenderRunSpec(degree_pct=degree, wall=wall_of(c.wall, self.params),
                               speed_um_per_us=_study_or_fidelity(c, "speed_um_per_us", f.calender_speed_um_per_us),
                               hold_steps=f.calender_hold_steps, release=c.release,
                               release_steps=f.calender_release_steps, temperature_K=c.temperature_K,
                               tdamp_us=c.tdamp_us,
                               timestep_us=_study_or_fidelity(c, "timestep_us", f.calender_timestep_us),
                               thermo_every=f.thermo_every, neighbor_skin_um=c.neighbor_skin_um,
                               lj_style=self.spec.lj_style, seed=self.seed, state_file=f"../{DRIED_STATE}")

    def first_runs(self) -> list[Run]:
        shutil.copyfile(self.lineage.state_file, self.workdir / DRIED_STATE)
        runs = []
        for i, deg in enumerate(self.degrees):
            d = self.degree_dir(i)
            d.mkdir(exist_ok=True)
            write_calender_inputs(d, self.system, self.params, self.run_spec(deg))
            runs.append(Run(f"calender_{i:02d}", d, CALENDER_DECK, CALENDER_LOG,
                            (CALENDER_DECK, CALENDER_LOG, CALENDER_STATUS),
                            label=f"calendering at {deg:g} % ({d.name})"))
        return runs

    def next_runs(self) -> list[Run]:
        return []

    def measure(self, skip_failed: bool = False) -> list[DegreeResult]:
        """Per-degree results; raises ``SimulationFailed`` (naming the degree) on failure, or
        with ``skip_failed`` leaves that degree out and records why in ``failed``."""
        out = []
        self.failed: dict[float, str] = {}
        for i, deg in enumerate(self.degrees):
            d = self.degree_dir(i)
            try:
                checked_log(d, CALENDER_LOG)
                st = read_calender_status(d)
                state = d / CALENDERED_DATA
                if not state.exists():
                    raise SimulationFailed("calendering ended without writing its state", d)
                s = analyse_state(state, self.system, None, self.spec.drying.resolution_um,
                                  nanoporosity_of(self.loaded), d)
            except SimulationFailed as exc:
                if skip_failed:
                    self.failed[deg] = exc.reason
                    continue
                raise SimulationFailed(f"calendering at {deg:g} %: {exc.reason}", self.workdir) from exc
            self.structures[deg] = s
            out.append(DegreeResult(deg, st.t0_um, st.held_um, s.thickness_um, s.porosity, s.fractions, st.piston_um))
        self.results = out
        return out

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        res = self.measure()
        errors: list[TargetError | CalenderedErrorResult] = []
        cp = self.loaded.dataset.calendered_porosity
        if "calendered_porosity" in self.spec.objective.targets:
            assert cp is not None
            errors.append(calendered_porosity_error([r.degree_pct for r in res], [r.porosity for r in res], cp))
        value = scalarised(named_errors(errors), self.spec, self.seed, None)
        obs: dict[str, float] = {}
        for r in res:
            key = f"calender/{r.degree_pct:g}_pct"
            obs.update({f"{key}/thickness_before_um": r.thickness_before_um,
                        f"{key}/thickness_held_um": r.thickness_held_um,
                        f"{key}/thickness_um": r.thickness_um, f"{key}/porosity": r.porosity})
        measured = [(p.degree_pct, p.porosity) for p in cp.points] if cp is not None else []
        plots = _plots(lambda: (
            plot_porosity_vs_degree(self.workdir / POROSITY_PLOT, [r.degree_pct for r in res],
                                    [r.porosity for r in res], measured),
            plot_profiles(self.workdir / PROFILE_PLOT, {f"{d:g} %": st for d, st in sorted(self.structures.items())})))
        return Score(tuple(errors), value, obs, True,
                     summary="porosity " + ", ".join(f"{r.degree_pct:g}%: {100 * r.porosity:.1f}" for r in res) + " %",
                     details={"calendering": [r.as_dict() for r in res], "lineage": self.lineage.as_dict()},
                     plots=plots)
