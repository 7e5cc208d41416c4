"""The optimisation loop: ask (BoTorch via the Optuna ledger) -> advance the running trials
through their stage's runs on a backend -> tell; MLflow logging attached
(``calib.execution.session``).

A failed simulation is a FAIL trial with its reason and the study goes on; an interrupted
driver cancels its jobs and leaves their trials to be re-proposed on resume. Several drivers
may run one study at once: they share its budget, and each re-queues the trials of a driver
that died (its jobs re-attached where they outlive it, on Slurm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import optuna

from sim_backends.backend import Backend
from sim_backends.lammps.install import LammpsInstall

from calib.stages.upstream_state import Lineage
from calib.execution.runner import Runner
from calib.execution.session import StudySession
from calib.execution.session_types import ActiveTrial, Event, LoopConfig, ready_to_ask, trial_seed
from calib.execution.study_dir import claim_study_dir
from calib.study.load import LoadedStudy
from calib.review.tracker import NullTracker, Tracker

__all__ = ["Event", "LoopConfig", "LoopResult", "claim_study_dir", "ready_to_ask", "run_study", "trial_seed"]


@dataclass
class LoopResult:
    study: optuna.Study
    recovered: list[int] = field(default_factory=list)


def run_study(loaded: LoadedStudy, cfg: LoopConfig, backend: Backend, lammps: LammpsInstall,
              tracker: Tracker | None = None, on_event: Callable[[Event], None] | None = None,
              lineage: Lineage | None = None, queue: Sequence[tuple[dict[str, float], dict]] = ()) -> LoopResult:
    """Run (or resume) the study until it has ``cfg.n_trials`` finished trials; a chained
    stage starts every trial from ``lineage``'s state. ``queue``: parameter sets (free
    key -> value, trial attributes) to run first (``calib refine``), enqueued once the
    study is open."""
    runner = Runner(backend, lammps, loaded.spec.resources, loaded.spec.trial_timeout_s)
    session = StudySession(loaded, cfg, runner, tracker or NullTracker(), on_event or (lambda e: None), lineage)
    session.emit(Event("started", -1, "the study is open and tracked"))  # a live view can be offered from here
    for params, attrs in queue:
        session.study.enqueue_trial(params, user_attrs=attrs)
    active: dict[int, ActiveTrial] = {}
    try:
        _drive(session, active, session.may_ask)
        if cfg.confirm is not None:  # the best set at the target protocol (or an interrupted confirmation)
            session.enqueue_confirmation()
            _drive(session, active, lambda act: not act and session.confirmation_waiting())
    except BaseException as exc:  # Ctrl-C, SIGTERM, the circuit breaker, a crash: nothing left RUNNING
        try:
            session.abandon(active.values())
        finally:
            session.stop()
            session.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    session.stop()
    session.close()
    return LoopResult(session.study, session.recovered)


def _drive(session: StudySession, active: dict[int, ActiveTrial],
           may_ask: Callable[[dict[int, ActiveTrial]], bool]) -> None:
    """Ask while ``may_ask``, advance the running trials and tell the finished ones, until
    nothing runs and nothing more may be asked."""
    cfg = session.cfg
    while True:
        session.sweep()  # trials of dead drivers go back to the queue
        for a in session.disowned(active):  # ours, judged lost by another driver: let go
            del active[a.number]
        while may_ask(active):  # ask
            a = session.ask()
            if a is not None:
                active[a.number] = a
        if not active:
            return
        for number, a in list(active.items()):  # advance
            outcome = a.execution.advance()
            if outcome is not None:  # tell
                session.tell(a, outcome)
                del active[number]
        if active:
            time.sleep(cfg.poll_s)
