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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from sim_backends.backend import Backend, JobHandle, JobResult, JobState, Task
from sim_backends.lammps.install import LammpsInstall
from sim_backends.lammps.outputs import SimulationFailed, crash_reason, failure_reason, lammps_version

from . import ledger
from .proposer import BoTorchSampler
from .space import ParameterSpace
from .stages import StageInputs, prepare_slurry_trial, read_slurry, score_slurry
from .errors import InputError
from .study import LoadedStudy
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
    trial: optuna.Trial
    handle: JobHandle
    workdir: Path
    inputs: StageInputs
    params: dict[str, float]


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


def study_ident(loaded: LoadedStudy, space: ParameterSpace) -> dict:
    spec = loaded.spec
    physics = {
        "lj_style": spec.lj_style,
        "fixed": space.fixed,
        "slurry": spec.slurry.model_dump(),
        "objective": spec.objective.model_dump(),
        "fidelity_spec": spec.fidelity_spec().model_dump(),
        "dataset_sha256": hashlib.sha256(loaded.dataset_path.read_bytes()).hexdigest(),
    }
    return ledger.identity(spec.stage, spec.dataset, spec.fidelity,
                           {a.key: [a.low, a.high, a.log] for a in space.axes}, physics)


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


def run_study(loaded: LoadedStudy, cfg: LoopConfig, backend: Backend, lammps: LammpsInstall,
              tracker: Tracker | None = None, on_event: Callable[[Event], None] | None = None) -> LoopResult:
    """Run (or resume) the study until it has ``cfg.n_trials`` finished trials."""
    spec, dataset = loaded.spec, loaded.dataset
    tracker = tracker or NullTracker()
    emit = on_event or (lambda e: None)
    space = ParameterSpace.from_spec(spec.parameters)
    fidelity = spec.fidelity_spec()
    o = spec.optimizer
    sampler = BoTorchSampler(space, seed=cfg.seed, n_initial=o.n_initial, num_restarts=o.num_restarts,
                             raw_samples=o.raw_samples, objective_floor=o.objective_floor, lag=cfg.parallel)
    study = ledger.open_study(spec.name, cfg.storage, sampler, study_ident(loaded, space),
                              spec_json=spec.model_dump_json(),
                              dataset_path=str(loaded.dataset_path.resolve()))
    uid = study.user_attrs[ledger.UID_ATTR]
    try:
        tracker.start_study(spec.name, tags={"stage": spec.stage, "fidelity": spec.fidelity,
                                             "dataset": spec.dataset, "storage": cfg.storage, "calib.study_uid": uid},
                            params={"study_file": str(loaded.path), "seed": str(cfg.seed),
                                    "fixed": json.dumps(space.fixed, sort_keys=True)})
    except Exception as exc:
        raise InputError("--tracking-uri", "uri", f"cannot use the MLflow store: {exc.__class__.__name__}: "
                                                  f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    study_dir = Path(cfg.runs_dir) / spec.name
    moved = claim_study_dir(study_dir, uid)
    if moved:
        emit(Event("warning", -1, moved))
    driver = ledger.driver_id()
    active: dict[int, _Active] = {}
    base_tags = {"stage": spec.stage, "fidelity": spec.fidelity, "dataset": spec.dataset, "study": spec.name}

    def track_failure(number: int, free: dict[str, float], reason: str, workdir: Path | None = None) -> None:
        """An MLflow run for a trial that ended without running to completion."""
        try:
            tracker.log_trial(TrialRecord(number, "FAIL", {**space.fixed, **free}, {},
                                          {**base_tags, "fail_reason": reason[:5000]},
                                          tuple(workdir / f for f in ("in.slurry", "log.lammps")) if workdir else ()))
        except Exception as exc:
            emit(Event("warning", number, f"MLflow logging failed: {exc}"))

    recovered = ledger.recover_lost(study)
    for n in recovered:
        lost = study.trials[n]
        emit(Event("recovered", n, "left RUNNING by a dead driver: marked FAIL, slot re-proposed"))
        track_failure(n, dict(lost.params), lost.user_attrs.get("fail_reason", "driver lost"))

    def finish(a: _Active, result: JobResult) -> None:
        number = a.trial.number
        log_path = a.workdir / a.inputs.log
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        tags = {**base_tags, "lammps_version": lammps_version(log_text) or "unknown"}
        metrics: dict[str, float] = {"wall_time_s": result.wall_s}
        a.trial.set_user_attr("wall_s", result.wall_s)
        reason: str | None = None
        score = None
        if result.state == JobState.DONE:
            try:
                score = score_slurry(read_slurry(a.workdir), spec, dataset)
            except SimulationFailed as exc:
                reason = exc.reason
            except Exception as exc:  # unreadable outputs fail the trial, not the study
                reason = f"could not read or score the outputs: {exc.__class__.__name__}: {exc}"
        else:
            reason = failure_reason(log_text) if result.state == JobState.FAILED else None
            if reason is None:
                reason = (crash_reason(result.returncode, log_text) if result.state == JobState.FAILED
                          else result.reason)
        if score is not None:
            metrics.update(score.observables)
            metrics["equilibrated"] = float(score.equilibrated)
            for e in score.errors:
                metrics[f"{e.name}_rel_error"] = e.rel_error
                metrics[f"{e.name}_error"] = e.error
            metrics["objective"] = score.value
            a.trial.set_user_attr("observables", score.observables)
            a.trial.set_user_attr("errors", {e.name: {"simulated": e.simulated, "target": e.target, "unit": e.unit,
                                                      "rel_error": e.rel_error, "error": e.error,
                                                      "normalised_by": e.normalised_by} for e in score.errors})
            a.trial.set_user_attr("equilibrated", score.equilibrated)
            study.tell(a.trial, score.value)
            state = "COMPLETE"
            emit(Event("complete", number, f"density {score.observables['density_g_cm3']:.4f} g/cm^3", score.value))
        else:
            a.trial.set_user_attr("fail_reason", reason or "unknown failure")
            study.tell(a.trial, state=TrialState.FAIL)
            state = "FAIL"
            tags["fail_reason"] = (reason or "unknown")[:5000]
            emit(Event("fail", number, reason or "unknown failure"))
        try:
            run_id = tracker.log_trial(TrialRecord(number, state, {**space.fixed, **a.params}, metrics, tags,
                                                   tuple(a.workdir / f for f in a.inputs.artifacts)))
        except Exception as exc:  # tracking is an attachment: the ledger already has the trial
            emit(Event("warning", number, f"MLflow logging failed: {exc}"))
        else:
            if run_id:
                (a.workdir / "mlflow_run_id").write_text(run_id + "\n")

    try:
        while True:
            finished = ledger.finished_count(study)
            while (len(active) < cfg.parallel and finished + len(active) < cfg.n_trials
                   and ready_to_ask(study, active, cfg.parallel)):
                trial = study.ask(space.distributions())
                trial.set_user_attr("calib_driver", driver)
                if sampler.last_proposal_s is not None:
                    trial.set_user_attr("proposal_s", sampler.last_proposal_s)
                    sampler.last_proposal_s = None
                free = {k: trial.params[k] for k in space.keys}
                workdir = study_dir / f"trial_{trial.number:05d}"
                workdir.mkdir(parents=True)  # trial numbers are unique in a study: never reused
                seed = trial_seed(cfg.seed, trial.number)
                trial.set_user_attr("calib_workdir", str(workdir))
                trial.set_user_attr("calib_seed", seed)
                full = space.full_params(free)
                trial.set_user_attr("table_s1", full.as_dict())
                (workdir / "params.json").write_text(json.dumps(full.as_dict(), indent=2))
                try:
                    inputs = prepare_slurry_trial(workdir, spec, dataset, fidelity, full, seed)
                    res = spec.resources
                    handle = backend.submit(Task(workdir, lammps.argv(inputs.deck, inputs.log, res.ranks, res.threads),
                                                 lammps.thread_env(res.threads), timeout_s=spec.trial_timeout_s,
                                                 cores=res.ranks * res.threads,
                                                 name=f"{spec.name}-{trial.number}"))
                except Exception as exc:  # a trial that cannot start is a FAIL, not the end of the study
                    trial.set_user_attr("fail_reason", f"could not start: {exc}")
                    study.tell(trial, state=TrialState.FAIL)
                    emit(Event("fail", trial.number, f"could not start: {exc}"))
                    track_failure(trial.number, free, f"could not start: {exc}", workdir)
                    finished += 1
                    continue
                trial.set_user_attr("calib_job", f"{handle.backend}:{handle.job_id}")
                active[trial.number] = _Active(trial, handle, workdir, inputs, free)
                emit(Event("submitted", trial.number, json.dumps({k: round(v, 6) for k, v in free.items()})))
            if not active:
                break
            for number in list(active):
                a = active[number]
                if backend.poll(a.handle).terminal:
                    del active[number]
                    finish(a, backend.collect(a.handle))
            if active:
                time.sleep(cfg.poll_s)
    except BaseException:
        for a in active.values():
            backend.cancel(a.handle)
            a.trial.set_user_attr("fail_reason", "interrupted: the driver stopped while the trial ran")
            a.trial.set_user_attr("calib_lost", True)
            study.tell(a.trial, state=TrialState.FAIL)
            study.enqueue_trial(dict(a.params), user_attrs={"calib_reproposed_from": a.trial.number})
            track_failure(a.trial.number, a.params, "interrupted: the driver stopped while the trial ran", a.workdir)
        raise
    best = best_trial(study)
    tracker.end_study({"best_objective": best.value if best else math.nan,
                       "trials_complete": float(len(study.get_trials(states=(TrialState.COMPLETE,)))),
                       "trials_failed": float(sum(1 for t in study.get_trials(states=(TrialState.FAIL,))
                                                  if not ledger.is_lost(t)))})
    return LoopResult(study, recovered)


def ready_to_ask(study: optuna.Study, active: dict[int, "_Active"], lag: int) -> bool:
    """The next proposal may be made once every trial numbered <= next - lag has finished
    (an enqueued re-proposal has its parameters already and may always start)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    horizon = len(trials) - lag
    return all(n > horizon for n in active)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(done, key=lambda t: t.value) if done else None
