"""What a study tells MLflow, as plain records: a finished trial (``TrialRecord``, kept in
its directory as ``RECORD_FILE`` until logged, and its description, ``trial_note``), the best
trial so far for the parent run (``BestRecord``, its series ``BestPoint`` and its description,
``best_note``), the targets as a dataset (``DatasetRecord``), the names MLflow shows them by
(objective metrics, tags, preview copies), how values are shown (``shown``) and the links
into MLflow's UI (``run_link``, ``runs_link``, ``chart_link``).
``calib.review.mlflow_tracker`` logs them.
"""

from __future__ import annotations

import json
import math
import urllib.parse
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


SIGNIFICANT_DIGITS = 6
"""Significant digits of the metric values calib logs to MLflow (``shown``)."""


def shown(value: float) -> float:
    """A metric's value as calib logs it to MLflow: rounded to ``SIGNIFICANT_DIGITS`` (6)
    significant digits; a whole number (a count: ``atom_steps``, ``trials_complete``) is
    kept exact, as are 0 and non-finite values.

    Why rounded: MLflow's UI prints the stored double in full (``0.15998418113714982``) in
    the run's Metrics table, the runs table and the charts' tooltips, and offers no display
    format. Six digits are more than a trial's numbers carry (an MD observable scatters by
    1e-3 relative and more from seed to seed; wall times by 1e-2) and match the params
    (``.6g``) and the descriptions. Nothing is lost: the ledger (Optuna) keeps every value in
    full, and ``--json``, ``calib export`` and ``calib report`` read it there; nothing reads a
    value back from MLflow."""
    v = float(value)
    if v == 0.0 or not math.isfinite(v) or (v.is_integer() and abs(v) < 2.0 ** 53):
        return v
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


ML_VIEW = "workflowType=machine_learning"
"""The query that opens a page of MLflow 3's UI in its model-training view. MLflow 3.17's
router reads ``workflowType`` from the query of the hash path on every page (and keeps it on
the links it follows); without it, the UI opens the view last chosen in the browser
(localStorage ``mlflow.workflowType``, default GenAI), where an experiment opens on its
traces overview."""


def run_link(experiment_id: str, run_id: str) -> str:
    """A run's page in MLflow's UI, relative to the UI's root (a link in a description, or
    appended to the server's URL): ``#/experiments/<id>/runs/<run id>`` (MLflow 3.17's route
    ``/experiments/:experimentId/runs/:runUuid``) in the model-training view (``ML_VIEW``)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def runs_link(experiment_id: str, **facets: str) -> str:
    """An experiment's runs table in MLflow's UI (``#/experiments/<id>/runs``), in the
    model-training view; ``facets``: the table's search state that the UI reads from the URL
    (``searchFilter``, ``orderByKey``, ``orderByAsc``), e.g. the trials sorted by objective."""
    query = urllib.parse.urlencode({**facets, "workflowType": "machine_learning"}, quote_via=urllib.parse.quote)
    return f"#/experiments/{experiment_id}/runs?{query}"


def chart_link(experiment_id: str, run_id: str, keys: tuple[str, ...]) -> str:
    """The chart of one run's metrics ``keys`` on MLflow's metric page (``#/metric?...``, the
    query MLflow 3.17's UI builds, ``getMetricPageRoute``): steps on the x axis, every
    point shown; percent-encoded, so that it is one markdown link target."""
    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    q = {"runs": compact([run_id]), "metric": compact(keys[0]), "experiments": compact([experiment_id]),
         "plot_metric_keys": compact(list(keys)), "plot_layout": "{}", "x_axis": "step",
         "y_axis_scale": "linear", "line_smoothness": "1", "show_point": "true", "deselected_curves": "[]",
         "last_linear_y_axis_range": "[]", "workflowType": "machine_learning"}
    return "#/metric?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)


TRIALS_VIEW = "calib-trials"
"""The id of the saved view of a study's trials (``trials_view``): the experiment's tag
``mlflow.sharedViewState.calib-trials``, opened by ``runs_link(id, viewStateShareKey=TRIALS_VIEW)``."""
TRIALS_VIEW_NAME = "calib: trials by objective"


def trials_view(objective: str, free_keys: tuple[str, ...], created_ms: int) -> tuple[str, str]:
    """A study's trials as a saved view of its experiment's runs table, (tag key, value):
    the trial runs, best first (sorted by ``objective`` ascending), with the objective, the
    flags, how each was proposed and the free keys as columns.

    MLflow 3.17 keeps the runs table's columns and sort in the browser (per experiment), and
    its default table shows the study's run with its trials folded under it and no metric;
    a server cannot change that default. What it can hold is a saved view: an experiment tag
    ``mlflow.sharedViewState.<id>`` whose value is ``{"name", "createdAt", "updatedAt",
    "state"}`` (``state``: the table's state as JSON: its search facets and UI state), listed
    under the runs table's "Views" menu and opened by ``?viewStateShareKey=<id>``."""
    state = {"searchFilter": f"tags.`{ROLE_TAG}` = 'trial'", "orderByKey": f"metrics.`{objective}`",
             "orderByAsc": True,
             "selectedColumns": [f"metrics.`{objective}`", "tags.`calib.flags`", "tags.`calib.proposal`",
                                 *(f"params.`{k}`" for k in free_keys)]}
    envelope = {"name": TRIALS_VIEW_NAME, "createdAt": created_ms, "updatedAt": created_ms,
                "state": json.dumps(state)}
    return f"mlflow.sharedViewState.{TRIALS_VIEW}", json.dumps(envelope)


def trials_view_note(experiment_id: str) -> str:
    """The line the experiment's description ends with: the link to the trials' saved view
    (``trials_view``)."""
    link = runs_link(experiment_id, viewStateShareKey=TRIALS_VIEW)
    return (f"- **[Open the trials, best first]({link})**: the saved view `{TRIALS_VIEW_NAME}` (the runs table's "
            "\"Views\" menu), with the objective, flags, proposal and free keys as columns. MLflow keeps the "
            "columns you choose per experiment, in your browser; this view is kept with the experiment.")


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
NOTE_TAG = "mlflow.note.content"
"""A run's (or an experiment's) description in MLflow's UI (markdown)."""
SPAN_NOTE = ("This run spans the study: from its first trial's start to its last trial's end, pauses between "
             "sessions included; metric `wall_time_active_s` is the time during which at least one trial ran (s).")
"""The parent run's description ends with what its duration means (``best_note``)."""


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
    """When the trial started (the ledger's ``datetime_start``: its proposal), ms since the
    epoch: its run's start."""
    end_ms: int | None = None
    """When the trial finished (the ledger's ``datetime_complete``), ms since the epoch: its
    run's end, so that the run's duration is the trial's own, also for a run logged later;
    the timestamp of its metrics."""
    free_keys: tuple[str, ...] = ()
    """The study's free Table S1 keys (those that differ from trial to trial), in the order
    of its parameter space; the others are fixed (the study run's param ``fixed``)."""

    def to_json(self) -> str:
        """The record as JSON (``RECORD_FILE`` in the trial directory), for a later driver to
        log it if this one could not (``from_json``)."""
        return json.dumps({"number": self.number, "state": self.state, "params": self.params,
                           "metrics": {k: float(v) for k, v in self.metrics.items()
                                       if v is not None and math.isfinite(float(v))},
                           "tags": self.tags, "artifacts": [str(p) for p in self.artifacts],
                           "artifact_root": str(self.artifact_root) if self.artifact_root else None,
                           "start_ms": self.start_ms, "end_ms": self.end_ms, "free_keys": list(self.free_keys)},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrialRecord":
        """A record written by ``to_json`` (one written before ``end_ms`` and ``free_keys``
        existed has neither)."""
        d = json.loads(text)
        return cls(int(d["number"]), d["state"], dict(d["params"]), dict(d["metrics"]), dict(d["tags"]),
                   tuple(Path(p) for p in d["artifacts"]), Path(d["artifact_root"]) if d["artifact_root"] else None,
                   d.get("start_ms"), d.get("end_ms"), tuple(d.get("free_keys") or ()))


RECORD_FILE = "mlflow_record.json"
"""A finished trial's ``TrialRecord``, kept in its directory before it is logged: a driver
that finds the trial without an MLflow run (the tracking server was down) logs it from here."""

NOTE_REASON_CHARS = 1000
"""A failed trial's description quotes its reason up to this length (in full: the run's tag
``fail_reason`` and its file ``fail_reason.txt``)."""
FENCE = "`" * 3


def trial_note(record: TrialRecord, objective: str, study_link: str | None) -> str:
    """A trial run's description (markdown), shown at the top of its run page: the trial's
    number and state, its objective (``objective``: the metric's name), a link back to the
    study's run (``study_link``: ``run_link``), how it was proposed and its flags, the
    reason of a failure, and the values of the free keys (those that differ from trial to
    trial: ``record.free_keys``; every parameter for a record that does not name them)."""
    failed = record.state != "COMPLETE"
    head = f"**Trial {record.number}** · {'FAILED' if failed else 'COMPLETE'}"
    value = record.metrics.get(objective)
    if value is not None and math.isfinite(float(value)):
        head += f" · `{objective}` = {float(value):.6g} (lower is better)"
    if study_link:
        head += f" · [open the study's run]({study_link})"
    lines = [head, ""]
    about = [f"{what}: {record.tags[tag]}" for what, tag in (("proposed by", "calib.proposal"),
                                                             ("flags", "calib.flags")) if record.tags.get(tag)]
    if about:
        lines += ["; ".join(about), ""]
    if failed:
        reason = (record.tags.get("fail_reason") or "unknown").strip()
        cut = reason if len(reason) <= NOTE_REASON_CHARS else reason[:NOTE_REASON_CHARS] + " ..."
        lines += ["**Why it failed** (in full: `fail_reason.txt`):", "", FENCE, cut.replace(FENCE, "'''"), FENCE, ""]
    keys = [k for k in record.free_keys if k in record.params] or list(record.params)
    if keys:
        lines += ["| free key | value |", "|---|---|"] + [f"| {k} | {float(record.params[k]):.6g} |" for k in keys]
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class BestRecord:
    """The study's best trial so far, for its parent run: trial number, objective, Table S1
    values, observables with their targets (name -> (value, target))."""

    number: int
    objective: float
    params: dict[str, float]
    observables: dict[str, tuple[float | None, float | None]]
    confirmation: str | None = None
    """Its confirmation at the target protocol in one line (``calib.optimize.confirmation``), if any."""
    caveats: tuple[str, ...] = ()
    """Its caveats in words (``calib.review.caveats``)."""


@dataclass(frozen=True)
class BestPoint:
    """One step of the study run's best-so-far series: the best trial among trials
    0..``step`` (numbers), logged once they have all finished, so that a step's values never
    change and any driver, at any time, logs the same ones (``MlflowTracker`` logs a step
    once)."""

    step: int
    """The trial number n: the point is the best of trials 0..n."""
    time_ms: int
    """When trials 0..n had all finished (the latest ``datetime_complete`` among them), ms
    since the epoch: the point's timestamp."""
    objective: float
    observables: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    """The study's target observables: name -> (the best trial's value, the target)."""


def best_note(best: BestRecord, objective: str, link: str | None, chart: str | None = None,
              span: str = "") -> str:
    """The parent run's description (markdown): the best trial (``link``: its run,
    ``run_link``) and its objective first (``chart``: the chart of the objective's series,
    ``chart_link``), then its observables next to their targets and its Table S1 values;
    ``span``: a closing paragraph (what the run's duration means)."""
    head = f"**Best trial: {best.number}**" + (f" ([open its run]({link}))" if link else "")
    lines = [head + f" · `{objective}` = **{best.objective:.6g}** (lower is better)", ""]
    if chart:
        lines += [f"[Chart of the objective by trial number]({chart}): `best_{objective}` (the best so far) "
                  f"and `trial_{objective}` (each trial).", ""]
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
    if span:
        lines += ["", span]
    return "\n".join(lines)


def no_answer_note(target_fidelity: str | None, failures: dict[int, str], complete: int) -> str:
    """The parent run's description (markdown) of a study without a completed trial at its
    target fidelity: why its trials failed, the most frequent reasons first."""
    head = "**No answer**: no completed trial" + (f" at the target fidelity {target_fidelity}" if target_fidelity
                                                   else "")
    lines = [head, ""]
    if complete:
        lines += [f"{complete} trial{'s' if complete != 1 else ''} completed, but not at the target (a cheaper "
                  "fidelity, or stopped early).", ""]
    by_reason: dict[str, list[int]] = {}
    for number, reason in sorted(failures.items()):
        by_reason.setdefault(reason or "unknown failure", []).append(number)
    for reason, numbers in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:3]:
        lines.append(f"- {len(numbers)} failed (trial{'s' if len(numbers) > 1 else ''} "
                     f"{', '.join(map(str, numbers[:8]))}{', ...' if len(numbers) > 8 else ''}): `{reason[:300]}`")
    lines += ["", "Each trial run's description holds its reason; `calib optimize` prints what to do."]
    return "\n".join(lines)
