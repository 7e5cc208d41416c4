"""The optimisation loop: ask (BoTorch via the Optuna ledger) -> write a trial directory ->
submit to a backend -> collect -> score -> tell; MLflow logging attached.

A failed simulation is a FAIL trial with its reason and the study goes on; an interrupted
driver cancels its jobs and leaves their trials to be re-proposed on resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from sim_backends.backend import Backend, JobHandle, JobResult, JobState, Task
from sim_backends.lammps.install import LammpsInstall
from objectives.errors import TargetError
from sim_backends.lammps.outputs import SimulationFailed, crash_reason, failure_reason, lammps_version

from . import ledger
from .samplers import make_sampler
from .space import ParameterSpace
from .stages import Run, Score, SlurryTrial, rate_plans, scalarised
from .electrode_stages import CalenderingTrial, DryingTrial
from .lineage import Lineage
from objectives.porosity import CalenderedErrorResult
from objectives.scalarise import parego_weights
from .errors import InputError
from .fidelity import Fidelity
from .study import LoadedStudy
from .ledger import FIDELITY_ATTR, best_trial
from .plots import CURVE_PLOT, plot_viscosity_curve
from .report import pareto
from .tracking import NullTracker, Tracker, TrialRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Event:
    """Progress of the loop: kind in submitted / complete / fail / recovered."""

    kind: str
    trial: int
    message: str = ""
    value: float | None = None


@dataclass
class _Active:
    """A running trial: its stage runs, the jobs of the current phase and their results."""

    trial: optuna.Trial
    stage: SlurryTrial | DryingTrial | CalenderingTrial
    workdir: Path
    params: dict[str, float]
    fidelity: str
    jobs: dict[str, tuple[Run, JobHandle]] = field(default_factory=dict)
    results: dict[str, JobResult] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    told: bool = False


@dataclass(frozen=True)
class LoopConfig:
    """Where and how much: storage URL, run directory root, trial budget, concurrency."""

    storage: str
    runs_dir: Path
    n_trials: int
    parallel: int
    seed: int
    poll_s: float = 0.2


@dataclass
class LoopResult:
    study: optuna.Study
    recovered: list[int] = field(default_factory=list)


def trial_seed(study_seed: int, number: int) -> int:
    """LAMMPS random seed of trial ``number`` (placement, velocities, Langevin)."""
    return study_seed * 10_007 + number + 1


STAGE_FIDELITY_PREFIXES = {"slurry": ("shear_", "drying_", "calender_"), "drying": ("shear_", "calender_"),
                           "calendering": ("shear_", "drying_")}
"""Fidelity fields a stage never reads (left out of its identity)."""


def study_ident(loaded: LoadedStudy, space: ParameterSpace, lineage: Lineage | None = None) -> dict:
    spec = loaded.spec
    unused = set(STAGE_FIDELITY_PREFIXES[spec.stage])
    if spec.stage == "slurry" and spec.uses_viscosity:
        unused.discard("shear_")
    physics = {
        "lj_style": spec.lj_style,
        "fixed": space.fixed,
        "objective": spec.objective.model_dump(),
        # a fidelity's measured density bias is a record about it, not physics: updating it
        # keeps studies resumable
        "fidelity_spec": spec.fidelity_spec().model_dump(
            exclude={k for k in Fidelity.model_fields if k.startswith((*unused, "density_bias_"))}),
        # a multi-fidelity study's cheaper rungs (their costs steer proposals, not physics)
        **({"ladder": {n: spec.fidelity_spec(n).model_dump(
            exclude={k for k in Fidelity.model_fields if k.startswith((*unused, "density_bias_"))})
            for n in spec.ladder}} if spec.optimizer.multi_fidelity is not None else {}),
        "dataset_sha256": dataset_digest(loaded),
    }
    if spec.stage == "slurry":
        physics["slurry"] = spec.slurry.model_dump()
    else:
        physics["drying"] = spec.drying.model_dump()
        if spec.stage == "calendering":
            physics["calendering"] = spec.calendering.model_dump()
            physics["degrees_pct"] = list(loaded.calender_degrees_pct())
        if lineage is not None:
            physics["upstream_state_sha256"] = lineage.sha256
    if spec.system:
        physics["system"] = {k: v.model_dump() for k, v in spec.system.items()}
    if spec.uses_viscosity:
        assert loaded.curve is not None
        physics["viscosity"] = spec.viscosity.model_dump()
        physics["viscosity_curve"] = {"shear_rate_per_s": list(loaded.curve.shear_rate_per_s),
                                      "viscosity_pa_s": list(loaded.curve.viscosity_pa_s),
                                      "uncertainty_pa_s": list(loaded.curve.uncertainty_pa_s or ())}
    return ledger.identity(spec.stage, spec.dataset, spec.fidelity,
                           {a.key: [a.low, a.high, a.log] for a in space.axes}, physics)


def dataset_digest(loaded: LoadedStudy) -> str:
    """sha256 of what the study uses from its dataset (canonical JSON): the particle system
    (every stage counts its beads with the solid CBD bead, so all of it) and the targets it
    scores. Edits to
    the file that do not touch these leave the study resumable."""
    spec, d = loaded.spec, loaded.dataset
    used: dict = {"name": d.name, "targets": {k: d.targets[k].model_dump() for k in sorted(spec.objective.targets)
                                             if k in d.targets}}
    if d.system is not None:
        drop = {"nanoporosity"} if spec.stage == "slurry" else set()
        used["system"] = {name: p.model_dump(exclude=drop) for name, p in sorted(d.system.phases.items())}
    if "viscosity_curve" in spec.objective.targets and "viscosity_curve" in d.curves:
        used["viscosity_curve"] = d.curves["viscosity_curve"].model_dump()
    if "calendered_porosity" in spec.objective.targets and d.calendered_porosity is not None:
        used["calendered_porosity"] = d.calendered_porosity.model_dump()
    return hashlib.sha256(json.dumps(used, sort_keys=True, default=str).encode()).hexdigest()


def claim_study_dir(study_dir: Path, uid: str) -> str | None:
    """Make ``study_dir`` this study's (marker file ``.calib_study_uid``). A folder of the
    same name left by another study (other ledger, deleted database) is moved aside, never
    deleted; returns a warning saying where, or None."""
    marker = study_dir / ".calib_study_uid"
    warning = None
    if study_dir.exists() and any(study_dir.iterdir()):
        if marker.exists() and marker.read_text().strip() == uid:
            return None
        aside = study_dir.with_name(f"{study_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        study_dir.rename(aside)
        warning = f"{study_dir} belonged to another study with this name; moved to {aside}"
    study_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(uid + "\n")
    return warning


def make_trial(workdir: Path, loaded: LoadedStudy, fidelity: Fidelity, params, seed: int,
               lineage: Lineage | None):
    """The stage trial of one proposal (slurry, drying or calendering)."""
    stage = loaded.spec.stage
    if stage == "slurry":
        return SlurryTrial(workdir, loaded, fidelity, params, seed)
    assert lineage is not None
    cls = DryingTrial if stage == "drying" else CalenderingTrial
    return cls(workdir, loaded, fidelity, params, seed, lineage)


def run_study(loaded: LoadedStudy, cfg: LoopConfig, backend: Backend, lammps: LammpsInstall,
              tracker: Tracker | None = None, on_event: Callable[[Event], None] | None = None,
              lineage: Lineage | None = None) -> LoopResult:
    """Run (or resume) the study until it has ``cfg.n_trials`` finished trials; a chained
    stage starts every trial from ``lineage``'s state."""
    spec = loaded.spec
    tracker = tracker or NullTracker()
    emit = on_event or (lambda e: None)
    space = ParameterSpace.from_spec(spec.parameters)
    fidelity = spec.fidelity_spec()  # the target fidelity
    fidelities = {name: spec.fidelity_spec(name) for name in spec.ladder}
    multi = len(fidelities) > 1

    def parego_value(t: optuna.trial.FrozenTrial, proposal: int) -> float:
        """ParEGO: every trial re-scalarised with the weights of this proposal."""
        return (scalarised(t.user_attrs["objective_errors"], spec, cfg.seed, proposal)
                + float(t.user_attrs.get("penalty", 0.0)))

    parego = spec.objective.scalarisation == "parego"
    value_of = parego_value if parego else None
    weights_of = (lambda proposal: parego_weights(sorted(spec.objective.targets), cfg.seed, proposal)) if parego else None
    sampler = make_sampler(spec, space, cfg.seed, cfg.parallel, value_of, weights_of)
    study = ledger.open_study(spec.name, cfg.storage, sampler, study_ident(loaded, space, lineage),
                              spec_json=spec.model_dump_json(),
                              dataset_path=str(loaded.dataset_path.resolve()))
    uid = study.user_attrs[ledger.UID_ATTR]
    study.set_user_attr(ledger.TARGET_FIDELITY_ATTR, spec.fidelity)
    try:
        tracker.start_study(spec.name, tags={"stage": spec.stage, "fidelity": spec.fidelity,
                                             "dataset": spec.dataset, "storage": cfg.storage, "calib.study_uid": uid,
                                             **(lineage.tags() if lineage else {})},
                            params={"study_file": str(loaded.path), "seed": str(cfg.seed),
                                    "fixed": json.dumps(space.fixed, sort_keys=True),
                                    **({"viscosity_curve": str(loaded.curve_source)} if spec.uses_viscosity else {})})
    except Exception as exc:
        raise InputError("--tracking-uri", "uri", f"cannot use the MLflow store: {exc.__class__.__name__}: "
                                                  f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    study_dir = Path(cfg.runs_dir) / spec.name
    moved = claim_study_dir(study_dir, uid)
    if moved:
        emit(Event("warning", -1, moved))
    if spec.uses_viscosity:
        study.set_user_attr("viscosity_curve_source", loaded.curve_source)
        for fname, fid_spec in fidelities.items():
            for plan in rate_plans(loaded.simulated_rates_per_s(), spec.viscosity, fid_spec):
                if plan.min_segments <= plan.max_segments:
                    continue
                reach = plan.strain_per_segment(fid_spec) * plan.max_segments
                emit(Event("warning", -1, f"shear rate {plan.rate_exp_per_s:g} 1/s (simulated "
                                          f"{plan.rate_sim_per_us:g} 1/us) reaches strain {reach:.3g} at most at "
                                          f"fidelity {fname}, too short for min_strain "
                                          f"{spec.viscosity.min_strain:g} plus a window of "
                                          f"{spec.viscosity.window_segments} segments: it will not converge "
                                          f"(raise viscosity.rate_scale or the fidelity's shear_max_steps)"))
    driver = ledger.driver_id()
    active: dict[int, _Active] = {}
    base_tags = {"stage": spec.stage, "fidelity": spec.fidelity, "dataset": spec.dataset, "study": spec.name,
                 **(lineage.tags() if lineage else {})}
    if lineage is not None:
        study.set_user_attr("lineage", lineage.as_dict())

    def track_failure(number: int, free: dict[str, float], reason: str, workdir: Path | None = None,
                      fid: str | None = None) -> None:
        """An MLflow run for a trial that ended without running to completion."""
        try:
            tracker.log_trial(TrialRecord(number, "FAIL", {**space.fixed, **free}, {},
                                          {**base_tags, "fidelity": fid or spec.fidelity, "fail_reason": reason[:5000]},
                                          tuple(workdir / f for f in ("in.slurry", "log.lammps")) if workdir else ()))
        except Exception as exc:
            emit(Event("warning", number, f"MLflow logging failed: {exc}"))

    recovered = ledger.recover_lost(study)
    for n in recovered:
        lost = study.trials[n]
        emit(Event("recovered", n, "left RUNNING by a dead driver: marked FAIL, slot re-proposed"))
        track_failure(n, dict(lost.params), lost.user_attrs.get("fail_reason", "driver lost"),
                      fid=lost.user_attrs.get(FIDELITY_ATTR))

    def run_failure(run: Run, result: JobResult) -> str:
        """Why a run that did not end DONE failed, prefixed by which run it was."""
        log_path = run.workdir / run.log
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        reason = failure_reason(log_text) if result.state == JobState.FAILED else None
        if reason is None and result.state == JobState.FAILED and result.returncode is None:
            reason = result.reason  # the backend could not start it
        if reason is None:
            reason = (crash_reason(result.returncode, log_text) if result.state == JobState.FAILED
                      else result.reason) or "unknown failure"
        if run.key in ("slurry", "drying"):
            return reason
        return f"{run.label or f'{run.key} ({run.workdir.name})'}: {reason}"

    def finish(a: _Active, score: Score | None, reason: str | None) -> None:
        number = a.trial.number
        log_path = (a.runs[0].workdir if a.runs else a.workdir) / "log.lammps"
        if lineage is not None:
            a.trial.set_user_attr("lineage", lineage.as_dict())
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        tags = {**base_tags, "fidelity": a.fidelity, "lammps_version": lammps_version(log_text) or "unknown"}
        wall = {k: r.wall_s for k, r in a.results.items()}
        first = a.runs[0].key if a.runs else "slurry"
        core_s = float(sum(wall.values())) * spec.resources.ranks * spec.resources.threads
        metrics: dict[str, float] = {"wall_time_s": wall.get(first, math.nan),
                                     "wall_time_total_s": float(sum(wall.values())), "core_s": core_s}
        a.trial.set_user_attr("core_s", core_s)
        a.trial.set_user_attr("wall_s", wall.get(first))
        a.trial.set_user_attr("run_wall_s", wall)
        artifacts: list[Path] = [r.workdir / f for r in a.runs for f in r.artifacts]
        if score is not None:
            metrics.update(score.observables)
            metrics["equilibrated"] = float(score.equilibrated)
            for e in score.errors:
                if isinstance(e, TargetError):
                    metrics[f"{e.name}_rel_error"] = e.rel_error
                metrics[f"{e.name}_error"] = e.error
            for r in score.rates:
                key = f"shear/{rate_label(r.rate_exp_per_s)}_per_s"
                metrics.update({f"{key}/viscosity_pa_s": r.viscosity_pa_s, f"{key}/sem_pa_s": r.sem_pa_s,
                                f"{key}/strain": r.strain, f"{key}/converged": float(r.converged),
                                f"{key}/steps": float(r.steps), f"{key}/wall_s": r.wall_s,
                                f"{key}/simulated_rate_per_us": r.rate_sim_per_us})
            metrics["penalty"] = score.penalty
            a.trial.set_user_attr("observables", score.observables)
            a.trial.set_user_attr("errors", error_attrs(score))
            a.trial.set_user_attr("objective_errors", score.objective_errors)
            a.trial.set_user_attr("residuals", score.residuals)
            a.trial.set_user_attr("residual_sd", score.residual_sd)
            a.trial.set_user_attr("penalty", score.penalty)
            a.trial.set_user_attr("equilibrated", score.equilibrated)
            for k, v in score.details.items():
                a.trial.set_user_attr(k, v)
                if isinstance(v, (str, bool)):  # convergence notes and flags: visible in MLflow too
                    tags[k] = str(v)
            if score.rates:
                a.trial.set_user_attr("viscosity", [r.as_dict() for r in score.rates])
                try:
                    assert loaded.curve is not None
                    plot = plot_viscosity_curve(a.workdir / CURVE_PLOT, score.rates, loaded.curve,
                                                title=f"{spec.name} trial {number}")
                    artifacts.append(plot)
                except Exception as exc:  # a plot is a convenience, never a failure
                    emit(Event("warning", number, f"viscosity plot failed: {exc}"))
            artifacts.extend(p for p in score.plots if p.exists())
            reason = score.fail_reason
        elif a.stage is not None and getattr(a.stage, "slurry", None) is not None:  # a shear run failed: keep the density
            slurry_obs = {k: float(v) for k, v in asdict(a.stage.slurry).items() if v is not None}
            metrics.update(slurry_obs)
            a.trial.set_user_attr("observables", slurry_obs)
        if score is not None and reason is None:
            metrics["objective"] = score.value
            study.tell(a.trial, score.value)
            a.told = True
            state = "COMPLETE"
            emit(Event("complete", number, (f"at {a.fidelity}: " if multi else "") + describe(score), score.value))
        else:
            a.trial.set_user_attr("fail_reason", reason or "unknown failure")
            study.tell(a.trial, state=TrialState.FAIL)
            a.told = True
            state = "FAIL"
            tags["fail_reason"] = (reason or "unknown")[:5000]
            emit(Event("fail", number, (f"at {a.fidelity}: " if multi else "") + (reason or "unknown failure")))
        try:
            run_id = tracker.log_trial(TrialRecord(number, state, {**space.fixed, **a.params}, metrics, tags,
                                                   tuple(artifacts), artifact_root=a.workdir))
        except Exception as exc:  # tracking is an attachment: the ledger already has the trial
            emit(Event("warning", number, f"MLflow logging failed: {exc}"))
        else:
            if run_id:
                (a.workdir / "mlflow_run_id").write_text(run_id + "\n")

    def submit(a: _Active, runs: list[Run]) -> None:
        res = spec.resources
        a.jobs = {}
        for run in runs:
            handle = backend.submit(Task(run.workdir, lammps.argv(run.deck, run.log, res.ranks, res.threads),
                                         lammps.thread_env(res.threads), timeout_s=spec.trial_timeout_s,
                                         cores=res.ranks * res.threads,
                                         name=f"{spec.name}-{a.trial.number}-{run.key}"))
            a.jobs[run.key] = (run, handle)
            a.runs.append(run)
        a.trial.set_user_attr("calib_jobs", [f"{h.backend}:{h.job_id}" for _, h in a.jobs.values()])

    def cancel_all(a: _Active) -> None:
        for _, h in a.jobs.values():
            backend.cancel(h)

    def advance(a: _Active) -> tuple[Score | None, str | None] | None:
        """Poll a trial's current jobs and start its next phase; when the trial is over,
        return (score, failure reason) for ``finish``; None while it runs."""
        states = {k: backend.poll(h) for k, (_, h) in a.jobs.items()}
        failed = [k for k, st in states.items() if st.terminal and st != JobState.DONE]
        if failed:
            cancel_all(a)
            for k, (_, h) in a.jobs.items():
                a.results[k] = backend.collect(h)
            return None, run_failure(a.jobs[failed[0]][0], a.results[failed[0]])
        if not all(st == JobState.DONE for st in states.values()):
            return None
        for k, (_, h) in a.jobs.items():
            a.results[k] = backend.collect(h)
        try:
            runs = a.stage.next_runs()
            if runs:
                submit(a, runs)
                return None
            return a.stage.score({k: r.wall_s for k, r in a.results.items()}), None
        except SimulationFailed as exc:
            cancel_all(a)
            return None, exc.reason
        except Exception as exc:  # unreadable outputs fail the trial, not the study
            cancel_all(a)
            return None, f"could not read or score the outputs: {exc.__class__.__name__}: {exc}"

    try:
        while True:
            finished = ledger.finished_count(study)
            while (len(active) < cfg.parallel and finished + len(active) < cfg.n_trials
                   and ready_to_ask(study, active, cfg.parallel)):
                t_ask = time.perf_counter()
                trial = study.ask(space.distributions())
                trial.set_user_attr("proposal_s", time.perf_counter() - t_ask)
                trial.set_user_attr("calib_driver", driver)
                # the sampler's choice, or the original's for a re-proposed trial
                fid = (trial.user_attrs.get(FIDELITY_ATTR) or getattr(sampler, "fidelity_of", lambda n: None)(
                    trial.number) or (spec.ladder[0] if multi else spec.fidelity))
                trial.set_user_attr(FIDELITY_ATTR, fid)
                free = {k: trial.params[k] for k in space.keys}
                workdir = study_dir / f"trial_{trial.number:05d}"
                workdir.mkdir(parents=True)  # trial numbers are unique in a study: never reused
                seed = trial_seed(cfg.seed, trial.number)
                trial.set_user_attr("calib_workdir", str(workdir.resolve()))
                trial.set_user_attr("calib_seed", seed)
                full = space.full_params(free)
                trial.set_user_attr("table_s1", full.as_dict())
                (workdir / "params.json").write_text(json.dumps(full.as_dict(), indent=2))
                a = _Active(trial, None, workdir, free, fid)  # type: ignore[arg-type]
                try:
                    a.stage = make_trial(workdir, loaded, fidelities[fid], full, seed, lineage)
                    submit(a, a.stage.first_runs())
                except Exception as exc:  # a trial that cannot start is a FAIL, not the end of the study
                    for _, h in a.jobs.values():
                        backend.cancel(h)
                    trial.set_user_attr("fail_reason", f"could not start: {exc}")
                    study.tell(trial, state=TrialState.FAIL)
                    emit(Event("fail", trial.number, f"could not start: {exc}"))
                    track_failure(trial.number, free, f"could not start: {exc}", workdir, fid)
                    finished += 1
                    continue
                active[trial.number] = a
                emit(Event("submitted", trial.number, (f"at {fid}: " if multi else "")
                           + json.dumps({k: round(v, 6) for k, v in free.items()})))
            if not active:
                break
            for number in list(active):
                outcome = advance(active[number])
                if outcome is not None:
                    finish(active[number], *outcome)
                    del active[number]
            if active:
                time.sleep(cfg.poll_s)
    except BaseException:
        for a in active.values():
            if a.told:  # interrupted while its MLflow run was written: the ledger has it
                continue
            try:
                cancel_all(a)
                a.trial.set_user_attr("fail_reason", "interrupted: the driver stopped while the trial ran")
                a.trial.set_user_attr("calib_lost", True)
                study.tell(a.trial, state=TrialState.FAIL)
                study.enqueue_trial(dict(a.params), user_attrs={"calib_reproposed_from": a.trial.number,
                                                                FIDELITY_ATTR: a.fidelity})
                track_failure(a.trial.number, a.params, "interrupted: the driver stopped while the trial ran",
                              a.workdir, a.fidelity)
            except Exception:  # clean up the other trials whatever happens to this one
                continue
        raise
    best = best_trial(study)
    front = pareto(study)
    tracker.end_study({"pareto_size": float(len(front)),
                       "best_objective": best.value if best else math.nan,
                       "trials_complete": float(len(study.get_trials(states=(TrialState.COMPLETE,)))),
                       "trials_failed": float(sum(1 for t in study.get_trials(states=(TrialState.FAIL,))
                                                  if not ledger.is_lost(t)))},
                      files={"pareto.json": json.dumps(front, indent=2)})
    return LoopResult(study, recovered)


def rate_label(rate_per_s: float) -> str:
    """A shear rate as it appears in MLflow metric names (``18``, ``0.1``, ``1e06``)."""
    return f"{rate_per_s:g}".replace("+", "")


def error_attrs(score: Score) -> dict:
    """Per-objective details stored with a trial (JSON-able)."""
    out: dict = {}
    for e in score.errors:
        if isinstance(e, TargetError):
            out[e.name] = {"simulated": e.simulated, "target": e.target, "unit": e.unit, "rel_error": e.rel_error,
                           "error": e.error, "normalised_by": e.normalised_by}
        elif isinstance(e, CalenderedErrorResult):
            out[e.name] = {"error": e.error, "degree_pct": list(e.degree_pct), "simulated": list(e.simulated),
                           "measured": list(e.measured), "point_errors": list(e.point_errors)}
        else:
            out[e.name] = {"rms_log_error": e.rms, "error": e.error, "shear_rate_per_s": list(e.shear_rate_per_s),
                           "simulated_pa_s": list(e.simulated_pa_s), "measured_pa_s": list(e.measured_pa_s),
                           "log_errors": list(e.log_errors)}
    return out


def describe(score: Score) -> str:
    """One line about a scored trial for the progress display."""
    if score.summary:
        return score.summary
    parts = [f"density {score.observables['density_g_cm3']:.4f} g/cm^3"]
    if score.details.get("density_converged") is False:
        parts[0] += (f" (not converged: {score.observables.get('density_change_rel', math.nan):+.1%} "
                     "across the last window)")
    if score.rates:
        parts.append("eta " + ", ".join(f"{r.viscosity_pa_s:.3g}{'' if r.converged else '*'}" for r in score.rates)
                     + " Pa s" + (" (* not converged)" if any(not r.converged for r in score.rates) else ""))
    return "; ".join(parts)


def ready_to_ask(study: optuna.Study, active: dict[int, "_Active"], lag: int) -> bool:
    """The next proposal may be made once every trial numbered <= next - lag has finished
    (an enqueued re-proposal has its parameters already and may always start)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    horizon = len(trials) - lag
    return all(n > horizon for n in active)
