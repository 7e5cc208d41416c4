"""A trial's life-cycle against the ledger (the Optuna study), for one driver: asked (tagged
with the driver and beating at once; given back when other drivers filled the budget first;
a queued confirmation this driver does not run dropped), started or failed to start (the
circuit breaker on repeated start errors), told COMPLETE or FAIL (unless another driver
declared it lost meanwhile), let go when another driver declared it lost, abandoned (FAIL
and re-queued) when the driver stops, and recovered (FAIL and re-queued) when its driver
died (``sweep``).

``TrialLifecycle`` holds the study, the heartbeat, the recovery and the driver's id; it
writes to the ledger only, and reports to its caller by return values, by the ``emit``
callback (the loop's events) and by the ``failed`` callback (a trial that ended without
running to completion: the caller logs its MLflow run).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from calib import ledger
from calib.core.backend_registry import SURVIVES_DRIVER
from calib.core.errors import StudyHalted
from calib.execution.heartbeat import Heartbeat
from calib.execution.runner import Outcome
from calib.execution.session_types import ActiveTrial, Event, LoopConfig, Told, ready_to_ask
from calib.ledger import FIDELITY_ATTR
from calib.optimize import confirmation as confirm
from calib.stages.base import Run
from calib.stages.upstream_state import Lineage


class TrialLifecycle:
    """See the module docstring. ``failed(number, free, reason, workdir=None, fid=None)``
    is called for each trial that ends without running to completion (could not start,
    abandoned, recovered from a dead driver)."""

    def __init__(self, study: optuna.Study, recovery: ledger.Recovery, cfg: LoopConfig, stop_after_start_failures: int,
                 multi: bool, emit: Callable[[Event], None], failed: Callable[..., None]) -> None:
        self.study, self.recovery, self.cfg = study, recovery, cfg
        self.stop_after_start_failures, self.multi = stop_after_start_failures, multi
        self.emit, self.failed = emit, failed
        self.driver = ledger.driver_id()
        self.heartbeat = Heartbeat(self.study._storage, cfg.heartbeat_s)
        self.recovered: list[int] = []
        self._start_errors: list[str] = []  # why the latest trials could not start (reset by one that did)
        self._last_sweep = -math.inf

    def at(self, fid: str) -> str:
        """The prefix of an event's message about a trial at fidelity ``fid``."""
        if fid == ledger.CONFIRM_FIDELITY:
            return "confirmation: "
        return f"at {fid}: " if self.multi else ""

    def stop(self) -> None:
        """Stop beating (the driver is leaving)."""
        self.heartbeat.stop()

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
            self.failed(lost.number, dict(lost.params), why, fid=lost.user_attrs.get(FIDELITY_ATTR))

    def may_ask(self, active: dict[int, ActiveTrial]) -> bool:
        """Room for another trial: under ``parallel`` running here, under the budget (counting
        every driver's trials) and the proposal may be made (``ready_to_ask``)."""
        return (len(active) < self.cfg.parallel and ledger.budget_count(self.study) < self.cfg.n_trials
                and ready_to_ask(self.study, active, self.cfg.parallel))

    def ask(self, distributions: dict) -> optuna.Trial | None:
        """A trial from the ledger (the sampler's proposal, or a queued point), tagged with
        this driver and beating; None when it was given back (other drivers filled the
        budget first) or is a queued confirmation this driver does not run."""
        t_ask = time.perf_counter()
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for study.optimize
            warnings.simplefilter("ignore", UserWarning)
            trial = self.study.ask(distributions)
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
        return trial

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

    def resume_of(self, trial: optuna.Trial, backend: str) -> dict | None:
        """Where the lost trial that ``trial`` re-proposes ran (``ledger.RESUME_ATTR``: its
        directory and jobs), if its jobs may be re-attached: they run on ``backend``, a
        backend that outlives its driver; None otherwise (the trial then runs afresh)."""
        resume = trial.user_attrs.get(ledger.RESUME_ATTR)
        if not resume or backend not in SURVIVES_DRIVER:
            return None
        jobs = resume.get("jobs") or []
        if not jobs or any(not isinstance(j, dict) or j.get("backend") != backend for j in jobs):
            return None
        return resume

    def left_to_another(self, trial: optuna.Trial, workdir: Path) -> None:
        """Another driver took the same trial (its directory exists): it is theirs."""
        self.heartbeat.discard(trial._trial_id)
        self.emit(Event("warning", trial.number, f"{workdir} exists: another driver runs this trial; "
                                                 "left to it"))

    def fail_start(self, trial: optuna.Trial, fid: str, free: dict[str, float], exc: Exception, workdir: Path,
                   counted: bool) -> None:
        """A trial that cannot start is a FAIL, not the end of the study (unless the circuit
        breaker trips: ``StudyHalted``)."""
        why = f"could not start: {exc.__class__.__name__}: {exc}"
        trial.set_user_attr("fail_reason", why)
        self.study.tell(trial, state=TrialState.FAIL)
        self.heartbeat.discard(trial._trial_id)
        self.emit(Event("fail", trial.number, self.at(fid) + why, counted=counted))
        self.failed(trial.number, free, why, workdir if workdir.exists() else None, fid)
        self._count_start_error(exc, workdir)

    def started(self, trial: optuna.Trial, fid: str, free: dict[str, float]) -> None:
        """The trial's first runs are submitted (the circuit breaker is reset)."""
        self._start_errors.clear()
        self.emit(Event("submitted", trial.number, self.at(fid) + json.dumps({k: round(v, 6) for k, v in free.items()})))

    def _count_start_error(self, exc: Exception, workdir: Path) -> None:
        """The circuit breaker: ``StudyHalted`` once the last ``stop_after_start_failures``
        trials could not start with the same error (its text with the trial's directory and
        numbers taken out, so trial 3's and trial 4's full disk read the same)."""
        text = f"{exc.__class__.__name__}: {exc}".replace(str(workdir), "<trial>")
        self._start_errors.append(re.sub(r"\d+", "#", text))
        k = self.stop_after_start_failures
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

    def tell(self, a: ActiveTrial, outcome: Outcome, lineage: Lineage | None, cores: Callable[[Run], int],
             then: Callable[[Told], None]) -> None:
        """Record a finished trial in the ledger (``cores(run)``: the cores a run used),
        then call ``then`` with how it was told (its MLflow run). A trial another driver
        declared lost meanwhile (this driver missed its heartbeats) is left to the trial
        that re-proposed it."""
        try:
            then(self._tell(a, outcome, lineage, cores))
        except (UpdateFinishedTrialError, ValueError):
            if self._still_running(a):
                raise
            a.told = True
            self.emit(Event("warning", a.number, "another driver declared this trial lost (no heartbeat within the "
                                                 "grace period) and re-queued it; its result here is dropped"))
        finally:
            self.heartbeat.discard(a.trial._trial_id)

    def _tell(self, a: ActiveTrial, outcome: Outcome, lineage: Lineage | None, cores: Callable[[Run], int]) -> Told:
        t, ex, score, given = a.trial, a.execution, outcome.score, outcome
        if lineage is not None:
            t.set_user_attr("lineage", lineage.as_dict())
        wall = ex.wall_s
        first = ex.runs[0].key if ex.runs else ""
        core_s = float(sum(w * cores(r) for r in ex.runs if (w := wall.get(r.key)) is not None))
        t.set_user_attr("core_s", core_s)
        t.set_user_attr("wall_s", wall.get(first))
        t.set_user_attr("run_wall_s", wall)
        partial: dict[str, float] = {}
        metrics: dict[str, float] = {}
        try:
            if score is not None:
                metrics = dict(score.metrics)
                for k, v in score.ledger_attrs().items():
                    t.set_user_attr(k, v)
            else:
                partial = ex.trial.partial_observables()
                if partial:  # e.g. a failed shear run keeps the slurry's density
                    t.set_user_attr("observables", partial)
        except Exception as exc:  # a stage whose results cannot be stored fails its trial, not the study
            outcome = Outcome(None, f"could not record the results: {exc.__class__.__name__}: {exc}")
            score = None
        if score is not None and outcome.reason is None and not math.isfinite(score.value):
            outcome = Outcome(score, f"the objective is not a finite number ({score.value}): the trial's "
                                     "observables could not be scored")
        if not outcome.failed:
            assert score is not None
            self.study.tell(t, score.value)
            state = "COMPLETE"
            self.emit(Event("complete", a.number, self.at(a.fidelity) + score.summary, score.value,
                            counted=not ledger.is_confirmation(t)))
        else:
            t.set_user_attr("fail_reason", outcome.why)
            self.study.tell(t, state=TrialState.FAIL)
            state = "FAIL"
            self.emit(Event("fail", a.number, self.at(a.fidelity) + outcome.why, counted=not ledger.is_confirmation(t)))
        a.told = True
        return Told(given, outcome, state, score, partial, core_s, metrics)

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
                self.failed(a.number, a.params, why, a.workdir, a.fidelity)
            except Exception:  # clean up the other trials whatever happens to this one
                continue
            finally:
                self.heartbeat.discard(a.trial._trial_id)
