"""One driver's session on a study: everything ``loop.run_study`` asks, advances and tells
through.

``StudySession`` opens (or resumes) the ledger study with its sampler, starts MLflow
tracking, claims the study's run directory, recovers trials a dead driver left RUNNING,
and then: ``ask`` proposes a trial, writes its directory and starts its first runs;
``tell`` records a finished trial in the ledger first (so a completed trial is never lost)
and then in MLflow; ``abandon`` cancels the running trials of an interrupted driver and
re-queues their parameters; ``close`` writes the study's summary to MLflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from objectives.scalarise import parego_weights
from sim_backends.backend import JobHandle
from sim_backends.lammps.outputs import lammps_version

from calib import ledger
from calib.execution import checkpoint
from calib.optimize import confirmation as confirm
from calib.core.backend_registry import SURVIVES_DRIVER
from calib.optimize.confirmation import Confirmation
from calib.core.errors import InputError, StudyHalted
from calib.study.identity import study_ident
from calib.ledger import FIDELITY_ATTR, best_trial
from calib.stages.upstream_state import Lineage
from calib.review.summary import pareto
from calib.execution.runner import Outcome, Runner, TrialExecution
from calib.optimize.sampler_registry import make_sampler
from calib.study.space import ParameterSpace
from calib.stages import TrialContext
from calib.stages.base import scalarised
from calib.study.load import LoadedStudy
from calib.execution.heartbeat import Heartbeat
from calib.study.target_rows import target_rows
from calib.review.tracker import Tracker
from calib.review.tracking_records import RECORD_FILE, BestRecord, DatasetRecord, TrialRecord, objective_metric

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Event:
    """Progress of the loop: kind in submitted / complete / fail / recovered / warning."""

    kind: str
    trial: int
    message: str = ""
    value: float | None = None
    counted: bool = True
    """The trial counts against the budget (a confirmation does not)."""


@dataclass(frozen=True)
class LoopConfig:
    """Where and how much: storage URL, run directory root, trial budget, concurrency."""

    storage: str
    runs_dir: Path
    n_trials: int
    parallel: int
    seed: int
    poll_s: float = 0.2
    heartbeat_s: int = 30
    """Seconds between two heartbeats of each running trial (Optuna's ``heartbeat_interval``)."""
    grace_s: int = 120
    """A trial without a heartbeat for this long belongs to a dead driver (``grace_period``)."""
    confirm: Confirmation | None = None
    """Confirm the best set at the target protocol once the budget is spent (``calib.optimize.confirmation``)."""


@dataclass
class ActiveTrial:
    """A running trial: the ledger's trial, its directory, free parameters, fidelity and
    the execution of its stage trial."""

    trial: optuna.Trial
    workdir: Path
    params: dict[str, float]
    fidelity: str
    execution: TrialExecution
    told: bool = False
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    """When the driver proposed (or re-attached to) the trial: its MLflow run starts here."""

    @property
    def number(self) -> int:
        return self.trial.number


def trial_seed(study_seed: int, number: int, common: bool = True) -> int:
    """LAMMPS random seed of trial ``number`` (placement, velocities, Langevin): one per study
    under common random numbers (``StudyBase.common_random_numbers``), else one per trial."""
    return study_seed * 10_007 + (0 if common else number) + 1


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


@contextlib.contextmanager
def setup_lock(runs_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``<runs_dir>/.calib_setup.lock`` (``flock``): drivers started
    together on one run directory create the Optuna and MLflow stores (their schema
    migrations) one after the other."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".calib_setup.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
            self._start_tracking(uid, lineage)
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
        self.driver = ledger.driver_id()
        self.heartbeat = Heartbeat(self.study._storage, cfg.heartbeat_s)
        self.recovered: list[int] = []
        self._series_next = 0  # the best-so-far series is logged up to here
        self._start_errors: list[str] = []  # why the latest trials could not start (reset by one that did)
        self._last_sweep = -math.inf
        self.sweep()
        self.backfill()

    def _start_tracking(self, uid: str, lineage: Lineage | None) -> None:
        spec, loaded = self.spec, self.loaded
        self.base_tags = {"stage": spec.stage, "fidelity": spec.fidelity, "dataset": spec.dataset, "study": spec.name,
                          **(lineage.tags() if lineage else {})}
        self.objective_metric = objective_metric(spec.objective.scalarisation)
        try:
            self.tracker.start_study(spec.name, tags={**self.base_tags, "storage": self.cfg.storage,
                                                      "calib.study_uid": uid},
                                     params={"study_file": str(loaded.path), "seed": str(self.cfg.seed),
                                             "fixed": json.dumps(self.space.fixed, sort_keys=True),
                                             **loaded.stage.study_attrs(loaded)},
                                     objective=self.objective_metric,
                                     dataset=DatasetRecord(loaded.dataset.name, str(loaded.dataset_path.resolve()),
                                                           tuple(target_rows(loaded))),
                                     description=experiment_description(spec, self.objective_metric),
                                     stale_s=float(self.cfg.grace_s))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError("--tracking-uri", "uri", f"cannot use the MLflow store: {exc.__class__.__name__}: "
                                                      f"{first}") from exc

    def sweep(self) -> None:
        """Recover the trials of dead drivers (any driver of the study may): each is marked
        FAIL and its point re-queued (``ledger.Recovery``). Runs at most once a heartbeat."""
        now = time.monotonic()
        if now - self._last_sweep < self.cfg.heartbeat_s:
            return
        self._last_sweep = now
        for lost in self.recovery.sweep(self.study):
            self.recovered.append(lost.number)
            why = lost.user_attrs.get("fail_reason") or (f"driver lost: no heartbeat for over {self.cfg.grace_s} s "
                                                         f"(driver {lost.user_attrs.get('calib_driver', '?')})")
            self.emit(Event("recovered", lost.number, f"{why}: marked FAIL, its point re-queued"))
            self._track_failure(lost.number, dict(lost.params), why, fid=lost.user_attrs.get(FIDELITY_ATTR))

    def backfill(self) -> None:
        """Log the finished trials that have no MLflow run (the tracking server was down
        when they finished, or their driver died first), and complete the runs whose logging
        broke off (the driver was killed, or MLflow failed, while it wrote them): from the
        ``TrialRecord`` kept in the trial's directory, else from the ledger. Trials finished
        within the grace period are left to a driver that may still be logging them."""
        try:
            logged = self.tracker.logged_trials()
        except Exception as exc:
            self.emit(Event("warning", -1, f"MLflow: could not list the logged trials: {exc}"))
            return
        if logged is None:
            return
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=self.cfg.grace_s)
        missing = [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()
                   and (t.number not in logged or logged[t.number] is not None)
                   and t.datetime_complete is not None and t.datetime_complete < cutoff]
        done = []
        for t in missing:
            try:
                self.tracker.log_trial(self._record_of(t), run_id=logged.get(t.number))
                done.append(t.number)
            except Exception as exc:
                self.emit(Event("warning", t.number, f"MLflow logging failed: {exc}"))
        if done:
            self.emit(Event("warning", -1, f"trial{'s' if len(done) > 1 else ''} {', '.join(map(str, done))} had "
                                           "no complete MLflow run (the "
                                           "tracking store was unreachable, or their driver stopped while logging): "
                                           "logged now"))
            try:
                self._update_best()
            except Exception as exc:
                self.emit(Event("warning", -1, f"MLflow logging failed: {exc}"))

    def _record_of(self, t: optuna.trial.FrozenTrial) -> TrialRecord:
        """A finished trial's MLflow record: the one its driver kept in its directory, else
        what the ledger has (parameters, objective, observables, the reason of a failure)."""
        workdir = Path(t.user_attrs["calib_workdir"]) if t.user_attrs.get("calib_workdir") else None
        kept = workdir / RECORD_FILE if workdir else None
        if kept is not None and kept.exists():
            r = TrialRecord.from_json(kept.read_text())
            return dataclasses.replace(r, tags={**r.tags, "calib.logged_late": "from the trial's record"})
        state = "COMPLETE" if t.state == TrialState.COMPLETE else "FAIL"
        metrics = {k: float(v) for k, v in (t.user_attrs.get("observables") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if state == "COMPLETE" and t.value is not None:
            metrics[self.objective_metric] = float(t.value)
        tags = {**self.base_tags, "fidelity": t.user_attrs.get(FIDELITY_ATTR) or self.spec.fidelity,
                "calib.logged_late": "from the ledger"}
        if state == "FAIL":
            tags.update({"fail_reason": str(t.user_attrs.get("fail_reason") or "unknown failure")[:5000],
                         "calib.flags": "FAILED", "calib.equilibrated": "n/a"})
        files = tuple(p for p in workdir.rglob("*") if p.name in ("log.lammps", "params.json")
                      or p.name.startswith("in.")) if workdir and workdir.exists() else ()
        return TrialRecord(t.number, state, {**self.space.fixed, **{k: float(v) for k, v in t.params.items()}},
                           metrics, tags, files, artifact_root=workdir)

    def stop(self) -> None:
        """Stop beating (the driver is leaving)."""
        self.heartbeat.stop()

    def _parego_value(self, t: optuna.trial.FrozenTrial, proposal: int) -> float:
        """ParEGO: every trial re-scalarised with the weights of this proposal."""
        return (scalarised(t.user_attrs["objective_errors"], self.spec, self.cfg.seed, proposal)
                + float(t.user_attrs.get("penalty", 0.0)))

    def _at(self, fid: str) -> str:
        if fid == ledger.CONFIRM_FIDELITY:
            return "confirmation: "
        return f"at {fid}: " if self.multi else ""

    def may_ask(self, active: dict[int, ActiveTrial]) -> bool:
        """Room for another trial: under ``parallel`` running here, under the budget (counting
        every driver's trials) and the proposal may be made (``ready_to_ask``)."""
        return (len(active) < self.cfg.parallel and ledger.budget_count(self.study) < self.cfg.n_trials
                and ready_to_ask(self.study, active, self.cfg.parallel))

    def ask(self) -> ActiveTrial | None:
        """Propose a trial, write its directory and start its first runs (or re-attach to
        the jobs of the lost trial it re-proposes). A trial that cannot start is told FAIL
        with the reason; a trial another driver's filled the budget before is given back
        (None is returned for both)."""
        t_ask = time.perf_counter()
        started_ms = int(time.time() * 1000)  # the trial's MLflow run starts with its proposal
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for study.optimize
            warnings.simplefilter("ignore", UserWarning)
            trial = self.study.ask(self.space.distributions())
        trial.set_user_attr("calib_driver", self.driver)  # tagged and beating at once: never mistaken for lost
        self.heartbeat.add(trial._trial_id)
        trial.set_user_attr("proposal_s", time.perf_counter() - t_ask)
        confirming = trial.user_attrs.get(ledger.CONFIRM_ATTR) is not None
        if not confirming and not ledger.within_budget(self.study, trial.number, self.cfg.n_trials):
            self._give_back(trial)
            return None
        if confirming and (self.cfg.confirm is None or confirm.duplicate(self.study, trial)):
            self._drop_confirmation(trial)
            return None
        # the sampler's choice, or the original's for a re-proposed trial
        fid = (trial.user_attrs.get(FIDELITY_ATTR) or getattr(self.sampler, "fidelity_of", lambda n: None)(
            trial.number) or (self.spec.ladder[0] if self.multi else self.spec.fidelity))
        trial.set_user_attr(FIDELITY_ATTR, fid)
        fidelity = (confirm.settings_of(trial).fidelity(self.spec.fidelity_spec()) if confirming  # type: ignore[arg-type]
                    else self.fidelities[fid])
        free = {k: trial.params[k] for k in self.space.keys}
        runner = self.runner
        if confirming:  # its runs are longer than the study's by design: their own limit
            runner = dataclasses.replace(runner, timeout_s=confirm.settings_of(trial).timeout_of(
                self.spec.trial_timeout_s, self.spec.fidelity_spec()))
        attached = self._reattach(trial, free, fid, runner)
        if attached is not None:
            return attached
        workdir = self.study_dir / f"trial_{trial.number:05d}"
        execution = None
        try:
            try:
                workdir.mkdir(parents=True)  # trial numbers are unique in a study: never reused
            except FileExistsError:  # another driver took the same trial: it is theirs
                self.heartbeat.discard(trial._trial_id)
                self.emit(Event("warning", trial.number, f"{workdir} exists: another driver runs this trial; "
                                                         "left to it"))
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
            why = f"could not start: {exc.__class__.__name__}: {exc}"
            trial.set_user_attr("fail_reason", why)
            self.study.tell(trial, state=TrialState.FAIL)
            self.heartbeat.discard(trial._trial_id)
            self.emit(Event("fail", trial.number, self._at(fid) + why, counted=not confirming))
            self._track_failure(trial.number, free, why, workdir if workdir.exists() else None, fid)
            self._count_start_error(exc, workdir)
            return None
        self._start_errors.clear()
        self.emit(Event("submitted", trial.number, self._at(fid) + json.dumps({k: round(v, 6) for k, v in free.items()})))
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

    def _count_start_error(self, exc: Exception, workdir: Path) -> None:
        """The circuit breaker: ``StudyHalted`` once the last ``stop_after_start_failures``
        trials could not start with the same error (its text with the trial's directory and
        numbers taken out, so trial 3's and trial 4's full disk read the same)."""
        text = f"{exc.__class__.__name__}: {exc}".replace(str(workdir), "<trial>")
        self._start_errors.append(re.sub(r"\d+", "#", text))
        k = self.spec.stop_after_start_failures
        last = self._start_errors[-k:]
        if len(last) == k and len(set(last)) == 1:
            raise StudyHalted(f"{k} trials in a row could not start with the same error "
                              f"(stop_after_start_failures: {k}); the last: {exc.__class__.__name__}: {exc}")

    def _still_running(self, a: ActiveTrial) -> bool:
        """Whether ``a`` is still RUNNING in the ledger (not failed by another driver that
        found its heartbeat stale)."""
        return self.study._storage.get_trial(a.trial._trial_id).state == TrialState.RUNNING

    def disowned(self, active: dict[int, ActiveTrial]) -> list[ActiveTrial]:
        """Trials another driver declared lost while this one ran them (its heartbeats did
        not reach the database within the grace period; the heartbeat thread notices). They
        are left alone: their point was re-queued, and on Slurm their jobs may be re-attached
        by another driver already."""
        gone = self.heartbeat.lost()
        out = [a for a in active.values() if a.trial._trial_id in gone]
        for a in out:
            a.told = True
            self.heartbeat.discard(a.trial._trial_id)
            self.emit(Event("warning", a.number, "another driver declared this trial lost (no heartbeat within the "
                                                 "grace period) and re-queued it; this driver lets it go"))
        return out

    def _give_back(self, trial: optuna.Trial) -> None:
        """Drivers raced for the last slot and this one lost: the trial is marked lost (it
        does not count) and, if it re-proposed a lost point, that point is queued again."""
        attrs = {k: v for k, v in trial.user_attrs.items() if k in (ledger.REPROPOSED_ATTR, ledger.RESUME_ATTR,
                                                                     *ledger.CARRIED_ATTRS)}
        trial.set_user_attr("fail_reason", "not run: other drivers filled the trial budget first")
        trial.set_user_attr("calib_lost", True)
        self.study.tell(trial, state=TrialState.FAIL)
        self.heartbeat.discard(trial._trial_id)
        if attrs.get(ledger.REPROPOSED_ATTR) is not None or attrs.get(ledger.MANUAL_ATTR):
            self.study.enqueue_trial(dict(trial.params), user_attrs=attrs)

    def _drop_confirmation(self, trial: optuna.Trial) -> None:
        """A queued confirmation this driver does not run: it was started without
        ``--confirm`` (an interrupted confirmation is left for a driver that confirms), or
        another driver runs or ran the same one. Marked lost, not queued again: a driver
        with ``--confirm`` queues a new one if none completed."""
        why = ("not run: another driver runs or ran the same confirmation" if self.cfg.confirm is not None
               else "not run: queued by an earlier --confirm run; rerun with --confirm to confirm")
        trial.set_user_attr("fail_reason", why)
        trial.set_user_attr("calib_lost", True)
        self.study.tell(trial, state=TrialState.FAIL)
        self.heartbeat.discard(trial._trial_id)

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
        backend that outlives its driver and a checkpoint says where the trial was; None
        otherwise (the trial then runs afresh)."""
        resume = trial.user_attrs.get(ledger.RESUME_ATTR)
        backend = self.runner.backend
        if not resume or backend.name not in SURVIVES_DRIVER:
            return None
        jobs = resume.get("jobs") or []
        if not jobs or any(not isinstance(j, dict) or j.get("backend") != backend.name for j in jobs):
            return None
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
        self.emit(Event("reattached", trial.number, f"{self._at(fid)}re-attached to trial {old}'s "
                                                    f"{backend.name} jobs {', '.join(ids)} in {workdir}"))
        return ActiveTrial(trial, workdir, free, fid, execution)

    def tell(self, a: ActiveTrial, outcome: Outcome) -> None:
        """Record a finished trial: ledger first, then MLflow (a tracking error is a warning).
        A trial another driver declared lost meanwhile (this driver missed its heartbeats)
        is left to the trial that re-proposed it."""
        try:
            self._tell(a, outcome)
        except (UpdateFinishedTrialError, ValueError):
            if self._still_running(a):
                raise
            a.told = True
            self.emit(Event("warning", a.number, "another driver declared this trial lost (no heartbeat within the "
                                                 "grace period) and re-queued it; its result here is dropped"))
        finally:
            self.heartbeat.discard(a.trial._trial_id)

    def _tell(self, a: ActiveTrial, outcome: Outcome) -> None:
        t, ex, score = a.trial, a.execution, outcome.score
        if self.lineage is not None:
            t.set_user_attr("lineage", self.lineage.as_dict())
        main_log = next((r.workdir / r.log for r in ex.runs if r.argv is None), a.workdir / "log.lammps")
        log_text = main_log.read_text(errors="replace") if main_log.exists() else ""
        tags = {**self.base_tags, "fidelity": a.fidelity, "lammps_version": lammps_version(log_text) or "unknown"}
        wall = ex.wall_s
        first = ex.runs[0].key if ex.runs else ""
        core_s = float(sum(w * self.runner.cores(r) for r in ex.runs if (w := wall.get(r.key)) is not None))
        metrics: dict[str, float] = {"wall_time_s": wall.get(first, math.nan),
                                     "wall_time_total_s": float(sum(wall.values())), "core_s": core_s}
        t.set_user_attr("core_s", core_s)
        t.set_user_attr("wall_s", wall.get(first))
        t.set_user_attr("run_wall_s", wall)
        artifacts = [a.workdir / "params.json"] + [r.workdir / f for r in ex.runs for f in r.artifacts]
        try:
            if score is not None:
                metrics.update(score.metrics)
                for k, v in score.ledger_attrs().items():
                    t.set_user_attr(k, v)
                tags.update({k: str(v) for k, v in score.attrs.items() if isinstance(v, (str, bool))})
                if score.stopped:
                    tags[f"calib.{ledger.STOPPED_ATTR}"] = score.stopped[:5000]
                artifacts.extend(p for p in score.plots if p.exists())
            else:
                partial = ex.trial.partial_observables()
                if partial:  # e.g. a failed shear run keeps the slurry's density
                    metrics.update(partial)
                    t.set_user_attr("observables", partial)
        except Exception as exc:  # a stage whose results cannot be stored fails its trial, not the study
            outcome = Outcome(None, f"could not record the results: {exc.__class__.__name__}: {exc}")
            score = None
        if score is not None and outcome.reason is None and not math.isfinite(score.value):
            outcome = Outcome(score, f"the objective is not a finite number ({score.value}): the trial's "
                                     "observables could not be scored")
        if not outcome.failed:
            assert score is not None
            metrics[self.objective_metric] = score.value
            self.study.tell(t, score.value)
            state = "COMPLETE"
            self.emit(Event("complete", a.number, self._at(a.fidelity) + score.summary, score.value,
                            counted=not ledger.is_confirmation(t)))
        else:
            t.set_user_attr("fail_reason", outcome.why)
            self.study.tell(t, state=TrialState.FAIL)
            state = "FAIL"
            tags["fail_reason"] = outcome.why[:5000]
            self.emit(Event("fail", a.number, self._at(a.fidelity) + outcome.why, counted=not ledger.is_confirmation(t)))
        a.told = True
        tags.update(self._review_tags(a))
        tags.update(flag_tags(score, state, tags))
        record = TrialRecord(a.number, state, {**self.space.fixed, **a.params}, metrics, tags, tuple(artifacts),
                             artifact_root=a.workdir, start_ms=a.started_ms)
        try:  # kept first: if MLflow cannot take it now, a later driver logs it from here (``backfill``)
            (a.workdir / RECORD_FILE).write_text(record.to_json())
        except Exception as exc:
            self.emit(Event("warning", a.number, f"could not keep the trial's MLflow record: {exc}"))
        try:
            run_id = self.tracker.log_trial(record)
            self._update_best()
        except Exception as exc:  # tracking is an attachment: the ledger already has the trial
            self.emit(Event("warning", a.number, f"MLflow logging failed: {exc}"))
        else:
            if run_id:
                (a.workdir / "mlflow_run_id").write_text(run_id + "\n")

    def _review_tags(self, a: ActiveTrial) -> dict[str, str]:
        """What a reviewer needs on a trial's run: how it was proposed, which free keys sit
        at a bound (within 1 % of the range), the free keys and their bounds."""
        attrs = a.trial.user_attrs
        kind = ledger.proposal_kind(attrs, a.number, self.spec.optimizer.sampler, self.spec.optimizer.n_initial)
        at_bound = []
        for axis in self.space.axes:
            v = a.params.get(axis.key)
            if v is None:
                continue
            u = axis.to_unit(v)  # the search's own scale (log for log axes)
            if not 0.0 <= u <= 1.0:
                continue  # outside the bounds (a manual set): flagged as such
            if u <= 0.01:
                at_bound.append(f"{axis.key}=low")
            elif u >= 0.99:
                at_bound.append(f"{axis.key}=high")
        return {"calib.proposal": kind, "calib.at_bound": ", ".join(at_bound) or "none",
                "calib.workdir": str(a.workdir),
                "calib.outside_bounds": ", ".join(attrs.get(ledger.OUTSIDE_ATTR) or []) or "none",
                "calib.free_keys": ", ".join(self.space.keys),
                "calib.bounds": ", ".join(f"{x.key}=[{x.low:g}, {x.high:g}]{' log' if x.log else ''}"
                                          for x in self.space.axes)}

    def _update_best(self) -> None:
        """The parent run's view of the best trial so far (``Tracker.update_best``), with
        the best-so-far series at step n (the best of the trials numbered up to n) logged
        once trials 0..n have all finished, so that it never changes afterwards."""
        best = best_trial(self.study)
        if best is None:
            return
        target = set(t.number for t in ledger.at_target(self.study))
        series, running_best = [], math.inf
        for t in self.study.get_trials(deepcopy=False):
            if not t.state.is_finished():
                break  # the prefix of finished trials ends here
            if t.number in target and t.value is not None:
                running_best = min(running_best, float(t.value))
            if t.number >= self._series_next and math.isfinite(running_best):
                series.append((t.number, running_best))
            self._series_next = max(self._series_next, t.number + 1)
        obs = {k: (float(v), None) for k, v in (best.user_attrs.get("observables") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for name in self.spec.objective.targets:
            target = self.loaded.dataset.targets.get(name)
            if target is not None:  # the best trial's value next to its target
                sim = ((best.user_attrs.get("errors") or {}).get(name) or {}).get("simulated")
                obs[name] = (float(sim) if isinstance(sim, (int, float)) else None, target.value)  # type: ignore
        step = max(t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished())
        checked = confirm.summary(self.study, best.number)
        self.tracker.update_best(BestRecord(best.number, float(best.value), dict(best.user_attrs.get("table_s1") or {}),
                                            obs, step, confirm.one_line(checked) if checked else None), series)

    def abandon(self, active: Iterable[ActiveTrial]) -> None:
        """The driver is stopping: cancel each running trial's jobs, mark it FAIL (lost) and
        re-queue its parameters so a resumed study proposes them again."""
        why = "interrupted: the driver stopped while the trial ran"
        for a in active:
            if a.told:  # interrupted while its MLflow run was written: the ledger has it
                continue
            try:
                if not self._still_running(a):  # declared lost and re-queued: its jobs may be another driver's now
                    continue
                a.execution.cancel()
                a.trial.set_user_attr("fail_reason", why)
                a.trial.set_user_attr("calib_lost", True)
                self.study.tell(a.trial, state=TrialState.FAIL)
                carried = {k: a.trial.user_attrs[k] for k in ledger.CARRIED_ATTRS if k in a.trial.user_attrs}
                self.study.enqueue_trial(dict(a.params), user_attrs={**carried, ledger.REPROPOSED_ATTR: a.number,
                                                                     FIDELITY_ATTR: a.fidelity})
                self._track_failure(a.number, a.params, why, a.workdir, a.fidelity)
            except Exception:  # clean up the other trials whatever happens to this one
                continue
            finally:
                self.heartbeat.discard(a.trial._trial_id)

    def close(self, status: str = "FINISHED") -> None:
        """The study's summary on its MLflow parent run, which ends ``status`` (FINISHED;
        KILLED when the driver was interrupted, FAILED when it stopped on an error). Every
        step is guarded: the parent run is ended even when the ledger cannot be read."""
        study = self.study
        try:
            self._update_best()  # the series' last points (trials other drivers finished)
        except Exception as exc:
            self.emit(Event("warning", -1, f"MLflow logging failed: {exc}"))
        metrics: dict[str, float] = {}
        files: dict[str, str] = {}
        try:
            front = pareto(study)
            lost = ledger.lost_numbers(study.get_trials(deepcopy=False))
            counted = [t for t in study.get_trials(deepcopy=False) if not ledger.is_confirmation(t)]
            metrics = {"pareto_size": float(len(front)),
                       "trials_complete": float(sum(1 for t in counted if t.state == TrialState.COMPLETE)),
                       "trials_failed": float(sum(1 for t in counted if t.state == TrialState.FAIL
                                                  and t.number not in lost))}
            files = {"pareto.json": json.dumps(front, indent=2)}
            checked = confirm.summary(study)
            if checked is not None:  # the best set at the target protocol, next to its calibrated value
                files["confirmation.json"] = json.dumps(checked, indent=2, default=str)
                for name, row in checked["values"].items():
                    if isinstance(row.get("confirmed"), (int, float)):
                        metrics[f"confirmed.{name}"] = float(row["confirmed"])
                    if isinstance(row.get("confirmed_vs_calibrated_rel"), (int, float)):
                        metrics[f"confirmed_vs_calibrated_rel.{name}"] = float(row["confirmed_vs_calibrated_rel"])
        except Exception as exc:
            self.emit(Event("warning", -1, f"the study's summary could not be read from the ledger: {exc}"))
        if status == "FINISHED":
            self._posterior(metrics, files)
        try:
            self.tracker.end_study(metrics, files=files, status=status)
        except Exception as exc:  # tracking is an attachment: the ledger has the study
            self.emit(Event("warning", -1, f"MLflow logging of the study's summary failed: {exc}"))

    def _posterior(self, metrics: dict[str, float], files: dict[str, str]) -> None:
        """The posterior of the free keys (``calib.optimize.posterior``): kept on the study
        (``ledger.POSTERIOR_ATTR``, for the summary and ``--json``) and on the MLflow parent
        run (``posterior.json``, metrics ``posterior.<key>.{low,median,high}``). Skipped, with
        the reason kept, when the study has too few target trials or no target."""
        if not self.spec.optimizer.posterior.enabled:
            return
        from calib.optimize import posterior

        try:
            post = posterior.of_study(self.study, self.space, self.loaded)
        except ValueError as exc:
            self.study.set_user_attr(ledger.POSTERIOR_ATTR, {"not_computed": str(exc)})
            return
        except Exception as exc:  # the model could not be fitted: the study is still complete
            self.emit(Event("warning", -1, f"the posterior of the free keys could not be computed: {exc}"))
            return
        record = post.as_dict()
        self.study.set_user_attr(ledger.POSTERIOR_ATTR, record)
        files["posterior.json"] = json.dumps(record, indent=2)
        for i in post.intervals:
            metrics.update({f"posterior.{i.key}.low": i.low, f"posterior.{i.key}.median": i.median,
                            f"posterior.{i.key}.high": i.high})
        metrics["posterior.directions_not_separated"] = float(len(post.ridges))

    def _track_failure(self, number: int, free: dict[str, float], reason: str, workdir: Path | None = None,
                       fid: str | None = None) -> None:
        """An MLflow run for a trial that ended without running to completion."""
        try:
            files = tuple(p for p in workdir.rglob("*") if p.name in ("log.lammps", "characterise.log")
                          or p.name.startswith("in.")) if workdir else ()
            self.tracker.log_trial(TrialRecord(number, "FAIL", {**self.space.fixed, **free}, {},
                                               {**self.base_tags, "fidelity": fid or self.spec.fidelity,
                                                "fail_reason": reason[:5000], "calib.flags": "FAILED",
                                                "calib.equilibrated": "n/a"}, files, artifact_root=workdir))
        except Exception as exc:
            self.emit(Event("warning", number, f"MLflow logging failed: {exc}"))


def flag_tags(score, state: str, tags: dict[str, str]) -> dict[str, str]:
    """What a reviewer must not miss on a trial's run: ``calib.equilibrated`` (yes / NO /
    n/a) and ``calib.flags``, a short list (failed, not equilibrated, outside the bounds, at a
    bound) or ``none``."""
    flags = []
    if state != "COMPLETE":
        flags.append("FAILED")
    eq = "n/a" if score is None else ("yes" if score.equilibrated else "NO")
    if eq == "NO":
        flags.append("not equilibrated")
    if tags.get("calib.outside_bounds", "none") != "none":
        flags.append(f"outside bounds ({tags['calib.outside_bounds']})")
    if tags.get("calib.at_bound", "none") != "none":
        flags.append(f"at bound ({tags['calib.at_bound']})")
    if score is not None and score.stopped:  # slurry.early_stop_band_rel: never the study's answer
        flags.append("stopped early (above the band)")
    return {"calib.equilibrated": eq, "calib.flags": "; ".join(flags) or "none"}


def experiment_description(spec, objective: str) -> str:
    """The MLflow experiment's description (markdown): how to read a study's runs."""
    targets = ", ".join(spec.objective.targets)
    return (f"**calib study `{spec.name}`**: stage {spec.stage}, dataset `{spec.dataset}`, fidelity {spec.fidelity}, "
            f"{spec.objective.scalarisation} of {targets}.\n\n"
            f"- The run named `{spec.name}` is the study: tag `calib.best_trial` and its link `calib.best_run`, "
            "tags `best.<key>` (Table S1), metrics `best.<observable>` next to `target.<observable>`, "
            f"the series `best_{objective}` (best so far by trial number) and `trial_{objective}`; "
            "its artifacts hold `report/report.html` (`calib report`).\n"
            f"- Each trial is a nested run: metric `{objective}` (lower is better), tags `calib.proposal` "
            "(initial design, model, manual), `calib.flags`, `calib.equilibrated`, `calib.at_bound`, "
            "`calib.bounds`; artifacts `log.lammps.txt` and `in.*.txt` preview in the browser, `fail_reason.txt` "
            "on failed trials, `system.data`, `params.json` and `final.restart` rerun it.\n"
            "- The targets (value, unit, uncertainty, provenance) are the runs' dataset input `targets`.\n"
            f"- Sort the runs by `metrics.{objective}` ascending; filter `tags.calib.role = 'trial'`.")


def ready_to_ask(study: optuna.Study, active: dict[int, ActiveTrial], lag: int) -> bool:
    """The next proposal may be made once every trial numbered <= next - lag has finished
    (an enqueued re-proposal has its parameters already and may always start)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    horizon = len(trials) - lag
    return all(n > horizon for n in active)
