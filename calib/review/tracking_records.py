"""What a study tells MLflow, as plain records: a finished trial (``TrialRecord``, kept in
its directory as ``RECORD_FILE`` until logged), the best trial so far for the parent run
(``BestRecord`` and its description, ``best_note``), the targets as a dataset
(``DatasetRecord``), and the names MLflow shows them by (objective metrics, tags, preview
copies). ``calib.review.mlflow_tracker`` logs them.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

OBJECTIVE_METRICS = {"weighted_sum": "objective_weighted_sum_sq_error",
                     "chebyshev": "objective_max_weighted_abs_error",
                     "parego": "objective_parego_aug_chebyshev"}
"""MLflow's name of a trial's objective by scalarisation (``objectives.scalarise``): it says
what the number is. The parent run's series are ``best_<name>`` and ``trial_<name>``."""
PREVIEW_SUFFIX = ".txt"
PREVIEW_MAX_BYTES = 5_000_000
"""Text files the MLflow UI cannot preview (``log.lammps``, ``in.slurry``, ``final.data``) are also logged
as ``<name>.txt`` copies up to this size (the UI previews by extension)."""


def objective_metric(scalarisation: str) -> str:
    """The MLflow metric name of a study's objective (``OBJECTIVE_METRICS``)."""
    return OBJECTIVE_METRICS.get(scalarisation, f"objective_{scalarisation}")


def needs_preview_copy(path: Path) -> bool:
    """A LAMMPS text file whose name the MLflow UI does not preview: ``log.lammps``,
    ``in.*`` input decks, ``*.data`` data files (up to ``PREVIEW_MAX_BYTES``)."""
    return path.name == "log.lammps" or path.name.startswith("in.") or path.suffix == ".data"


@dataclass(frozen=True)
class DatasetRecord:
    """The data a study is scored against, for MLflow's dataset API: ``rows``
    (``calib.study.target_rows``), the dataset's ``name`` and its file (``source``)."""

    name: str
    source: str
    rows: tuple[dict, ...]

    def entity(self):
        """An MLflow ``DatasetInput`` (context ``targets``)."""
        import mlflow.data
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        df = pd.DataFrame(list(self.rows))
        with warnings.catch_warnings():
            # MLflow's own noise on every study: it registers its local-file source twice, and
            # its digest calls a pandas function deprecated in pandas 4
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple")
            warnings.filterwarnings("ignore", module="mlflow.data.digest_utils")
            ds = mlflow.data.from_pandas(df, source=self.source, name=self.name)
        return DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "targets")])


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
"""A study's experiment is model development, not GenAI. (MLflow 3.17's UI does not read
this tag to choose the page it opens: it follows its "GenAI / Model training" switch, set by
``?workflowType=machine_learning`` in the link ``calib optimize`` prints.)"""

STUDY_TAG = "calib.study"
ROLE_TAG = "calib.role"
UID_TAG = "calib.study_uid"
LOGGING_TAG = "calib.logging_started_ms"
"""When a trial run's logging began (ms since the epoch): a run still RUNNING long after
was left by a driver that died while logging it (``MlflowTracker.close_stale_runs``)."""
BROKEN_TAG = "calib.logging_error"
"""On a trial run whose logging broke off (why); a later driver completes the run and
replaces it by ``COMPLETED_TAG``."""
COMPLETED_TAG = "calib.logging_completed"


@dataclass(frozen=True)
class TrialRecord:
    """Everything tracked about one finished trial."""

    number: int
    state: str  # COMPLETE or FAIL
    params: dict[str, float]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: tuple[Path, ...] = field(default_factory=tuple)
    artifact_root: Path | None = None
    """Artifacts under this folder keep their sub-folder (``shear_00/log.lammps``)."""
    start_ms: int | None = None
    """When the trial started (its proposal), ms since the epoch: the run spans the simulation."""

    def to_json(self) -> str:
        """The record as JSON (``RECORD_FILE`` in the trial directory), for a later driver to
        log it if this one could not (``from_json``)."""
        return json.dumps({"number": self.number, "state": self.state, "params": self.params,
                           "metrics": {k: float(v) for k, v in self.metrics.items()
                                       if v is not None and math.isfinite(float(v))},
                           "tags": self.tags, "artifacts": [str(p) for p in self.artifacts],
                           "artifact_root": str(self.artifact_root) if self.artifact_root else None,
                           "start_ms": self.start_ms}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrialRecord":
        d = json.loads(text)
        return cls(int(d["number"]), d["state"], dict(d["params"]), dict(d["metrics"]), dict(d["tags"]),
                   tuple(Path(p) for p in d["artifacts"]), Path(d["artifact_root"]) if d["artifact_root"] else None,
                   d.get("start_ms"))


RECORD_FILE = "mlflow_record.json"
"""A finished trial's ``TrialRecord``, kept in its directory before it is logged: a driver
that finds the trial without an MLflow run (the tracking server was down) logs it from here."""


@dataclass(frozen=True)
class BestRecord:
    """The study's best trial so far, for its parent run: trial number, objective, Table S1
    values, observables with their targets (name -> (value, target))."""

    number: int
    objective: float
    params: dict[str, float]
    observables: dict[str, tuple[float, float | None]]
    step: int = 0
    """The step of the ``best.*`` and ``target.*`` metrics: the highest finished trial number
    when logged, so the latest value (MLflow shows the highest step's) is the current best's."""
    confirmation: str | None = None
    """Its confirmation at the target protocol in one line (``calib.optimize.confirmation``), if any."""
    caveats: tuple[str, ...] = ()
    """Its caveats in words (``calib.review.caveats``)."""


def best_note(best: BestRecord, objective: str, link: str | None) -> str:
    """The parent run's description (markdown): the best trial, its objective, its
    observables next to their targets and its Table S1 values."""
    head = f"**Best trial: {best.number}**" + (f" ([open its run]({link}))" if link else "")
    lines = [head, "", f"`{objective}` = {best.objective:.6g}", ""]
    if best.confirmation:
        lines += [f"**Confirmation at the target protocol**: {best.confirmation}", ""]
    if best.caveats:
        lines += ["**Caveats**", ""] + [f"- {c}" for c in best.caveats] + [""]
    obs = [(k, v, t) for k, (v, t) in best.observables.items() if t is not None]
    if obs:
        lines += ["| observable | best trial | target |", "|---|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.5g}'} | {t:.5g} |" for k, v, t in obs]
        lines.append("")
    lines += ["| Table S1 key | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in best.params.items()]
    return "\n".join(lines)
