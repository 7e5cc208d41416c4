"""The small types a study session and its parts pass around: the loop's events (``Event``),
its settings (``LoopConfig``), a running trial (``ActiveTrial``), how the ledger told a
finished one (``Told``), a trial's LAMMPS seed (``trial_seed``) and when the next proposal
may be made (``ready_to_ask``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from calib.execution.runner import Outcome, TrialExecution
from calib.optimize.confirmation import Confirmation
from calib.stages.base import Score


@dataclass(frozen=True)
class Event:
    """Progress of the loop: kind in started (the study is open and its tracking started) /
    submitted / complete / fail / recovered / reattached / warning / info."""

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


@dataclass(frozen=True)
class Told:
    """How the ledger recorded a finished trial (``TrialLifecycle.tell``), for its MLflow run.

    given: the outcome the trial ended with. outcome: the one told (a score whose results
    could not be stored, or whose objective is not finite, fails the trial). state: COMPLETE
    or FAIL. score: the score stored (None when none was). partial: what a trial that ended
    without a score measured (kept on the FAIL trial). core_s: the core-seconds of its runs.
    metrics: the score's MLflow metrics, read with its results (a score whose metrics cannot
    be read fails the trial, as one whose results cannot be stored)."""

    given: Outcome
    outcome: Outcome
    state: str
    score: Score | None
    partial: dict[str, float]
    core_s: float
    metrics: dict[str, float]


def trial_seed(study_seed: int, number: int, common: bool = True) -> int:
    """LAMMPS random seed of trial ``number`` (placement, velocities, Langevin): one per study
    under common random numbers (``StudyBase.common_random_numbers``), else one per trial."""
    return study_seed * 10_007 + (0 if common else number) + 1


def ready_to_ask(study: optuna.Study, active: dict[int, ActiveTrial], lag: int) -> bool:
    """The next proposal may be made once every trial numbered <= next - lag has finished
    (an enqueued re-proposal has its parameters already and may always start)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    horizon = len(trials) - lag
    return all(n > horizon for n in active)
