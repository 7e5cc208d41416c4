"""MLflow tracking through ``MlflowClient`` (a ``calib.review.tracker.Tracker``): one MLflow
experiment per study, one parent run per study (found again on resume by its tags) and one
nested run per finished trial with Table S1 params, metrics, artifacts, tags and a
description (``MlflowTracker``); a folder logged to a study's parent run afterwards
(``log_study_folder``).

Logging is idempotent: a metric holds one value per step, however often a study is
resumed or reopened and however many drivers share it. A step already logged is not
logged again (``MlflowTracker._log_new``), and the values and timestamps of a step are read
from the ledger (trial numbers, ``datetime_complete``), so two drivers that race to log the
same step write the same row, which MLflow's SQL store keeps once. Values are rounded for
display (``tracking_records.shown``). Runs span what they stand for: a trial's run its
ledger trial, the study's run its first trial's start to its last trial's end.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from calib.review.mlflow_retry import HTTP_RETRIES, LockPatient, OutageAware
from calib.review.tracking_records import (BROKEN_TAG, COMPLETED_TAG, EXPERIMENT_TAGS, LOGGING_TAG, NOTE_TAG,
                                           PREVIEW_MAX_BYTES, PREVIEW_SUFFIX, ROLE_TAG, SPAN_NOTE, STUDY_TAG, UID_TAG,
                                           BestPoint, BestRecord, DatasetRecord, TrialRecord, best_note, chart_link,
                                           needs_preview_copy, run_link, shown, trial_note, trials_view,
                                           trials_view_note)


class MlflowTracker:
    """Logs to MLflow through ``MlflowClient`` (no global active-run state)."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        import logging

        logging.getLogger("alembic").setLevel(logging.WARNING)
        if tracking_uri.startswith(("http://", "https://")):
            # MLflow retries a server that does not answer for minutes per call (7 retries,
            # backoff factor 2); a study must not stall on its attachment: about 7 s, then a
            # warning (a user's own settings win)
            for var, value in HTTP_RETRIES.items():
                os.environ.setdefault(var, value)
        self.uri = tracking_uri
        self._client = None
        self.artifact_root = artifact_root
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.objective = "objective"
        self._dataset = None  # the study's DatasetInput, logged with every run

    @property
    def client(self):
        """The MLflow client, made on first use (an embedded store runs its schema
        migrations then: ``calib.execution.session`` does that under the run directory's lock,
        ``calib.execution.study_dir.setup_lock``). On an
        embedded SQLite store, which several drivers may share, each call waits out another
        writer's lock (``LockPatient``); on a server, an outage costs one call's retries
        (``OutageAware``)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            self._client = (LockPatient(client) if self.uri.startswith("sqlite")
                            else OutageAware(client) if self.uri.startswith(("http://", "https://")) else client)
        return self._client

    def start_study(self, study_name: str, tags: dict[str, str], params: dict[str, str],
                    objective: str = "objective", dataset: DatasetRecord | None = None,
                    description: str = "", stale_s: float = 120.0, start_ms: int | None = None,
                    free_keys: tuple[str, ...] = ()) -> None:
        """Find or create the study's experiment and parent run. ``objective``: the
        objective's metric name; ``dataset``: logged as the input of the parent and of
        every trial run; ``description``: the experiment's description (markdown), which
        ends with a link to the saved view of the trials (``trials_view``, made once with
        ``free_keys`` as columns);
        ``start_ms``: when the study started (its first trial's start in the ledger, ms since
        the epoch), the start of a parent run created now (None: now). On resume, trial runs
        a dead driver left RUNNING (logging begun over ``stale_s`` ago) are ended KILLED
        (``close_stale_runs``)."""
        self.objective = objective
        self._dataset = dataset.entity() if dataset is not None else None
        exp = self.client.get_experiment_by_name(study_name)
        if exp is None:
            loc = (self.artifact_root / study_name).resolve().as_uri() if self.artifact_root else None
            self.experiment_id = self.client.create_experiment(study_name, artifact_location=loc,
                                                               tags=EXPERIMENT_TAGS)
        else:
            self.experiment_id = exp.experiment_id
            if exp.tags.get("mlflow.experimentKind") is None:
                for k, v in EXPERIMENT_TAGS.items():
                    self.client.set_experiment_tag(self.experiment_id, k, v)
        view_key, view = trials_view(objective, free_keys, int(time.time() * 1000))
        if exp is None or view_key not in exp.tags:  # made once: a user may change or delete it
            self.client.set_experiment_tag(self.experiment_id, view_key, view)
        if description:
            self.client.set_experiment_tag(self.experiment_id, NOTE_TAG,
                                           description.rstrip() + "\n" + trials_view_note(self.experiment_id))
        uid = tags.get(UID_TAG)
        query = (f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{ROLE_TAG}` = 'study'"
                 + (f" and tags.`{UID_TAG}` = '{uid}'" if uid else ""))
        found = self.client.search_runs([self.experiment_id], filter_string=query,
                                        order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            self.parent_run_id = found[0].info.run_id
            self.client.update_run(self.parent_run_id, status="RUNNING")
            self.close_stale_runs(stale_s)
            return
        now = int(time.time() * 1000)
        run = self.client.create_run(self.experiment_id, run_name=study_name,
                                     tags={STUDY_TAG: study_name, ROLE_TAG: "study", **tags},
                                     start_time=min(start_ms, now) if start_ms is not None else now)
        # drivers started together may each have created one: all keep the oldest, the others are deleted
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=100)
        first = min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else run
        if first.info.run_id != run.info.run_id:
            self.client.delete_run(run.info.run_id)
            self.parent_run_id = first.info.run_id
            return
        self.parent_run_id = run.info.run_id
        for k, v in params.items():
            self.client.log_param(self.parent_run_id, k, v)
        if self._dataset is not None:
            self.client.log_inputs(self.parent_run_id, datasets=[self._dataset])

    def log_trial(self, record: TrialRecord, run_id: str | None = None) -> str | None:
        """Log a finished trial as a run under the study's parent run, ended FINISHED
        (COMPLETE) or FAILED, spanning the trial (``record.start_ms`` to ``record.end_ms``),
        with a description (``trial_note``) that links back to the parent run. ``run_id``: a
        run of this trial whose logging broke off (``logged_trials``) is completed instead of
        starting another: the trial keeps one run, its metrics one value each."""
        from mlflow.entities import Metric, Param, RunTag

        assert self.experiment_id is not None and self.parent_run_id is not None
        tags = {"mlflow.parentRunId": self.parent_run_id, ROLE_TAG: "trial", **record.tags,
                "trial_number": str(record.number), "state": record.state,
                NOTE_TAG: trial_note(record, self.objective, run_link(self.experiment_id, self.parent_run_id))}
        now = int(time.time() * 1000)
        end = record.end_ms if record.end_ms is not None else now
        if run_id is None:
            rid = self.client.create_run(self.experiment_id, run_name=f"trial-{record.number:05d}",
                                         tags={**tags, LOGGING_TAG: str(now)},
                                         start_time=record.start_ms if record.start_ms is not None else end
                                         ).info.run_id
        else:
            rid = run_id
        try:
            if run_id is not None:  # the logging tag first: no other driver takes it for a dead driver's
                self.client.set_tag(rid, LOGGING_TAG, str(now))
                self.client.update_run(rid, status="RUNNING")
            metrics = [Metric(k, shown(v), end, record.number) for k, v in record.metrics.items()
                       if v is not None and math.isfinite(float(v))]
            if run_id is not None:  # what the broken-off logging wrote stays, once
                have = self.client.get_run(rid).data.metrics
                metrics = [m for m in metrics if m.key not in have]
            params = [Param(k, f"{float(v):.6g}") for k, v in record.params.items()]
            self.client.log_batch(rid, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
            if self._dataset is not None:
                self.client.log_inputs(rid, datasets=[self._dataset])
            if record.state != "COMPLETE" and tags.get("fail_reason"):
                self.client.log_text(rid, tags["fail_reason"] + "\n", "fail_reason.txt")
            self._log_files(rid, record)
            if run_id is not None:  # whole now: say what had broken off
                broken = self.client.get_run(rid).data.tags.get(BROKEN_TAG)
                if broken is not None:
                    self.client.set_tag(rid, COMPLETED_TAG, f"logging had broken off ({broken}); completed later"[:5000])
                    self.client.delete_tag(rid, BROKEN_TAG)
        except BaseException as exc:  # the run must not stay RUNNING: end it, say why, and let the caller know
            self._end_broken(rid, exc)
            raise
        self.client.set_terminated(rid, status="FINISHED" if record.state == "COMPLETE" else "FAILED", end_time=end)
        value = record.metrics.get(self.objective)
        confirmation = record.tags.get("calib.proposal", "").startswith("confirmation")  # not a calibration trial
        if value is not None and math.isfinite(value) and not confirmation:
            self._log_new(self.parent_run_id, [Metric(f"trial_{self.objective}", shown(value), end, record.number)])
        return rid

    def _log_new(self, run_id: str, metrics: list) -> None:
        """Log the ``metrics`` (``mlflow.entities.Metric``) whose step the run does not hold
        yet for their key (nor holds earlier in the list): a step keeps its first value,
        whatever is logged again on a resume or a reopening (MLflow has no way to replace or
        delete a logged value)."""
        have: dict[str, set[int]] = {}
        new = []
        for m in metrics:
            if m.key not in have:
                have[m.key] = {h.step for h in self.client.get_metric_history(run_id, m.key)}
            if m.step not in have[m.key]:
                have[m.key].add(m.step)
                new.append(m)
        for i in range(0, len(new), 1000):  # MLflow's limit of metrics in one batch
            self.client.log_batch(run_id, metrics=new[i:i + 1000])

    def logged_trials(self) -> dict[int, str | None]:
        """The trials that have a run under the study's parent run: trial number -> None
        when a run of it was logged whole or is being logged (RUNNING: a live driver's; the
        stale ones were ended at ``start_study``), else the id of a run whose logging broke
        off (tagged ``calib.logging_error``: its driver stopped, or MLflow failed, while it
        was written), which ``log_trial(record, run_id)`` completes."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        out: dict[int, str | None] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=(
                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'"),
                max_results=1000, page_token=token)
            for r in page:
                number = r.data.tags.get("trial_number", "")
                if not number.isdigit():
                    continue
                whole = r.info.status == "RUNNING" or BROKEN_TAG not in r.data.tags
                if whole or out.get(int(number), r.info.run_id) is not None:
                    out[int(number)] = None if whole else r.info.run_id
            token = page.token
            if not token:
                return out

    def _log_files(self, rid: str, record: TrialRecord) -> None:
        """The trial's files, each under its sub-folder of the trial directory; LAMMPS text
        files also as ``.txt`` copies the UI previews (``needs_preview_copy``)."""
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="calib-preview-") as tmp:
            for path in record.artifacts:
                if not path.exists():
                    continue
                sub = None
                if record.artifact_root is not None and path.parent != record.artifact_root:
                    try:
                        sub = str(path.parent.relative_to(record.artifact_root))
                    except ValueError:
                        sub = None
                self.client.log_artifact(rid, str(path), artifact_path=sub)
                if needs_preview_copy(path) and path.stat().st_size <= PREVIEW_MAX_BYTES:
                    copy = Path(tmp) / (sub or ".") / (path.name + PREVIEW_SUFFIX)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, copy)
                    self.client.log_artifact(rid, str(copy), artifact_path=sub)

    def update_best(self, best: BestRecord, series: list[BestPoint]) -> None:
        """The parent run names the best trial so far: tags ``calib.best_trial``,
        ``calib.best_run_id`` and ``calib.best_run`` (the UI path of its run), ``best.<key>``
        per Table S1 key, its description (``best_note``: the best trial and its objective
        first, with links to its run and to the chart of the objective); the steps of
        ``series`` it does not hold yet: ``best_<objective>`` (the best value among trials
        0..n at step n) and, per target observable, ``best.<observable>`` (the value of that
        best trial) next to ``target.<observable>``. The best trial's own run is tagged
        ``calib.best = true`` (the previous best's tag is set to false)."""
        from mlflow.entities import Metric, RunTag

        assert self.experiment_id is not None and self.parent_run_id is not None
        found = self.client.search_runs([self.experiment_id], filter_string=(
            f"tags.`{ROLE_TAG}` = 'trial' and tags.trial_number = '{best.number}' "
            f"and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"), max_results=1)
        for old in self.client.search_runs([self.experiment_id], filter_string="tags.`calib.best` = 'true'"):
            if not found or old.info.run_id != found[0].info.run_id:
                self.client.set_tag(old.info.run_id, "calib.best", "false")
        tags = {"calib.best_trial": str(best.number)}
        if found:
            rid = found[0].info.run_id
            self.client.set_tag(rid, "calib.best", "true")
            tags.update({"calib.best_run_id": rid, "calib.best_run": run_link(self.experiment_id, rid)})
        tags.update({f"best.{k}": f"{v:.6g}" for k, v in best.params.items()})
        metrics = []
        for p in series:
            metrics.append(Metric(f"best_{self.objective}", shown(p.objective), p.time_ms, p.step))
            for name, (value, target) in p.observables.items():
                if value is not None and math.isfinite(value):
                    metrics.append(Metric(f"best.{name}", shown(value), p.time_ms, p.step))
                if target is not None and math.isfinite(target):
                    metrics.append(Metric(f"target.{name}", shown(target), p.time_ms, p.step))
        chart = chart_link(self.experiment_id, self.parent_run_id,
                           (f"best_{self.objective}", f"trial_{self.objective}"))
        tags[NOTE_TAG] = best_note(best, self.objective, tags.get("calib.best_run"), chart, SPAN_NOTE)
        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self._log_new(self.parent_run_id, metrics)

    def note_no_answer(self, text: str) -> None:
        """The parent run's description while the study has no best trial (``no_answer_note``)."""
        assert self.parent_run_id is not None
        self.client.set_tag(self.parent_run_id, NOTE_TAG, text)

    def _end_broken(self, rid: str, exc: BaseException) -> None:
        """End a trial run whose logging broke off: KILLED when the driver was interrupted,
        FAILED when MLflow or the files failed (best effort: the store may be what broke)."""
        status = "FAILED" if isinstance(exc, Exception) else "KILLED"
        try:
            self.client.set_tag(rid, BROKEN_TAG, f"{exc.__class__.__name__}: {exc}"[:5000])
        except Exception:
            pass
        try:
            self.client.set_terminated(rid, status=status)
        except Exception:
            pass

    def close_stale_runs(self, stale_s: float) -> list[str]:
        """End KILLED the study's trial runs left RUNNING by a driver that died while it
        logged them (logging begun over ``stale_s`` ago: a live driver ends its run within
        seconds); the ledger holds those trials. Returns their run ids."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        now = int(time.time() * 1000)
        closed = []
        for run in self.client.search_runs([self.experiment_id], filter_string=(
                f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
                max_results=1000):
            since = run.data.tags.get(LOGGING_TAG)
            began = int(since) if since and since.isdigit() else (run.info.start_time or 0)
            if now - began < stale_s * 1000:
                continue
            self.client.set_tag(run.info.run_id, BROKEN_TAG,
                                "the driver stopped while this run was logged; the ledger has the trial")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
        return closed

    def end_study(self, metrics: dict[str, float], files: dict[str, str] | None = None,
                  status: str = "FINISHED", step: int = 0, end_ms: int | None = None) -> None:
        """Close the study's parent run with its summary metrics and text ``files``
        (name -> content, e.g. the Pareto front as JSON); ``status``: FINISHED, KILLED
        (interrupted) or FAILED (stopped on an error). ``step``: the summary's step (the
        number of finished trials it counts: a reopened study whose ledger has not changed
        logs nothing again); ``end_ms``: the end of the run and the metrics' timestamp (the
        last trial's end in the ledger; None: now). The run is ended even when the summary
        cannot be written."""
        from mlflow.entities import Metric

        if self.parent_run_id is None:
            return
        end = end_ms if end_ms is not None else int(time.time() * 1000)
        try:
            for name, text in (files or {}).items():
                self.client.log_text(self.parent_run_id, text, name)
            self._log_new(self.parent_run_id, [Metric(k, shown(v), end, step) for k, v in metrics.items()
                                               if v is not None and math.isfinite(v)])
        finally:
            self.client.set_terminated(self.parent_run_id, status=status, end_time=end)


def log_study_folder(tracking_uri: str, study_name: str, uid: str | None, folder: Path, artifact_path: str) -> str:
    """Log ``folder``'s files under ``artifact_path`` of study ``study_name``'s parent run
    (found by its tags); returns the run id. ``LookupError`` when the study has no run there."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study_name)
    if exp is None:
        raise LookupError(f"no MLflow experiment {study_name!r} at {tracking_uri}")
    query = (f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{ROLE_TAG}` = 'study'"
             + (f" and tags.`{UID_TAG}` = '{uid}'" if uid else ""))
    found = client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"],
                               max_results=1)
    if not found:
        raise LookupError(f"no parent run of study {study_name!r} in MLflow experiment {exp.experiment_id}")
    rid = found[0].info.run_id
    client.log_artifacts(rid, str(folder), artifact_path)
    return rid
