"""One driver's session on a study: everything ``loop.run_study`` asks, advances and tells
through.

``StudySession`` opens (or resumes) the ledger study with its sampler, starts MLflow
tracking, claims the study's run directory, recovers trials a dead driver left RUNNING,
and then: ``ask`` proposes a trial, writes its directory and starts its first runs;
``tell`` records a finished trial in the ledger first (so a completed trial is never lost)
and then in MLflow; ``abandon`` cancels the running trials of an interrupted driver and
re-queues their parameters; ``close`` writes the study's summary to MLflow.

It composes a trial's life-cycle against the ledger
(``calib.execution.trial_lifecycle.TrialLifecycle``: ask, heartbeat, tell, abandon,
recovery) and the MLflow side (``calib.execution.session_tracking.SessionTracking``), and
owns the stage trials and their executions: a trial's directory, seed and first runs, its
checkpoint, and the re-attachment to a lost trial's jobs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Iterable

import optuna
from optuna.trial import TrialState

from objectives.scalarise import parego_weights
from sim_backends.backend import JobHandle

from calib import ledger
from calib.execution import checkpoint
from calib.execution.runner import Outcome, Runner, TrialExecution
from calib.execution.session_tracking import SessionTracking
from calib.execution.session_types import ActiveTrial, Event, LoopConfig, trial_seed
from calib.execution.study_dir import claim_study_dir, setup_lock
from calib.execution.trial_lifecycle import TrialLifecycle
from calib.ledger import FIDELITY_ATTR, best_trial
from calib.optimize import confirmation as confirm
from calib.optimize.sampler_registry import make_sampler
from calib.review.tracker import Tracker
from calib.stages import TrialContext
from calib.stages.base import scalarised
from calib.stages.upstream_state import Lineage
from calib.study.identity import study_ident
from calib.study.load import LoadedStudy
from calib.study.space import ParameterSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StudySession:
    """See the module docstring."""

    def __init__(self, loaded: LoadedStudy, cfg: LoopConfig, runner: Runner, tracker: Tracker,
                 emit: Callable[[Event], None], lineage: Lineage | None = None) -> None:
        self.loaded, self.spec, self.cfg, self.runner = loaded, loaded.spec, cfg, runner
        self.tracker, self.emit, self.lineage = tracker, emit, lineage
        spec = self.spec
        self.space = ParameterSpace.from_spec(spec.parameters)
        self.fidelities = {name: spec.fidelity_spec(name) for name in spec.ladder}
        self.multi = len(self.fidelities) > 1
        parego = spec.objective.scalarisation == "parego"
        self.sampler = make_sampler(spec, self.space, cfg.seed, cfg.parallel, self._parego_value if parego else None,
                                    (lambda p: parego_weights(sorted(spec.objective.targets), cfg.seed, p))
                                    if parego else None)
        self.recovery = ledger.Recovery(cfg.grace_s)
        with setup_lock(Path(cfg.runs_dir)):  # drivers started together create the stores once
            self.storage = ledger.rdb_storage(cfg.storage, cfg.heartbeat_s, cfg.grace_s, self.recovery)
            self.study = ledger.open_study(spec.name, self.storage, self.sampler,
                                           study_ident(loaded, self.space, lineage), spec_json=spec.model_dump_json(),
                                           dataset_path=str(loaded.dataset_path.resolve()),
                                           study_path=str(Path(loaded.path).resolve()))
            uid = self.study.user_attrs[ledger.UID_ATTR]
            self.tracking = SessionTracking(self.study, tracker, loaded, self.space, cfg, emit)
            self.tracking.start(uid, lineage)
            # absolute: checkpoints and job handles must mean the same to a driver started elsewhere
            self.study_dir = Path(cfg.runs_dir).resolve() / spec.name
            moved = claim_study_dir(self.study_dir, uid)
        if moved:
            emit(Event("warning", -1, moved))
        self.study.set_user_attr(ledger.TARGET_FIDELITY_ATTR, spec.fidelity)
        stage_attrs = loaded.stage.study_attrs(loaded)
        for k, v in stage_attrs.items():
            self.study.set_user_attr(k, v)
        for w in loaded.stage.warnings(loaded):
            emit(Event("warning", -1, w))
        if lineage is not None:
            self.study.set_user_attr("lineage", lineage.as_dict())
        self.life = TrialLifecycle(self.study, self.recovery, cfg, spec.stop_after_start_failures, self.multi, emit,
                                   failed=self.tracking.failure)
        self.driver, self.heartbeat, self.recovered = self.life.driver, self.life.heartbeat, self.life.recovered
        self.sweep()
        self.backfill()

    def sweep(self) -> None:
        """Recover the trials of dead drivers (``TrialLifecycle.sweep``), each with its
        MLflow run. Runs at most once a heartbeat."""
        self.life.sweep()

    def backfill(self) -> None:
        """Log the finished trials that have no complete MLflow run (``SessionTracking.backfill``)."""
        self.tracking.backfill()

    def stop(self) -> None:
        """Stop beating (the driver is leaving)."""
        self.life.stop()

    def _parego_value(self, t: optuna.trial.FrozenTrial, proposal: int) -> float:
        """ParEGO: every trial re-scalarised with the weights of this proposal."""
        return (scalarised(t.user_attrs["objective_errors"], self.spec, self.cfg.seed, proposal)
                + float(t.user_attrs.get("penalty", 0.0)))

    def may_ask(self, active: dict[int, ActiveTrial]) -> bool:
        """Room for another trial (``TrialLifecycle.may_ask``)."""
        return self.life.may_ask(active)

    def ask(self) -> ActiveTrial | None:
        """Propose a trial, write its directory and start its first runs (or re-attach to
        the jobs of the lost trial it re-proposes). A trial that cannot start is told FAIL
        with the reason; a trial another driver's filled the budget before is given back
        (None is returned for both)."""
        started_ms = int(time.time() * 1000)  # the trial's MLflow run starts with its proposal
        trial = self.life.ask(self.space.distributions())
        if trial is None:
            return None
        confirming = trial.user_attrs.get(ledger.CONFIRM_ATTR) is not None
        # the sampler's choice, or the original's for a re-proposed trial
        fid = (trial.user_attrs.get(FIDELITY_ATTR) or getattr(self.sampler, "fidelity_of", lambda n: None)(
            trial.number) or (self.spec.ladder[0] if self.multi else self.spec.fidelity))
        trial.set_user_attr(FIDELITY_ATTR, fid)
        fidelity = (confirm.settings_of(trial).fidelity(self.spec.fidelity_spec()) if confirming  # type: ignore[arg-type]
                    else self.fidelities[fid])
        free = {k: trial.params[k] for k in self.space.keys}
        runner = self.runner
        if confirming:  # its runs are longer than the study's by design: their own limit
            conf = confirm.settings_of(trial)
            runner = dataclasses.replace(runner, timeout_s=conf.timeout_of(self.spec.trial_timeout_s,
                                                                           self.spec.fidelity_spec()),
                                         timeout_name="--confirm-timeout-s" if conf.timeout_s is not None else
                                         "the study's trial_timeout_s scaled to the confirmation's protocol "
                                         "(or --confirm-timeout-s)")
        attached = self._reattach(trial, free, fid, runner)
        if attached is not None:
            return attached
        workdir = self.study_dir / f"trial_{trial.number:05d}"
        execution = None
        try:
            try:
                workdir.mkdir(parents=True)  # trial numbers are unique in a study: never reused
            except FileExistsError:  # another driver took the same trial: it is theirs
                self.life.left_to_another(trial, workdir)
                return None
            seed = (confirm.confirm_seed(self.cfg.seed, trial.number) if confirming  # fresh placements
                    else trial_seed(self.cfg.seed, trial.number, self.spec.common_random_numbers))
            trial.set_user_attr("calib_workdir", str(workdir.resolve()))
            trial.set_user_attr("calib_seed", seed)
            full = self.space.full_params(free)
            trial.set_user_attr("table_s1", full.as_dict())
            (workdir / "params.json").write_text(json.dumps(full.as_dict(), indent=2))
            options = ({"paired_rung": self.spec.fidelity_spec().model_copy(update={"transfer": {}})}
                       if confirming else {"band_stop": True})  # the study's rung on the confirmation's placements;
            # a calibration trial may stop once it is out of band (the slurry's early_stop_band_rel)
            stage_trial = self.loaded.stage.make_trial(TrialContext(workdir, self.loaded, fidelity, full,
                                                                    seed, self.lineage, options))
            execution = TrialExecution(stage_trial, runner, f"{self.spec.name}-{trial.number}",
                                       on_submit=self._on_submit(trial, workdir))
            execution.start()
        except Exception as exc:  # a trial that cannot start is a FAIL, not the end of the study
            if execution is not None:
                execution.cancel()
            self.life.fail_start(trial, fid, free, exc, workdir, counted=not confirming)
            return None
        self.life.started(trial, fid, free)
        return ActiveTrial(trial, workdir, free, fid, execution, started_ms=started_ms)

    def enqueue_confirmation(self) -> bool:
        """Queue the confirmation of the best trial (``cfg.confirm``; ``calib.optimize.confirmation``) unless
        one under the same settings has completed, is queued or runs; True when one was queued."""
        conf = self.cfg.confirm
        best = best_trial(self.study)
        if conf is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        if ledger.finished_count(self.study) < self.cfg.n_trials or any(
                t.state == TrialState.RUNNING and not ledger.is_confirmation(t) for t in trials):
            self.emit(Event("info", -1, "other drivers still run trials of the budget: the best set is confirmed by "
                                        "the driver that finishes last (rerun with --confirm once they are done)"))
            return False
        if best is None:
            self.emit(Event("warning", -1, "no completed trial at the target fidelity: nothing to confirm"))
            return False
        if confirm.existing(self.study, best.number, conf) is not None:
            return False
        self.study.enqueue_trial({k: best.params[k] for k in self.space.keys if k in best.params},
                                 user_attrs=confirm.enqueue_attrs(best, conf))
        self.emit(Event("info", -1, f"confirming trial {best.number}'s set at k = {conf.compression} on "
                                       f"{conf.replicates} fresh placement{'s' if conf.replicates > 1 else ''}"))
        return True

    def confirmation_waiting(self) -> bool:
        """A queued confirmation is waiting to be asked."""
        return any(ledger.is_confirmation(t) for t in self.study.get_trials(deepcopy=False,
                                                                              states=(TrialState.WAITING,)))

    def disowned(self, active: dict[int, ActiveTrial]) -> list[ActiveTrial]:
        """Trials another driver declared lost while this one ran them: let go
        (``TrialLifecycle.disowned``)."""
        return self.life.disowned(active)

    def _on_submit(self, trial: optuna.Trial, workdir: Path) -> Callable[[TrialExecution], None]:
        """After each phase is submitted: its checkpoint (for re-attaching), then its jobs in the ledger."""
        def record(ex: TrialExecution) -> None:
            try:
                checkpoint.save(workdir, checkpoint.Checkpoint(ex.trial, ex.runs, ex.jobs),
                                checkpoint.context_of(self.loaded, self.lineage))
            except Exception as exc:
                self.emit(Event("warning", trial.number, f"no checkpoint (a restarted driver will rerun this trial "
                                                         f"instead of re-attaching): {exc.__class__.__name__}: {exc}"))
            trial.set_user_attr("calib_jobs", ex.job_records)
        return record

    def _reattach(self, trial: optuna.Trial, free: dict[str, float], fid: str,
                  runner: Runner | None = None) -> ActiveTrial | None:
        """Pick up the jobs of the lost trial that ``trial`` re-proposes, if they run on a
        backend that outlives its driver (``TrialLifecycle.resume_of``) and a checkpoint says
        where the trial was; None otherwise (the trial then runs afresh)."""
        backend = self.runner.backend
        resume = self.life.resume_of(trial, backend.name)
        if resume is None:
            return None
        jobs = resume["jobs"]
        workdir = Path(resume["workdir"])
        old = trial.user_attrs.get(ledger.REPROPOSED_ATTR)
        try:
            cp = checkpoint.load(workdir, checkpoint.context_of(self.loaded, self.lineage))
        except Exception as exc:
            self.emit(Event("warning", trial.number, f"cannot re-attach to trial {old}'s jobs ({exc.__class__.__name__}: "
                                                     f"{exc}); running its point afresh"))
            return None
        ids = sorted(h.job_id for _, h in cp.jobs.values())
        stray = [j for j in jobs if str(j["job_id"]) not in ids]
        if stray:  # the ledger names jobs the checkpoint does not know (its save failed): do not leave them running
            for j in stray:
                backend.cancel(JobHandle(j["backend"], str(j["job_id"]), Path(j["workdir"])))
            self.emit(Event("warning", trial.number, f"trial {old}'s checkpoint does not name its jobs "
                                                     f"{[j['job_id'] for j in stray]}: cancelled them, running its "
                                                     f"point afresh"))
            return None
        execution = TrialExecution(cp.trial, runner or self.runner, f"{self.spec.name}-{trial.number}", runs=list(cp.runs),
                                   jobs=dict(cp.jobs), on_submit=self._on_submit(trial, workdir))
        trial.set_user_attr("calib_workdir", str(workdir.resolve()))
        trial.set_user_attr("calib_seed", getattr(cp.trial, "seed", None))
        trial.set_user_attr("table_s1", self.space.full_params(free).as_dict())
        trial.set_user_attr("calib_jobs", jobs)
        trial.set_user_attr("calib_reattached", True)
        self.emit(Event("reattached", trial.number, f"{self.life.at(fid)}re-attached to trial {old}'s "
                                                    f"{backend.name} jobs {', '.join(ids)} in {workdir}"))
        return ActiveTrial(trial, workdir, free, fid, execution)

    def tell(self, a: ActiveTrial, outcome: Outcome) -> None:
        """Record a finished trial: ledger first (``TrialLifecycle.tell``), then MLflow
        (``SessionTracking.log_trial``; a tracking error is a warning). A trial another
        driver declared lost meanwhile (this driver missed its heartbeats) is left to the
        trial that re-proposed it."""
        self.life.tell(a, outcome, self.lineage, self.runner.cores,
                       then=lambda told: self.tracking.log_trial(a, told))

    def abandon(self, active: Iterable[ActiveTrial]) -> None:
        """The driver is stopping: cancel each running trial's jobs, mark it FAIL (lost) and
        re-queue its parameters so a resumed study proposes them again (``TrialLifecycle.abandon``)."""
        self.life.abandon(active)

    def close(self, status: str = "FINISHED") -> None:
        """The study's summary on its MLflow parent run, which ends ``status``
        (``SessionTracking.close``)."""
        self.tracking.close(status)
