"""The real ``calib`` CLI with one fault injected, for ``tests/test_faults.py``.

    python tests/fault_driver.py FAULT@TRIAL[,FAULT@TRIAL...] -- optimize --stage slurry ...

The product has no fault hooks: this script wraps one of its functions (or the process
itself) before running ``calib.cli.app``, so the fault strikes at a chosen point of trial
number TRIAL:

- ``kill-lammps``: SIGKILL of the driver once the trial's LAMMPS runs;
- ``term-lammps``: SIGTERM to the driver once the trial's LAMMPS runs (handled like Ctrl-C);
- ``kill-logging``: SIGKILL of the driver while the trial's MLflow run is written (its
  params and metrics are in, its files are not);
- ``kill-proposal``: SIGKILL of the driver inside the model's proposal of the trial (the
  ledger has created the trial, nothing has tagged it);
- ``crash-lammps``: the trial's LAMMPS gets SIGSEGV (a crash);
- ``hang-lammps``: the trial's LAMMPS is stopped (SIGSTOP: hung, not merely slow);
- ``nan-objective``: the trial's scored objective is NaN.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from procs import processes_in  # noqa: E402  (tests/procs.py)


def _lammps_pids(workdir: Path) -> list[int]:
    """``lmp`` processes running in ``workdir``."""
    return processes_in(workdir, ("lmp",), below=False)


def _when_lammps_runs(workdir: Path, act) -> None:
    """Call ``act(pids)`` once LAMMPS runs in ``workdir`` (polled in a thread)."""
    def watch():
        for _ in range(600):
            pids = _lammps_pids(workdir)
            if pids:
                time.sleep(0.3)  # a few steps in
                act(pids)
                return
            time.sleep(0.05)
    threading.Thread(target=watch, daemon=True).start()


def _signal_all(sig: int):
    def act(pids):
        for p in pids:
            os.kill(p, sig)
    return act


def install(fault: str, trial: int) -> None:
    from calib.execution import runner
    from calib.review import mlflow_tracker
    from calib.optimize.botorch_sampler import BoTorchSampler

    me = os.getpid()
    if fault in ("kill-lammps", "term-lammps", "crash-lammps", "hang-lammps"):
        start = runner.TrialExecution.start

        def patched_start(self):
            start(self)
            if self.name.endswith(f"-{trial}"):
                workdir = self.runs[0].workdir
                if fault == "kill-lammps":
                    _when_lammps_runs(workdir, lambda pids: os.kill(me, signal.SIGKILL))
                elif fault == "term-lammps":
                    _when_lammps_runs(workdir, lambda pids: os.kill(me, signal.SIGTERM))
                elif fault == "crash-lammps":
                    _when_lammps_runs(workdir, _signal_all(signal.SIGSEGV))
                else:
                    _when_lammps_runs(workdir, _signal_all(signal.SIGSTOP))
        runner.TrialExecution.start = patched_start
    elif fault == "kill-logging":
        log_files = mlflow_tracker.MlflowTracker._log_files

        def patched_log_files(self, rid, record):
            if record.number == trial:
                os.kill(me, signal.SIGKILL)
            return log_files(self, rid, record)
        mlflow_tracker.MlflowTracker._log_files = patched_log_files
    elif fault == "kill-proposal":
        sample = BoTorchSampler.sample_relative

        def patched_sample(self, study, t, search_space):
            if t.number == trial and search_space:
                os.kill(me, signal.SIGKILL)
            return sample(self, study, t, search_space)
        BoTorchSampler.sample_relative = patched_sample
    elif fault == "nan-objective":
        import dataclasses

        advance = runner.TrialExecution.advance

        def patched_advance(self):
            outcome = advance(self)
            if outcome is not None and outcome.score is not None and self.name.endswith(f"-{trial}"):
                return runner.Outcome(dataclasses.replace(outcome.score, value=float("nan")), outcome.reason)
            return outcome
        runner.TrialExecution.advance = patched_advance
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    spec, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: fault_driver.py FAULT@TRIAL[,FAULT@TRIAL...] -- CLI ARGS"
    for one in spec.split(","):  # faults on different trials
        name, _, number = one.partition("@")
        install(name, int(number))
    from calib.cli import app

    app(args, prog_name="calib")
