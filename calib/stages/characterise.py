"""The characterisation stage (seed Sec. 2.4, 3.3-3.4, Fig. 3d, Fig. 4, Fig. S4): the
dried film is calendered at each degree (as the calendering stage does), then every
calendered state is characterised by a job of its own (``sim_backends.characterise``):
effective electronic conductivity, SE effective diffusivity and geometric tortuosity, SE
and pore networks, and the ratio of conductivity to tortuosity (seed Fig. 4c: normalised
by its largest value). The dried film itself is the 0 % degree (the plane lowered onto its
top and held there).

Settings: ``characterise`` (``CharacteriseSettings``), with ``calendering`` (degrees,
walls, speed) and ``drying`` (CBD nanoporosity). Targets: ``calendered_porosity``,
``calendered_conductivity`` and ``calendered_se_tortuosity`` (dataset series against
degree, scored like the calendered porosity).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from objectives.porosity import degree_error
from sim_backends.characterise import LOG_FILE, RESULT_FILE, SPEC_FILE, CharacteriseSpec
from sim_backends.jsonsafe import json_safe
from sim_backends.lammps.calendering import CALENDERED_DATA
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import read_sphere_data
from sim_backends.transport import SOR_ITER_LIMIT

from calib.stages.errorbars import combine_degrees, infinite_tau
from calib.core.errors import InputError
from calib.stages.upstream_state import state_bead_count
from calib.core.plots import figure
from calib.stages.base import Run, Score, StageBase, TrialContext, guarded_plots, named_errors, scalarised
from calib.stages.calendering import STAGE as CALENDERING
from calib.stages.calendering import CalenderingSettings, CalenderingTrial, check_measured_degrees
from calib.stages.drying import DryingSettings
from calib.stages.film_structure import MAX_VOXEL_BYTES, check_grid, nanoporosity_of
from calib.stages.registry import register
from calib.stages.bead_systems import systems_for
from calib.stages.verdict import ConvergencePolicy, Verdict, verdict_of

if TYPE_CHECKING:
    from calib.stages.upstream_state import Lineage
    from calib.stages.base import StudyView

PLOT = "characterisation_vs_degree.png"
MIN_VOXELS_PER_BEAD = 3
"""Fewest voxels across the smallest solid bead a resolution must give."""

SERIES_TARGETS = ("calendered_conductivity", "calendered_se_tortuosity")
"""Dataset series this stage scores besides the calendered porosity."""


class CharacteriseSettings(ConvergencePolicy):
    """How a film is characterised (seed Sec. 2.4).

    resolution_um: voxel edge (um); at least 3 voxels across the smallest solid bead.
    sigma_am_s_m, sigma_cbd_s_m: electronic conductivities of the active material and the
    carbon-binder domain (seed: 0.005 and 15.93 S/m; SE and pores insulate).
    surface_solid_fraction_rel: the film's rough top is cut where a
    voxel layer's solid fraction falls below this fraction of the median layer's
    (docs/stages/characterise.md). pore_network: extract the pore network (PoreSpy
    SNOW2; a few seconds at dev size). solver_iter_limit: most iterations of the SE
    diffusion solve (TauFactor, which checks every 100). solver_threads: CPU threads of each
    characterisation's solvers (``sim_backends.threads``; 1: the degrees run at once, and the
    libraries' default of one thread per core was 8.5x slower on a busy machine). overlap: who gets
    a voxel where beads overlap (``microstructure.voxelise``: ``rank``, ``power`` = split at the
    radical plane (the default: a symmetric split of each lens, as GeoDict's "Resolve Overlap"),
    ``rank-power``; docs/stages/characterise.md#overlaps). conductivity_method: ``network``
    (the default: the beads' contact network, cut by the same radical planes, no voxels;
    ``sim_backends.particle_network``) or ``voxel`` (the image's finite-volume solve, which
    is always run as the cross-check). touch_gap_um, touch_radius_rel: the network's contact
    rule for beads that touch without overlapping: within ``touch_gap_um`` um they join by a
    neck of ``touch_radius_rel`` x the smaller radius; the defaults (0, 0) join only beads
    that overlap, the model's own (Hertzian) contact, and the limit of the voxel solve as the
    voxel shrinks (docs/stages/characterise.md#contact-rule). se_method: the SE's D_eff/D_0 (and
    so tau_g) from ``network`` (the default: the same contact network with the SE conducting and
    the same contact rule; docs/stages/characterise.md#se-transport) or ``voxel`` (the image's
    diffusion solve, TauFactor, with a two-grid resolution error; always run as the
    cross-check). not_converged, penalty: what a
    trial becomes whose transport solve stopped unconverged (``calib.stages.verdict``; the
    calendering's relaxation follows ``calendering``'s policy).
    """

    resolution_um: PositiveFloat = 0.5
    sigma_am_s_m: PositiveFloat = 0.005
    sigma_cbd_s_m: PositiveFloat = 15.93
    surface_solid_fraction_rel: float = Field(default=0.5, gt=0, lt=1)
    pore_network: bool = True
    solver_iter_limit: PositiveInt = SOR_ITER_LIMIT
    solver_threads: PositiveInt = 1
    overlap: Literal["rank", "power", "rank-power"] = "power"
    conductivity_method: Literal["network", "voxel"] = "network"
    touch_gap_um: float = Field(default=0.0, ge=0)
    touch_radius_rel: float = Field(default=0.0, ge=0, lt=1)
    se_method: Literal["network", "voxel"] = "network"
    NOT_IDENTITY: ClassVar[frozenset[str]] = frozenset({"solver_threads"})  # execution, not physics
    # the values that reproduce the studies stored before each field existed (rank rule, voxel solves)
    IDENTITY_OMIT_DEFAULTS: ClassVar[dict[str, Any]] = {"overlap": "rank", "conductivity_method": "voxel",
                                                        "touch_gap_um": 0.0, "touch_radius_rel": 0.0,
                                                        "se_method": "voxel"}

    @model_validator(mode="after")
    def _touch_rule(self) -> "CharacteriseSettings":
        if (self.touch_gap_um > 0) != (self.touch_radius_rel > 0):
            raise ValueError("touch_gap_um and touch_radius_rel go together: both 0 (overlapping beads only) "
                             "or both > 0 (beads within the gap join by a neck of that relative radius)")
        return self


def transport_verdict(rows: Sequence[Mapping[str, Any]]) -> Verdict:
    """Every characterised state's conductivity and SE diffusion solves converged."""
    def why(row, what: str, label: str) -> str:
        if row.get(f"{what}_method") == "network":
            return f"the {label} network solve at {row['degree_pct']:g} % stopped unconverged"
        return (f"the {label} solve at {row['degree_pct']:g} % stopped unconverged after "
                f"{row[f'{what}_iterations']} iterations")

    return verdict_of(*((row[f"{what}_converged"], why(row, what, label))
                        for row in rows for what, label in (("conductivity", "conductivity"),
                                                            ("se", "SE diffusion"))))


class CharacteriseTrial:
    """Calendering at every degree (``CalenderingTrial``), then one characterisation job per
    calendered state, all submitted together."""

    def __init__(self, ctx: TrialContext) -> None:
        assert ctx.lineage is not None
        self.ctx, self.workdir, self.loaded, self.spec = ctx, Path(ctx.workdir), ctx.loaded, ctx.loaded.spec
        self.settings: CharacteriseSettings = self.spec.characterise
        _, self.system = systems_for(ctx.loaded.dataset, state_bead_count(Path(ctx.lineage.state_file)))
        self.calendering = CalenderingTrial(ctx.workdir, ctx.loaded, ctx.fidelity, ctx.params, ctx.seed, ctx.lineage,
                                            keep_going=bool(ctx.options.get("keep_going")))
        self.states: list[tuple[float, Path]] = []
        """(degree %, state file) of each characterisation."""
        self.phase = 0

    def first_runs(self) -> list[Run]:
        self.phase = 1
        return self.calendering.first_runs()

    def next_runs(self) -> list[Run]:
        if self.phase != 1:
            return []
        results = self.calendering.measure(skip_failed=self.calendering.keep_going)
        if not results:
            raise SimulationFailed("every degree failed: " + "; ".join(
                f"{d:g} %: {r}" for d, r in self.calendering.failed.items()), self.workdir)
        done = {r.degree_pct for r in results}
        self.states = [(deg, self.calendering.degree_dir(i) / CALENDERED_DATA)
                       for i, deg in enumerate(self.calendering.degrees) if deg in done]
        self.phase = 2
        return self._characterisation_runs()

    def job_dir(self, k: int) -> Path:
        return self.workdir / f"characterise_{k:02d}"

    def job_spec(self, state: Path, label: str) -> CharacteriseSpec:
        s = self.settings
        return CharacteriseSpec(
            state_file=str(state.resolve()), phase_of_type={str(t.type_id): t.phase for t in self.system.types},
            solid_radius_um_of_type={str(t.type_id): t.dry_diameter_um / 2.0 for t in self.system.types},
            nanoporosity=nanoporosity_of(self.loaded), resolution_um=s.resolution_um,
            conductivity_s_m={"AM": s.sigma_am_s_m, "CBD": s.sigma_cbd_s_m},
            surface_solid_fraction_rel=s.surface_solid_fraction_rel, pore_network=s.pore_network,
            max_bytes=MAX_VOXEL_BYTES, label=label, iter_limit=s.solver_iter_limit, threads=s.solver_threads,
            overlap=s.overlap, conductivity_method=s.conductivity_method, touch_gap_um=s.touch_gap_um,
            touch_radius_rel=s.touch_radius_rel, se_method=s.se_method)

    def _characterisation_runs(self) -> list[Run]:
        runs = []
        for k, (deg, state) in enumerate(self.states):
            d = self.job_dir(k)
            d.mkdir(exist_ok=True)
            what = f"{deg:g} %"
            (d / SPEC_FILE).write_text(self.job_spec(state, what).to_json())
            runs.append(Run(d.name, d, SPEC_FILE, LOG_FILE, (SPEC_FILE, LOG_FILE, RESULT_FILE),
                            label=f"characterisation at {what} ({d.name})",
                            argv=(sys.executable, "-m", "sim_backends.characterise", SPEC_FILE)))
        return runs

    def results(self) -> list[dict]:
        """One row per characterised state: degree, transport, networks (JSON-able)."""
        rows = []
        for k, (deg, _) in enumerate(self.states):
            path = self.job_dir(k) / RESULT_FILE
            if not path.is_file():
                raise SimulationFailed(f"characterisation at {deg:g} % wrote no {RESULT_FILE}", self.job_dir(k))
            r = json.loads(path.read_text())
            tau = r["se_tortuosity"]  # None: the SE does not join the two faces
            rows.append({
                "degree_pct": deg, "conductivity_s_m": r["conductivity_s_m"], "se_tortuosity": tau,
                "se_diffusivity_rel": r["se_diffusivity_rel"],
                "se_connected_fraction": r["se_network"]["connected_fraction"],
                "se_largest_cluster_fraction": r["se_network"]["largest_cluster_fraction"],
                "se_volume_fraction": r["fractions"].get("SE", 0.0),
                "analysed_thickness_um": r["analysed_thickness_um"], "analysed_porosity": r["porosity"],
                "conductivity_over_tortuosity_s_m": (r["conductivity_s_m"] / tau if tau else 0.0),
                "conductivity_method": r["conductivity_method"],
                "conductivity_voxel_s_m": r["conductivity_voxel_s_m"],
                "conductivity_iterations": r["conductivity_solver"]["iterations"],
                "conductivity_converged": r["conductivity_converged"],
                "se_method": r.get("se_method", "voxel"), "se_diffusivity_voxel_rel": r.get("se_diffusivity_voxel_rel"),
                "se_iterations": r["se_solver"]["iterations"],
                "se_converged": r.get("se_converged", r["se_solver"]["converged"]),
                # resolution errors (calib.stages.errorbars): the networks have no voxels; a voxel SE's from a coarser grid
                # (the networks' model errors against converged voxel solves are measured in the bench, not per film)
                "conductivity_s_m_resolution_error": None,
                "se_diffusivity_rel_resolution_error": (r.get("se_resolution_error") or {}).get("d_rel"),
                "se_tortuosity_resolution_error": (r.get("se_resolution_error") or {}).get("tau"),
                "wall_s": r["wall_s"],
                **{f"pore_network_{k2}": json_safe(v) for k2, v in (r.get("pore_network") or {}).items()
                   if not isinstance(v, list)}})
        # one placement: each value's error is its resolution error; the ratio normalised, with its error
        return combine_degrees([rows])

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        rows = self.results()
        cal = self.calendering.score(wall_s)  # reuses the results measured before the jobs ran
        errors: list = list(cal.errors)  # the calendered porosity, if scored
        targets, data = self.spec.objective.targets, self.loaded.dataset
        for name, column in (("calendered_conductivity", "conductivity_s_m"),
                             ("calendered_se_tortuosity", "se_tortuosity")):
            if name in targets:
                series = getattr(data, name)
                cut = [r["degree_pct"] for r in rows if r[column] is None]
                if cut:
                    raise SimulationFailed(f"the SE does not join the collector and the film top at "
                                           f"{', '.join(f'{d:g}' for d in cut)} %: its tortuosity is infinite, so "
                                           f"{name} cannot be scored", self.workdir)
                errors.append(degree_error(name, [r["degree_pct"] for r in rows], [r[column] for r in rows],
                                           [(p.degree_pct, p.value, p.uncertainty) for p in series.points]))
        verdict = transport_verdict(rows)
        penalty, fail_reason = verdict.outcome(self.settings)
        penalty += cal.penalty
        fail_reason = cal.fail_reason or fail_reason
        value = scalarised(named_errors(errors), self.spec, self.ctx.seed, None) + penalty
        obs = dict(cal.observables)
        for r in rows:
            key = f"characterise/{r['degree_pct']:g}_pct"
            obs.update({f"{key}/{k}": float(v) for k, v in r.items()
                        if k != "degree_pct" and isinstance(v, (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v)})
        plots = cal.plots + guarded_plots(lambda: (plot_characterisation(self.workdir / PLOT, rows),))
        lines = tuple(f"calendered {r['degree_pct']:g} %: conductivity {r['conductivity_s_m']:.3g} S/m, SE tortuosity {_tau(r)}, "
                      f"SE D_eff/D_0 {_g(r['se_diffusivity_rel'])}, SE voxels connected "
                      f"{100 * r['se_connected_fraction']:.1f} %, conductivity/tortuosity "
                      f"{r['ratio_normalised']:.2f} of its largest" for r in rows)
        return Score(tuple(errors), value, obs, cal.equilibrated and verdict.converged, penalty, fail_reason,
                     summary="sigma " + ", ".join(_short(r) for r in rows)
                     + ("" if verdict.converged else " (a transport solve not converged)"),
                     attrs={"characterisation": rows, **cal.attrs, "transport_convergence": verdict.note()},
                     report={"characterisation": rows, **cal.report, "transport_convergence": verdict.note()},
                     lines=cal.lines + lines + (f"transport: {verdict.note()}",), plots=plots)

    def partial_observables(self) -> dict[str, float]:
        return {}

    @property
    def state_file(self) -> Path | None:
        return None


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _tau(r: dict) -> str:
    return infinite_tau(r) if r["se_tortuosity"] is None else f"{r['se_tortuosity']:.3g}"


def _short(r: dict) -> str:
    return f"{r['degree_pct']:g}%: {r['conductivity_s_m']:.3g} S/m, tau {_tau(r)}"


def plot_characterisation(path: Path, rows: list[dict]) -> Path:
    """Seed Fig. 4 against calendering degree: (a) conductivity, (b) SE tortuosity and
    D_eff/D_0, (c) conductivity / tortuosity normalised by its largest value, (d) the SE's
    connected fraction."""
    d = [r["degree_pct"] for r in rows]

    def val(key: str, scale: float = 1.0) -> list[float]:
        return [math.nan if r.get(key) is None else scale * r[key] for r in rows]

    def err(key: str, scale: float = 1.0) -> list[list[float]]:
        """The combined error, else the resolution error; a bar stops at 0 (no value is negative)."""
        up = [scale * (r.get(f"{key}_error", r.get(f"{key}_resolution_error")) or 0.0) for r in rows]
        down = [min(e, v) if math.isfinite(v) else e for e, v in zip(up, val(key, scale))]
        return [down, up]

    n = max((int(r.get("placements", 1)) for r in rows), default=1)
    voxel_se = any(r.get("se_method", "voxel") == "voxel" for r in rows)
    if n > 1:
        title = f"bars: standard error over {n} placements" + (" with the SE's resolution error" if voxel_se else "")
    else:
        title = ("bars: the SE's resolution error only (one placement)" if voxel_se
                 else "no bars: one placement (the spread is not measured)")
    with figure(path, 1, 4, figsize=(13.0, 3.4), dpi=110, suptitle=title) as (fig, axes):
        axes[0].errorbar(d, val("conductivity_s_m"), yerr=err("conductivity_s_m"), fmt="o-", capsize=3)
        axes[0].set_ylabel("electronic conductivity (S/m)")
        axes[1].errorbar(d, val("se_tortuosity"), yerr=err("se_tortuosity"), fmt="o-", color="tab:blue", capsize=3)
        axes[1].set_ylabel("SE geometric tortuosity", color="tab:blue")
        twin = axes[1].twinx()
        twin.errorbar(d, val("se_diffusivity_rel"), yerr=err("se_diffusivity_rel"), fmt="s--", color="tab:red",
                      capsize=3)
        twin.set_ylabel("SE D_eff / D_0", color="tab:red")
        axes[2].errorbar(d, val("ratio_normalised"), yerr=err("ratio_normalised"), fmt="o-", color="black",
                         capsize=3)
        axes[2].set_ylabel("conductivity / tortuosity (normalised)")
        axes[3].plot(d, [100 * r["se_connected_fraction"] for r in rows], "o-", color="tab:green")
        axes[3].set_ylabel("SE voxels connected to both faces (%)")
        for ax in axes:
            ax.set_xlabel("calendering degree (%)")
    return Path(path)


class CharacteriseStage(StageBase):
    name = "characterise"
    upstream = "drying"
    targets = ("calendered_porosity",) + SERIES_TARGETS
    sections = {"drying": DryingSettings, "calendering": CalenderingSettings, "characterise": CharacteriseSettings}
    column = "dried"
    column_title = "dried electrode"
    pipeline_key = "degrees"

    fidelity_reads = CALENDERING.fidelity_reads

    def identity_extra(self, loaded: "StudyView") -> dict:
        return CALENDERING.identity_extra(loaded)

    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView":
        """Refuse, before anything is written: no SE phase; a resolution with fewer than 3
        voxels across the smallest solid bead; scored series the dataset lacks or whose
        degrees are not simulated."""
        spec, data, where = loaded.spec, loaded.dataset, str(loaded.path)
        assert data.system is not None
        if "SE" not in data.system.phases:
            raise InputError(str(loaded.dataset_path), "system.phases",
                             "no SE phase: the characterisation measures the solid electrolyte's network")
        _, dried = systems_for(data, spec.fidelity_spec().n_beads)
        smallest = min(t.dry_diameter_um for t in dried.types)
        res = spec.characterise.resolution_um
        if smallest / res < MIN_VOXELS_PER_BEAD:
            raise InputError(where, "characterise.resolution_um",
                             f"{res:g} um gives {smallest / res:.1f} voxels across the smallest solid bead "
                             f"({smallest:g} um); at least {MIN_VOXELS_PER_BEAD} are needed (use <= "
                             f"{smallest / MIN_VOXELS_PER_BEAD:.3g} um)")
        CALENDERING.prepare(loaded, options)
        for name in SERIES_TARGETS:
            if name in spec.objective.targets:
                series = getattr(data, name)
                if series is None:
                    raise InputError(where, f"objective.targets.{name}", f"dataset {spec.dataset} has no {name} points")
                check_measured_degrees(loaded, name, [p.degree_pct for p in series.points])
        return loaded

    def check_upstream(self, loaded: "StudyView", lineage: "Lineage") -> None:
        """The upstream state holds this dataset's dried beads (with SE beads); the voxel grid fits."""
        CALENDERING.check_upstream(loaded, lineage)
        state = Path(lineage.state_file)
        _, dried = systems_for(loaded.dataset, state_bead_count(state))
        if dried.phase_count("SE") == 0:
            raise InputError(str(state), "Atoms", "no SE bead: the image would have no SE voxel")
        data = read_sphere_data(state)
        self.check_box(loaded, [h - lo for lo, h in zip(data.lo, data.hi)], "the state")

    def check_box(self, loaded: "StudyView", edges_um, what: str) -> None:
        CALENDERING.check_box(loaded, edges_um, what)
        check_grid(loaded, edges_um, what, resolution_um=loaded.spec.characterise.resolution_um,
                   field="characterise.resolution_um")

    def make_trial(self, ctx: TrialContext) -> CharacteriseTrial:
        return CharacteriseTrial(ctx)

    def pipeline_record(self, trial: CharacteriseTrial, score: Score) -> list[dict]:
        """One row per degree: the calendering row with the characterisation's columns."""
        cal = {r["degree_pct"]: r for r in CALENDERING.pipeline_record(trial.calendering, score)}
        return [{**cal[r["degree_pct"]], **r} for r in trial.results()]


STAGE = register(CharacteriseStage())
