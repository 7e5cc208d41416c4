"""Running a stage trial's jobs through a backend: submit a phase's runs together, poll
them, collect their results, say why one failed, then start the trial's next phase. The
optimisation loop advances many trials at once with ``TrialExecution.advance``; ``calib
pipeline`` runs one at a time with ``TrialExecution.run``.

Failure rules (one place): a run that fails cancels its siblings and fails the trial, its
reason read from its log (a LAMMPS ``ERROR`` line or a characterisation job's), else from
how the process ended; outputs that cannot be read or scored fail the trial with the
reason; nothing else stops the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from sim_backends.backend import Backend, JobHandle, JobResult, JobState, Task
from sim_backends.lammps.install import LammpsInstall
from sim_backends.lammps.outputs import SimulationFailed, crash_reason, failure_reason

from calib.spec.study_file import ResourcesSpec
from calib.stages import Run, Score, StageTrial


@dataclass(frozen=True)
class Runner:
    """Turns runs into backend jobs: LAMMPS on the run's deck with the study's resources,
    or the run's own command; each limited to ``timeout_s``."""

    backend: Backend
    lammps: LammpsInstall
    resources: ResourcesSpec
    timeout_s: float | None
    timeout_name: str = "the study's trial_timeout_s"
    """What sets ``timeout_s``, as a timed-out trial's reason names it (a user raises it there)."""

    def cores(self, run: Run) -> int:
        """Cores a run uses: MPI ranks x threads for LAMMPS, the threads for a command."""
        r = self.resources
        return r.threads if run.argv is not None else r.ranks * r.threads

    def task(self, run: Run, name: str) -> Task:
        """LAMMPS runs ``resources.ranks`` MPI ranks (the backend's launcher starts them);
        a run's own command runs as one process."""
        r = self.resources
        env = self.lammps.thread_env(r.threads)
        if run.argv is not None:
            return Task(run.workdir, tuple(run.argv), env, timeout_s=self.timeout_s, threads=r.threads, name=name)
        argv = self.lammps.argv(run.deck, run.log, 1, r.threads)
        return Task(run.workdir, argv, env, timeout_s=self.timeout_s, ranks=r.ranks, threads=r.threads, name=name)

    def submit(self, runs: list[Run], name: str) -> dict[str, tuple[Run, JobHandle]]:
        """Submit ``runs`` together; on a failure part-way, cancel those already submitted."""
        jobs: dict[str, tuple[Run, JobHandle]] = {}
        try:
            for run in runs:
                jobs[run.key] = (run, self.backend.submit(self.task(run, f"{name}-{run.key}")))
        except BaseException:
            self.cancel(jobs)
            raise
        return jobs

    def cancel(self, jobs: Mapping[str, tuple[Run, JobHandle]]) -> None:
        for _, h in jobs.values():
            self.backend.cancel(h)


def run_failure(run: Run, result: JobResult, timeout_name: str = "the study's trial_timeout_s") -> str:
    """Why a run that did not end DONE failed, prefixed by which run it was (unless it is
    the trial's main run, ``label`` None); a timeout names what set the limit
    (``timeout_name``), where a user would raise it."""
    log_path = run.workdir / run.log
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    reason = failure_reason(log_text) if result.state == JobState.FAILED else None
    if reason is None and result.state == JobState.FAILED and result.returncode is None:
        reason = result.reason  # the backend could not start it
    if reason is None:
        reason = (crash_reason(result.returncode, log_text) if result.state == JobState.FAILED
                  else result.reason) or "unknown failure"
    if result.state == JobState.TIMEOUT and reason.startswith("timeout: wall time exceeded"):  # the job's own limit
        reason += f" (the limit is {timeout_name}; raise it for this fidelity)"  # (not e.g. Slurm's time_limit_min)
    return reason if run.label is None else f"{run.label}: {reason}"


@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its score, or why it failed (``reason``; a score with its own
    ``fail_reason`` also fails)."""

    score: Score | None
    reason: str | None

    @property
    def failed(self) -> bool:
        return self.score is None or self.reason is not None or self.score.fail_reason is not None

    @property
    def why(self) -> str:
        return self.reason or (self.score.fail_reason if self.score else None) or "unknown failure"


@dataclass
class TrialExecution:
    """One stage trial on a runner: its phases of runs, their results and the outcome."""

    trial: StageTrial
    runner: Runner
    name: str
    runs: list[Run] = field(default_factory=list)
    """Every run submitted so far, in order."""
    jobs: dict[str, tuple[Run, JobHandle]] = field(default_factory=dict)
    """The current phase's jobs."""
    results: dict[str, JobResult] = field(default_factory=dict)
    on_submit: Callable[["TrialExecution"], None] | None = None
    """Called once each phase is submitted (the ledger keeps its jobs, a checkpoint its state)."""

    def start(self) -> None:
        """Submit the trial's first runs (exceptions propagate: the trial could not start)."""
        self._submit(self.trial.first_runs())

    def _submit(self, runs: list[Run]) -> None:
        self.jobs = self.runner.submit(runs, self.name)
        self.runs.extend(runs)
        if self.on_submit is not None:
            self.on_submit(self)

    @property
    def job_ids(self) -> list[str]:
        return [f"{h.backend}:{h.job_id}" for _, h in self.jobs.values()]

    @property
    def job_records(self) -> list[dict[str, str]]:
        """The current phase's jobs as the ledger keeps them (``calib_jobs``): run key,
        backend, job id and directory."""
        return [{"run": k, "backend": h.backend, "job_id": h.job_id, "workdir": str(h.workdir)}
                for k, (_, h) in self.jobs.items()]

    @property
    def wall_s(self) -> dict[str, float]:
        return {k: r.wall_s for k, r in self.results.items()}

    def cancel(self) -> None:
        self.runner.cancel(self.jobs)

    def advance(self) -> Outcome | None:
        """Poll the current phase; start the next one when it is done; None while the trial
        runs, its ``Outcome`` when it is over."""
        backend = self.runner.backend
        states = {k: backend.poll(h) for k, (_, h) in self.jobs.items()}
        failed = [k for k, st in states.items() if st.terminal and st != JobState.DONE]
        if failed:
            self.cancel()
            for k, (_, h) in self.jobs.items():
                self.results[k] = backend.collect(h)
            return Outcome(None, run_failure(self.jobs[failed[0]][0], self.results[failed[0]],
                                             self.runner.timeout_name))
        if not all(st == JobState.DONE for st in states.values()):
            return None
        for k, (_, h) in self.jobs.items():
            self.results[k] = backend.collect(h)
        try:
            runs = self.trial.next_runs()
            if runs:
                self._submit(runs)
                return None
            return Outcome(self.trial.score(self.wall_s), None)
        except SimulationFailed as exc:
            self.cancel()
            return Outcome(None, exc.reason)
        except Exception as exc:  # unreadable outputs fail the trial, not the caller
            self.cancel()
            return Outcome(None, f"could not read or score the outputs: {exc.__class__.__name__}: {exc}")

    def run(self, poll_s: float = 0.2) -> Outcome:
        """Start and wait for the outcome (jobs are cancelled if the wait is interrupted)."""
        self.start()
        try:
            while True:
                outcome = self.advance()
                if outcome is not None:
                    return outcome
                time.sleep(poll_s)
        except BaseException:
            self.cancel()
            raise
