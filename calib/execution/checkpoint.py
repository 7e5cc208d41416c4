"""A running trial's checkpoint: what a restarted driver needs to re-attach to its jobs.

After each phase of a trial is submitted, the stage trial object (which phase it is in,
what it measured so far), the runs submitted so far and the current phase's job handles
are pickled to ``.calib_execution.pkl`` in the trial directory. The study, its spec, its
dataset and its upstream state are not in the file: they are written as references and
the re-attaching driver supplies its own (its study passed the same identity check, so
they are the same calibration). The file is read only from a study's own run directory,
by the driver of that study.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim_backends.backend import JobHandle

from calib.stages import Run, StageTrial

FILE = ".calib_execution.pkl"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A trial's stage object, every run submitted so far and the current phase's jobs."""

    trial: StageTrial
    runs: list[Run]
    jobs: dict[str, tuple[Run, JobHandle]]


def _shared(context: dict[str, Any]) -> dict[int, str]:
    return {id(obj): name for name, obj in context.items() if obj is not None}


class _Pickler(pickle.Pickler):
    def __init__(self, f, shared: dict[int, str]) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = shared

    def persistent_id(self, obj: Any) -> str | None:
        return self._shared.get(id(obj))


MOVED_MODULES: dict[str, str] = {
    "calib.errors": "calib.core.errors",
    "calib.paths": "calib.core.paths",
    "calib.backends": "calib.core.backend_registry",
    "calib.plots": "calib.core.plots",
    "calib.fidelity": "calib.spec.fidelity",
    "calib.spec": "calib.spec.study_file",
    "calib.stages.system": "calib.stages.bead_systems",
    "calib.stages.film": "calib.stages.film_structure",
    "calib.errorbars": "calib.stages.errorbars",
    "calib.study": "calib.study.load",
    "calib.identity": "calib.study.identity",
    "calib.space": "calib.study.space",
    "calib.lineage": "calib.study.upstream",
    "calib.stored": "calib.study.stored",
    "calib.targets_table": "calib.study.target_rows",
    "calib.proposer": "calib.optimize.botorch_sampler",
    "calib.samplers": "calib.optimize.sampler_registry",
    "calib.swarm": "calib.optimize.swarm_sampler",
    "calib.surrogate": "calib.optimize.surrogate",
    "calib.posterior": "calib.optimize.posterior",
    "calib.refine": "calib.optimize.manual_sets",
    "calib.confirm": "calib.optimize.confirmation",
    "calib.tracking": "calib.review.tracking_records",
    "calib.report": "calib.review.summary",
    "calib.review": "calib.review.html_report",
    "calib.review_plots": "calib.review.figures",
    "calib.runner": "calib.execution.runner",
    "calib.checkpoint": "calib.execution.checkpoint",
    "calib.heartbeat": "calib.execution.heartbeat",
    "calib.loop": "calib.execution.loop",
    "calib.session": "calib.execution.session",
    "calib.pipeline": "calib.execution.pipeline",
    "calib.table_s1": "calib.publish.table_s1",
    "calib.export": "calib.publish.export",
    "calib.reproduce": "calib.publish.reproduce",
}
"""Modules that moved on 2026-12-07 (calib's sub-packages by role): a checkpoint written
before names its classes by the old module, and re-attaches all the same."""
MOVED_NAMES: dict[tuple[str, str], str] = {
    ("calib.lineage", "Lineage"): "calib.stages.upstream_state",
    ("calib.stages.slurry", "SlurrySettings"): "calib.stages.slurry_settings",
    ("calib.stages.slurry", "ViscositySettings"): "calib.stages.slurry_settings",
    ("calib.stages.slurry", "RatePlan"): "calib.stages.slurry_runs",
    ("calib.stages.slurry", "RateResult"): "calib.stages.slurry_results",
}
"""Classes that left their module (the stage-facing half of ``calib.lineage``; the slurry
stage's sections, rate plans and rate results). Only what a checkpoint holds matters here: a
stage trial and what it keeps (runs, fidelities, settings, results)."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, context: dict[str, Any]) -> None:
        super().__init__(f)
        self._context = context

    def find_class(self, module: str, name: str) -> Any:
        module = MOVED_NAMES.get((module, name), MOVED_MODULES.get(module, module))
        return super().find_class(module, name)

    def persistent_load(self, pid: str) -> Any:
        if pid not in self._context:
            raise pickle.UnpicklingError(f"checkpoint refers to {pid!r}, which this driver does not have")
        return self._context[pid]


def context_of(loaded: Any, lineage: Any) -> dict[str, Any]:
    """The objects a checkpoint refers to instead of storing."""
    return {"loaded": loaded, "spec": loaded.spec, "dataset": loaded.dataset, "lineage": lineage}


def save(workdir: Path, cp: Checkpoint, context: dict[str, Any]) -> None:
    """Write the checkpoint atomically (a crash leaves the previous one)."""
    buf = io.BytesIO()
    _Pickler(buf, _shared(context)).dump((VERSION, cp.trial, cp.runs, cp.jobs))
    tmp = Path(workdir) / (FILE + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, Path(workdir) / FILE)


def load(workdir: Path, context: dict[str, Any]) -> Checkpoint:
    """Read a checkpoint; raises ``OSError``/``pickle.UnpicklingError``/``ValueError`` when
    it is missing, unreadable or from another version."""
    with open(Path(workdir) / FILE, "rb") as f:
        version, trial, runs, jobs = _Unpickler(f, context).load()
    if version != VERSION:
        raise ValueError(f"checkpoint version {version}, this calib writes {VERSION}")
    return Checkpoint(trial, runs, jobs)
