"""The slurry stage (seed Sec. 2.1, 3.1-3.2): NPT density of the slurry, then, when the
study scores the viscosity curve, one SLLOD shear run per rate from the slurry's state.

Settings: ``slurry`` (``SlurrySettings``) and ``viscosity`` (``ViscositySettings``).
Targets: ``slurry_density`` and ``viscosity_curve``.

This module: the trial (``SlurryTrial``) and the stage's registration (``SlurryStage``). The
sections and protocol checks are in ``calib.stages.slurry_settings``, the LAMMPS run specs in
``calib.stages.slurry_runs``, how replicates and shear rates combine in
``calib.stages.slurry_results``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from objectives.errors import TargetError, density_error
from objectives.rheology import CurveError, CurveErrorResult, ViscosityCurve, curve_error, load_rheometer_csv
from sim_backends.lammps.forcefield import ForceFieldParams
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import paper_scaled_box
from sim_backends.lammps.shear import (SHEAR_BLOCKS, SHEAR_DECK, SHEAR_LOG, ShearRunSpec, shear_result,
                                       write_shear_inputs)
from sim_backends.lammps.slurry import (DATA_FILE, DECK_FILE, DENSITY_FILE, DENSITY_STATUS, FINAL_DATA, FINAL_RESTART,
                                        LOG_FILE, SlurryObservables, density_trajectory, read_slurry_observables,
                                        write_slurry_inputs)
from sim_backends.lammps.units import micro_viscosity_to_pa_s

from calib.core.errors import InputError
from calib.spec.fidelity import Fidelity
from calib.core.plots import CURVE_PLOT, DENSITY_PLOT, plot_density_trajectory, plot_viscosity_curve
from calib.stages.base import (COMMON_FIDELITY_FIELDS, Run, Score, StageBase, TrialContext, guarded_plots, named_errors,
                   require_dataset_targets, scalarised)
from calib.stages.registry import register
from calib.stages.bead_systems import slurry_system
from calib.stages.slurry_results import (RateResult, combine_replicates, density_convergence_note,
                                         density_not_converged, describe, end_forecast_exponent, rate_label)
from calib.stages.slurry_runs import RatePlan, band_threshold, rate_plans, shear_run_spec, slurry_run_spec
from calib.stages.slurry_settings import (SEED_PROTOCOL_FIDELITY_FIELDS, SHEAR_FIDELITY_FIELDS, SLURRY_FIDELITY_FIELDS,
                                          SlurrySettings, ViscositySettings, check_protocol, neighbor_style,
                                          protocol_label, protocol_problem, simulated_rates_per_s, uses_viscosity)

if TYPE_CHECKING:
    from calib.spec.study_file import StudyBase
    from calib.stages.base import StudyView


class SlurryTrial:
    """The runs of one slurry trial and their scoring: the NPT slurry run, then (when the
    study scores the viscosity curve) one SLLOD run per shear rate, all starting from the
    slurry's ``final.restart`` and submitted together."""

    def __init__(self, workdir: Path, loaded: "StudyView", fidelity: Fidelity, params: ForceFieldParams,
                 seed: int, paired: Fidelity | None = None, band_stop: bool = False) -> None:
        self.workdir = Path(workdir)
        self.loaded = loaded
        self.spec = loaded.spec
        self.fidelity = fidelity
        self.params = params
        self.seed = seed
        self.system = slurry_system(loaded.dataset, fidelity)
        self.plans = (rate_plans(simulated_rates_per_s(loaded), self.spec.viscosity, fidelity)
                      if uses_viscosity(self.spec) else [])
        self.run_spec = slurry_run_spec(self.spec, fidelity, seed, neighbor_style(fidelity, params, self.system))
        if band_stop:
            self.run_spec = replace(self.run_spec, halt_above_g_cm3=band_threshold(loaded, fidelity))
        self.slurry: SlurryObservables | None = None
        """The trial's density: replicate 0's, or the replicates' mean (``combine_replicates``)."""
        self.replicates: list[SlurryObservables] = []
        self.shear_specs: dict[int, ShearRunSpec] = {}
        self.rates: list[RateResult] = []
        """The viscosity per shear rate, once scored."""
        self.phase = 0
        self.paired = (paired if paired is not None and self.spec.slurry.protocol == "seed"
                       and paired.compression != fidelity.compression else None)
        """A rung run on the same placements as this trial's replicates (a confirmation's
        pairing: the rung's density next to the full protocol's, placement by placement)."""
        self.paired_spec = (slurry_run_spec(self.spec, self.paired, seed, neighbor_style(self.paired, params,
                                                                                         self.system))
                            if self.paired is not None else None)
        self.paired_reps: list[SlurryObservables] = []

    @property
    def paired_dirs(self) -> list[Path]:
        return [self.workdir / f"rung_{r:02d}" for r in range(len(self.replicate_dirs))] if self.paired else []

    @property
    def replicate_dirs(self) -> list[Path]:
        """Replicate r's run folder: the trial's own for r = 0 (its state goes downstream),
        ``replicate_NN`` below it for the others."""
        n = self.fidelity.replicates if self.spec.slurry.protocol == "seed" else 1
        return [self.workdir] + [self.workdir / f"replicate_{r:02d}" for r in range(1, n)]

    def first_runs(self) -> list[Run]:
        scale = self.fidelity.initial_box_scale if self.spec.slurry.protocol == "ramp_hold" else 1.0
        box = tuple(x * scale for x in paper_scaled_box(self.system.n_beads))
        kept = (DECK_FILE, DATA_FILE, LOG_FILE, FINAL_DATA, FINAL_RESTART, DENSITY_FILE, DENSITY_STATUS)  # inputs
        # too: the run can be repeated from MLflow; replicate r: placement and velocities of seed + r
        plan = [("slurry" if r == 0 else f"slurry_{r:02d}", d, self.run_spec, r, kept,
                 None if r == 0 else f"replicate {r} ({d.name})") for r, d in enumerate(self.replicate_dirs)]
        plan += [(d.name, d, self.paired_spec, r, kept[:3] + kept[5:],  # the rung on the same placements
                  f"placement {r} at k = {self.paired.compression} ({d.name})")  # type: ignore[union-attr]
                 for r, d in enumerate(self.paired_dirs)]
        runs = []
        for name, d, spec, r, outputs, label in plan:
            d.mkdir(exist_ok=True)
            write_slurry_inputs(d, self.system, self.params, replace(spec, seed=self.seed + r), box)  # type: ignore[arg-type]
            runs.append(Run(name, d, DECK_FILE, LOG_FILE, outputs, label=label))
        self.phase = 1
        return runs

    def shear_dir(self, plan: RatePlan) -> Path:
        return self.workdir / f"shear_{plan.index:02d}"

    def next_runs(self) -> list[Run]:
        """Runs that follow the finished ones ([] when the trial is complete). Raises
        ``SimulationFailed`` when the slurry outputs are unusable."""
        if self.phase == 1:
            self.replicates = [read_slurry_observables(d, self.run_spec) for d in self.replicate_dirs]
            self.slurry = combine_replicates(self.replicates)
            self.paired_reps = [read_slurry_observables(d, self.paired_spec) for d in self.paired_dirs]  # type: ignore[arg-type]
            if not self.slurry.converged and self.spec.slurry.not_converged == "fail":
                raise SimulationFailed(density_not_converged(self.slurry, self.run_spec), self.workdir)
            self.phase = 2
            runs = []
            for plan in self.plans:
                d = self.shear_dir(plan)
                d.mkdir(exist_ok=True)
                self.shear_specs[plan.index] = shear_run_spec(plan, self.spec, self.fidelity, self.params, self.system)
                write_shear_inputs(d, self.shear_specs[plan.index])
                runs.append(Run(f"shear_{plan.index:02d}", d, SHEAR_DECK, SHEAR_LOG,
                                (SHEAR_DECK, SHEAR_LOG, SHEAR_BLOCKS), label=f"shear_{plan.index:02d} ({d.name})"))
            return runs
        return []

    def rate_results(self, wall_s: Mapping[str, float]) -> list[RateResult]:
        out = []
        for plan in self.plans:
            d = self.shear_dir(plan)
            res = shear_result(d, self.shear_specs[plan.index])  # the spec its deck was written from
            out.append(RateResult(
                rate_exp_per_s=plan.rate_exp_per_s, rate_sim_per_us=plan.rate_sim_per_us,
                viscosity_pa_s=micro_viscosity_to_pa_s(res.viscosity), sem_pa_s=micro_viscosity_to_pa_s(res.sem),
                converged=bool(res.converged),
                steps=res.steps, strain=res.strain, wall_s=float(wall_s.get(f"shear_{plan.index:02d}", math.nan))))
        return out

    def score(self, wall_s: Mapping[str, float] | None = None) -> Score:
        """Score the finished trial; raises ``SimulationFailed`` on unusable outputs."""
        assert self.slurry is not None
        spec, dataset = self.spec, self.loaded.dataset
        obs = self.slurry
        errors: list[TargetError | CurveErrorResult] = []  # type: ignore[assignment]
        mapped = self.fidelity.transfer.get("slurry_density") if self.run_spec.protocol == "seed" else None
        factor = mapped.factor if mapped is not None else 1.0  # the rung's density -> the full protocol's
        rho = obs.density_g_cm3
        if obs.stopped_fraction is not None:  # stopped above the band: its end density forecast,
            b = end_forecast_exponent(self.fidelity.compression)  # replicate by replicate
            rho = float(np.mean([r.density_g_cm3 * (r.stopped_fraction ** -b if r.stopped_fraction else 1.0)
                                 for r in self.replicates]))
        if "slurry_density" in spec.objective.targets:
            errors.append(density_error(rho * factor, dataset.targets["slurry_density"],
                                        obs.density_sem_g_cm3 * factor))
        rates = self.rates = self.rate_results(wall_s or {}) if self.plans else []
        fail_reason = None
        penalty = 0.0
        if rates:
            bad = [r for r in rates if not (r.viscosity_pa_s > 0 and math.isfinite(r.viscosity_pa_s))]
            if bad:
                b = bad[0]
                raise SimulationFailed(f"viscosity at {b.rate_exp_per_s:g} 1/s is not positive ({b.viscosity_pa_s:.3g} "
                                       f"+- {b.sem_pa_s:.2g} Pa s at strain {b.strain:.3g}): the run measured no "
                                       "steady viscous stress, so the curve error (in log viscosity) is undefined",
                                       self.workdir)
            assert self.loaded.curve is not None
            errors.append(curve_error([r.rate_exp_per_s for r in rates], [r.viscosity_pa_s for r in rates],
                                      self.loaded.curve, [r.sem_pa_s for r in rates]))
            unconverged = [r for r in rates if not r.converged]
            if unconverged:
                what = ", ".join(f"{r.rate_exp_per_s:g} 1/s (strain {r.strain:.3g})" for r in unconverged)
                if spec.viscosity.not_converged == "fail":
                    fail_reason = f"viscosity not converged at {what}"
                else:
                    penalty = spec.viscosity.penalty * len(unconverged) / len(rates)
        if not obs.converged:  # the "fail" policy failed the trial before its shear runs
            penalty += spec.slurry.penalty
        value = scalarised(named_errors(errors), spec, self.seed, None) + penalty
        observables = self.partial_observables()
        observables["atom_steps_per_s"] = obs.atom_steps_per_s
        note = density_convergence_note(obs, self.run_spec)
        protocol = protocol_label(spec.slurry, self.fidelity)
        attrs: dict = {"density_converged": obs.converged, "density_convergence": note, "density_protocol": protocol}
        observables["compression"] = float(self.fidelity.compression)
        if mapped is not None:
            observables["transfer_factor"] = factor
            observables["density_transferred_g_cm3"] = obs.density_g_cm3 * factor
            attrs["density_transfer"] = {"factor": factor, "source": mapped.source}
        if len(self.replicates) > 1:
            spread = float(np.std([r.density_g_cm3 for r in self.replicates], ddof=1))
            observables["density_spread_g_cm3"] = spread
            attrs["density_replicates_g_cm3"] = [r.density_g_cm3 for r in self.replicates]
        if self.fidelity.density_bias_rel is not None and spec.slurry.protocol == "ramp_hold":
            observables["fidelity_density_bias_rel"] = self.fidelity.density_bias_rel
            attrs["fidelity_density_bias"] = (f"{self.fidelity.density_bias_rel:+.2%} "
                                              f"({self.fidelity.density_bias_source or 'source not given'})")
        for r in rates:
            key = f"shear/{rate_label(r.rate_exp_per_s)}_per_s"
            observables.update({f"{key}/viscosity_pa_s": r.viscosity_pa_s, f"{key}/sem_pa_s": r.sem_pa_s,
                                f"{key}/strain": r.strain, f"{key}/converged": float(r.converged),
                                f"{key}/steps": float(r.steps), f"{key}/wall_s": r.wall_s,
                                f"{key}/simulated_rate_per_us": r.rate_sim_per_us})
        report: dict = {"density_sem_g_cm3": obs.density_sem_g_cm3 if math.isfinite(obs.density_sem_g_cm3) else None,
                        "density_change_rel": obs.density_change_rel,
                        "density_converged": obs.converged, "density_convergence": note, "density_protocol": protocol}
        if len(self.replicates) > 1:
            report["density_replicates_g_cm3"] = attrs["density_replicates_g_cm3"]
        if self.paired_reps:  # the compression effect placement by placement, free of the placements' spread
            rung = [r.density_g_cm3 for r in self.paired_reps]
            factors = [a.density_g_cm3 / b for a, b in zip(self.replicates, rung)]
            attrs["density_paired_rung"] = report["density_paired_rung"] = {
                "compression": self.paired.compression, "densities_g_cm3": rung, "factors": factors}  # type: ignore[union-attr]
            observables["paired_factor_mean"] = float(np.mean(factors))
        lines = [f"protocol: {protocol}", f"convergence: {note}"]
        stopped = None
        if obs.stopped_fraction is not None:  # the band stopped it: its density is a lower bound
            stopped = (f"stopped at {obs.stopped_fraction:.1%} of the protocol: a density block read "
                       f"{obs.density_g_cm3:.4g} g/cm^3, above the early-stop band's {self.run_spec.halt_above_g_cm3:.4g}"
                       f" (target + {spec.slurry.early_stop_band_rel:.0%}); the end density is at least that, "
                       f"forecast {rho:.4g} (scored; END_FORECAST_EXPONENT)")
            lines.append(stopped)
            attrs["density_stopped_fraction"] = obs.stopped_fraction
            observables.update(stopped_fraction=obs.stopped_fraction, density_forecast_g_cm3=rho)
        if mapped is not None:
            report.update(density_at_rung_g_cm3=obs.density_g_cm3, transfer_factor=factor,
                          transfer_source=mapped.source)
            lines.append(f"mapped to the full protocol: {obs.density_g_cm3:.4g} x {factor:.4g} = "
                         f"{obs.density_g_cm3 * factor:.4g} g/cm^3 (factor: {mapped.source})")
        tgt = dataset.targets.get("slurry_density")
        seed = self.run_spec.protocol == "seed"
        plots: tuple[Path, ...] = guarded_plots(lambda: (plot_density_trajectory(
            self.workdir / DENSITY_PLOT, *density_trajectory(self.workdir), self.run_spec.ramp_steps,
            self.run_spec.averaging_blocks if seed else self.run_spec.window_blocks,
            tgt.value / factor if tgt else None,  # the rung's own density is drawn: its target is mapped back
            tgt.uncertainty / factor if tgt and tgt.uncertainty is not None else None,
            f"{spec.name} ({self.workdir.name}): " + (f"seed protocol, k = {self.fidelity.compression}" if seed else
                                                      f"density {'converged' if obs.converged else 'NOT converged'}")
            + (f"; target / transfer factor {factor:.4g}" if mapped is not None else ""),
            "end of the protocol (read here)" if seed else "plateau-test window"),))
        if rates:
            attrs["viscosity"] = [r.as_dict() for r in rates]
            report["viscosity_pa_s"] = [
                {"shear_rate_per_s": r.rate_exp_per_s, "simulated_rate_per_us": r.rate_sim_per_us,
                 "viscosity_pa_s": r.viscosity_pa_s, "sem_pa_s": r.sem_pa_s, "strain": r.strain, "steps": r.steps,
                 "converged": r.converged} for r in rates]
            lines += [f"viscosity at {r.rate_exp_per_s:g} 1/s: {r.viscosity_pa_s:.4g} +- {r.sem_pa_s:.2g} Pa s "
                      f"(strain {r.strain:.3g}{'' if r.converged else ', not converged'})" for r in rates]
            curve = self.loaded.curve
            plots += guarded_plots(lambda: (plot_viscosity_curve(self.workdir / CURVE_PLOT, rates, curve,
                                                                 title=f"{spec.name} ({self.workdir.name})"),))
        return Score(tuple(errors), value, observables, obs.converged, penalty, fail_reason,
                     summary=describe(obs, note, rates, factor if mapped is not None else None),
                     attrs=attrs, report=report, lines=tuple(lines), plots=plots, stopped=stopped)

    def partial_observables(self) -> dict[str, float]:
        """The slurry's observables once its run has been read (a failed shear run keeps them)."""
        if self.slurry is None:
            return {}
        return {k: float(v) for k, v in asdict(self.slurry).items() if v is not None and math.isfinite(float(v))}

    @property
    def state_file(self) -> Path | None:
        return self.workdir / FINAL_DATA


class SlurryStage(StageBase):
    name = "slurry"
    upstream = None
    targets = ("slurry_density", "viscosity_curve")
    sections = {"slurry": SlurrySettings, "viscosity": ViscositySettings}
    column = "slurry"
    column_title = "slurry"
    pipeline_key = "slurry"
    default_study = "ssb_slurry.yaml"

    def fidelity_fields(self, spec: "StudyBase") -> tuple[str, ...]:
        density = (SEED_PROTOCOL_FIDELITY_FIELDS if spec.slurry.protocol == "seed"
                   else COMMON_FIDELITY_FIELDS + SLURRY_FIDELITY_FIELDS)
        return density + (SHEAR_FIDELITY_FIELDS + ("sample_every", "thermo_every") if uses_viscosity(spec) else ())

    def identity_sections(self, spec: "StudyBase") -> tuple[str, ...]:
        return ("slurry", "viscosity") if uses_viscosity(spec) else ("slurry",)

    def identity_extra(self, loaded: "StudyView") -> dict:
        if not uses_viscosity(loaded.spec):
            return {}
        assert loaded.curve is not None
        return {"viscosity_curve": {"shear_rate_per_s": list(loaded.curve.shear_rate_per_s),
                                    "viscosity_pa_s": list(loaded.curve.viscosity_pa_s),
                                    "uncertainty_pa_s": list(loaded.curve.uncertainty_pa_s or ())}}

    def dataset_identity(self, loaded: "StudyView") -> dict:
        used = super().dataset_identity(loaded)
        for p in used.get("system", {}).values():  # the slurry never reads the nanoporosity
            p.pop("nanoporosity", None)
        return used

    def fidelity_problem(self, loaded: "StudyView", fidelity: Fidelity) -> str | None:
        return protocol_problem(loaded.spec.slurry, fidelity)

    def prepare(self, loaded: "StudyView", options: Mapping[str, Any]) -> "StudyView":
        """Attach the measured viscosity curve: ``options["viscosity_csv"]`` (``--viscosity-csv``),
        else the study's ``viscosity.csv``, else the dataset's ``curves.viscosity_curve``."""
        spec, where = loaded.spec, str(loaded.path)
        require_dataset_targets(loaded, [t for t in spec.objective.targets if t != "viscosity_curve"])
        check_protocol(loaded)
        csv_opt = options.get("viscosity_csv")
        if not uses_viscosity(spec):
            if csv_opt is not None:
                raise InputError("--viscosity-csv", "(option)", "the study does not score viscosity_curve "
                                                                "(add it to objective.targets)")
            return loaded
        v = spec.viscosity
        csv = Path(csv_opt) if csv_opt is not None else (loaded.path.parent / v.csv if v.csv else None)
        curve: ViscosityCurve
        if csv is not None:
            try:
                curve = load_rheometer_csv(csv, v.csv_shear_rate_unit, v.csv_viscosity_unit)
            except CurveError as exc:
                raise InputError(exc.where, f"row {exc.row}" if exc.row else "(file)", exc.message) from exc
            digest = hashlib.sha256(csv.read_bytes()).hexdigest()
            source = f"{csv.resolve()} (kind {v.csv_kind}, sha256 {digest})"
        elif "viscosity_curve" in loaded.dataset.curves:
            curve = loaded.dataset.curve("viscosity_curve")
            prov = loaded.dataset.curves["viscosity_curve"].provenance
            source = f"{loaded.dataset_path}: curves.viscosity_curve (kind {prov.kind}: {prov.source})"
        else:
            raise InputError(where, "objective.targets.viscosity_curve",
                             f"dataset {spec.dataset} has no viscosity curve: supply a rheometer CSV "
                             "(--viscosity-csv FILE or viscosity.csv in the study)")
        return loaded.model_copy(update={"curve": curve, "curve_source": source})

    def warnings(self, loaded: "StudyView") -> list[str]:
        """Shear rates that cannot converge at some fidelity of the study (too short a run)."""
        spec = loaded.spec
        if not uses_viscosity(spec):
            return []
        out = []
        for fname in spec.ladder:
            fid = spec.fidelity_spec(fname)
            for plan in rate_plans(simulated_rates_per_s(loaded), spec.viscosity, fid):
                if plan.min_segments <= plan.max_segments:
                    continue
                reach = plan.strain_per_segment(fid) * plan.max_segments
                out.append(f"shear rate {plan.rate_exp_per_s:g} 1/s (simulated {plan.rate_sim_per_us:g} 1/us) "
                           f"reaches strain {reach:.3g} at most at fidelity {fname}, too short for min_strain "
                           f"{spec.viscosity.min_strain:g} plus a window of {spec.viscosity.window_segments} "
                           "segments: it will not converge (raise viscosity.rate_scale or the fidelity's "
                           "shear_max_steps)")
        return out

    def study_attrs(self, loaded: "StudyView") -> dict[str, str]:
        return {"viscosity_curve_source": str(loaded.curve_source)} if uses_viscosity(loaded.spec) else {}

    def make_trial(self, ctx: TrialContext) -> SlurryTrial:
        return SlurryTrial(ctx.workdir, ctx.loaded, ctx.fidelity, ctx.params, ctx.seed,
                           paired=ctx.options.get("paired_rung"), band_stop=bool(ctx.options.get("band_stop")))

    def pipeline_record(self, trial, score: Score) -> dict:
        """Density, its standard error and convergence (``calib pipeline``'s ``slurry``)."""
        obs = trial.slurry
        return {"density_g_cm3": obs.density_g_cm3, "density_sem_g_cm3": obs.density_sem_g_cm3,
                "density_change_rel": obs.density_change_rel, "density_converged": obs.converged,
                "density_converged_step": obs.converged_step, "hold_steps": obs.hold_steps,
                "density_protocol": score.attrs["density_protocol"]}


STAGE = register(SlurryStage())
