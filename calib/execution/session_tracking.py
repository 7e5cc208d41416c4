"""The MLflow side of a study session: the study's parent run (started with the study's tags,
parameters and dataset; its best-so-far view and series; the study's summary and posterior
when it closes), a run per told trial, a run per trial that ended without running to
completion, and the backfill of finished trials that have no run.

``SessionTracking`` reads the ledger (the Optuna study) and writes to MLflow through a
``Tracker``; tracking is an attachment: its errors are warnings (``emit``), except that a
store that cannot be used at all stops the study before it starts (``start``). What it logs
is read from the ledger, so that any driver, at any time, logs the same: the best-so-far
series (``best_series``), the runs' start and end (the trials' ``datetime_start`` and
``datetime_complete``), the summary's step (the number of finished trials).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from sim_backends.lammps.outputs import lammps_version

from calib import ledger
from calib.core.errors import InputError
from calib.execution.session_types import ActiveTrial, Event, LoopConfig, Told
from calib.ledger import FIDELITY_ATTR, best_trial
from calib.optimize import confirmation as confirm
from calib.review.caveats import study_caveats
from calib.review.run_tags import experiment_description, flag_tags, review_tags
from calib.review.summary import pareto
from calib.review.tracker import Tracker
from calib.review.tracking_records import (RECORD_FILE, BestPoint, BestRecord, DatasetRecord, TrialRecord,
                                           no_answer_note, objective_metric)
from calib.stages.upstream_state import Lineage
from calib.study.load import LoadedStudy
from calib.study.space import ParameterSpace
from calib.study.target_rows import target_rows


def ledger_ms(when: datetime.datetime | None) -> int | None:
    """A ledger time (Optuna's ``datetime_start`` / ``datetime_complete``: naive local time)
    in ms since the epoch; None for None."""
    return None if when is None else int(when.timestamp() * 1000)


def simulated(t: optuna.trial.FrozenTrial, name: str) -> float | None:
    """Trial ``t``'s value of target observable ``name`` (its ``errors`` attribute), if any."""
    sim = ((t.user_attrs.get("errors") or {}).get(name) or {}).get("simulated")
    return float(sim) if isinstance(sim, (int, float)) and not isinstance(sim, bool) else None


def best_series(trials: list[optuna.trial.FrozenTrial], judged: set[int],
                targets: dict[str, float]) -> list[BestPoint]:
    """The study run's best-so-far series from the ledger's ``trials``: at step n, the best
    (lowest objective) of trials 0..n among those the study is judged on (``judged``:
    ``ledger.at_target``'s numbers), with its value of each target observable (``targets``:
    name -> target value), timed when trials 0..n had all finished. The series stops before
    the first trial not finished: a step is known once its trials have finished, and then
    never changes. Steps before the first judged trial have no point."""
    points: list[BestPoint] = []
    best: optuna.trial.FrozenTrial | None = None
    time_ms = 0
    for t in sorted(trials, key=lambda t: t.number):
        if not t.state.is_finished():
            break
        time_ms = max(time_ms, ledger_ms(t.datetime_complete) or 0)
        if t.number in judged and t.value is not None and (best is None or t.value < best.value):
            best = t
        if best is not None and best.value is not None:
            points.append(BestPoint(t.number, time_ms, float(best.value),
                                    {name: (simulated(best, name), float(v)) for name, v in targets.items()}))
    return points


def active_seconds(spans: list[tuple[float, float]]) -> float:
    """The time covered by the union of ``spans`` ((start, end) in s): the time during which
    at least one of them ran."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


class SessionTracking:
    """See the module docstring."""

    def __init__(self, study: optuna.Study, tracker: Tracker, loaded: LoadedStudy, space: ParameterSpace,
                 cfg: LoopConfig, emit: Callable[[Event], None]) -> None:
        self.study, self.tracker, self.loaded, self.spec = study, tracker, loaded, loaded.spec
        self.space, self.cfg, self.emit = space, cfg, emit

    def start(self, uid: str, lineage: Lineage | None) -> None:
        """Find or create the study's experiment and parent run (``Tracker.start_study``;
        a new parent run starts with the study's first trial, if it has one already); a store
        that cannot be used is an ``InputError`` (``--tracking-uri``)."""
        spec, loaded = self.spec, self.loaded
        starts = [ms for t in self.study.get_trials(deepcopy=False) if (ms := ledger_ms(t.datetime_start)) is not None]
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
                                     stale_s=float(self.cfg.grace_s), start_ms=min(starts) if starts else None,
                                     free_keys=tuple(self.space.keys))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError("--tracking-uri", "uri", f"cannot use the MLflow store: {exc.__class__.__name__}: "
                                                      f"{first}") from exc

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
                self.tracker.log_trial(self.record_of(t), run_id=logged.get(t.number))
                done.append(t.number)
            except Exception as exc:
                self.emit(Event("warning", t.number, f"MLflow logging failed: {exc}"))
        if done:
            self.emit(Event("warning", -1, f"trial{'s' if len(done) > 1 else ''} {', '.join(map(str, done))} had "
                                           "no complete MLflow run (the "
                                           "tracking store was unreachable, or their driver stopped while logging): "
                                           "logged now"))
            try:
                self.update_best()
            except Exception as exc:
                self.emit(Event("warning", -1, f"MLflow logging failed: {exc}"))

    def record_of(self, t: optuna.trial.FrozenTrial) -> TrialRecord:
        """A finished trial's MLflow record: the one its driver kept in its directory, else
        what the ledger has (parameters, objective, observables, the reason of a failure);
        its start and end are the ledger's."""
        workdir = Path(t.user_attrs["calib_workdir"]) if t.user_attrs.get("calib_workdir") else None
        kept = workdir / RECORD_FILE if workdir else None
        times = {"start_ms": ledger_ms(t.datetime_start), "end_ms": ledger_ms(t.datetime_complete),
                 "free_keys": tuple(self.space.keys)}
        if kept is not None and kept.exists():
            r = TrialRecord.from_json(kept.read_text())
            return dataclasses.replace(r, tags={**r.tags, "calib.logged_late": "from the trial's record"}, **times)
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
                           metrics, tags, files, artifact_root=workdir, **times)

    def log_trial(self, a: ActiveTrial, told: Told) -> None:
        """A told trial's MLflow run (its record kept in its directory first, for
        ``backfill``), then the parent run's view of the best trial."""
        try:
            record = self._record_of_told(a, told)
        except Exception as exc:  # tracking is an attachment: the ledger already has the trial (backfill logs it)
            self.emit(Event("warning", a.number, f"could not build the trial's MLflow record: "
                                                 f"{exc.__class__.__name__}: {exc}"))
            return
        try:  # kept first: if MLflow cannot take it now, a later driver logs it from here (``backfill``)
            (a.workdir / RECORD_FILE).write_text(record.to_json())
        except Exception as exc:
            self.emit(Event("warning", a.number, f"could not keep the trial's MLflow record: {exc}"))
        try:
            run_id = self.tracker.log_trial(record)
            self.update_best()
        except Exception as exc:  # tracking is an attachment: the ledger already has the trial
            self.emit(Event("warning", a.number, f"MLflow logging failed: {exc}"))
        else:
            if run_id:
                (a.workdir / "mlflow_run_id").write_text(run_id + "\n")

    def _record_of_told(self, a: ActiveTrial, told: Told) -> TrialRecord:
        """The MLflow record of a trial just told."""
        ex, score, state = a.execution, told.score, told.state
        main_log = next((r.workdir / r.log for r in ex.runs if r.argv is None), a.workdir / "log.lammps")
        log_text = main_log.read_text(errors="replace") if main_log.exists() else ""
        tags = {**self.base_tags, "fidelity": a.fidelity, "lammps_version": lammps_version(log_text) or "unknown"}
        wall = ex.wall_s
        first = ex.runs[0].key if ex.runs else ""
        metrics: dict[str, float] = {"wall_time_s": wall.get(first, math.nan),
                                     "wall_time_total_s": float(sum(wall.values())), "core_s": told.core_s}
        artifacts = [a.workdir / "params.json"] + [r.workdir / f for r in ex.runs for f in r.artifacts]
        metrics.update(told.metrics)  # the stage's metrics, also when its results could not be stored
        if score is not None:
            tags.update({k: str(v) for k, v in score.attrs.items() if isinstance(v, (str, bool))})
            if score.stopped:
                tags[f"calib.{ledger.STOPPED_ATTR}"] = score.stopped[:5000]
            artifacts.extend(p for p in score.plots if p.exists())
        elif told.partial:  # e.g. a failed shear run keeps the slurry's density
            metrics.update(told.partial)
        if state == "COMPLETE":
            assert score is not None
            metrics[self.objective_metric] = score.value
        else:
            tags["fail_reason"] = told.outcome.why[:5000]
        tags.update(review_tags(self.spec, self.space, a.number, a.trial.user_attrs, a.params, a.workdir))
        tags.update(flag_tags(score, state, tags))
        start, end = self._ledger_times(a.trial._trial_id)
        return TrialRecord(a.number, state, {**self.space.fixed, **a.params}, metrics, tags, tuple(artifacts),
                           artifact_root=a.workdir, start_ms=a.started_ms if start is None else start, end_ms=end,
                           free_keys=tuple(self.space.keys))

    def _ledger_times(self, trial_id: int | None = None, number: int | None = None) -> tuple[int | None, int | None]:
        """A told trial's start and end in the ledger (ms since the epoch), by its storage id
        or its number; (None, None) when the ledger cannot say (its run then ends now)."""
        try:
            storage = self.study._storage
            if trial_id is None:
                trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
            t = storage.get_trial(trial_id)
            return ledger_ms(t.datetime_start), ledger_ms(t.datetime_complete)
        except Exception:
            return None, None

    def update_best(self) -> None:
        """The parent run's view of the best trial so far (``Tracker.update_best``): the
        best trial (``ledger.best_trial``), its target observables next to their targets, and
        the best-so-far series read from the ledger (``best_series``; the tracker logs the
        steps it does not hold yet)."""
        best = best_trial(self.study)
        if best is None:
            self._note_no_answer()
            return
        judged = {t.number for t in ledger.at_target(self.study)}
        targets = {name: float(target.value) for name in self.spec.objective.targets
                   if (target := self.loaded.dataset.targets.get(name)) is not None}
        series = best_series(self.study.get_trials(deepcopy=False), judged, targets)
        obs: dict[str, tuple[float | None, float | None]] = {name: (simulated(best, name), value)
                                                             for name, value in targets.items()}
        checked = confirm.summary(self.study, best.number)
        caveats = study_caveats(self.study)
        self.tracker.update_best(BestRecord(best.number, float(best.value), dict(best.user_attrs.get("table_s1") or {}),
                                            obs, confirm.one_line(checked) if checked else None,
                                            caveats.lines if caveats is not None else ()), series)

    def failure(self, number: int, free: dict[str, float], reason: str, workdir: Path | None = None,
                fid: str | None = None) -> None:
        """An MLflow run for a trial that ended without running to completion."""
        try:
            files = tuple(p for p in workdir.rglob("*") if p.name in ("log.lammps", "characterise.log")
                          or p.name.startswith("in.")) if workdir else ()
            start, end = self._ledger_times(number=number)
            self.tracker.log_trial(TrialRecord(number, "FAIL", {**self.space.fixed, **free}, {},
                                               {**self.base_tags, "fidelity": fid or self.spec.fidelity,
                                                "fail_reason": reason[:5000], "calib.flags": "FAILED",
                                                "calib.equilibrated": "n/a"}, files, artifact_root=workdir,
                                               start_ms=start, end_ms=end, free_keys=tuple(self.space.keys)))
        except Exception as exc:
            self.emit(Event("warning", number, f"MLflow logging failed: {exc}"))

    def _note_no_answer(self) -> None:
        """Without a best trial: the parent's description says why, once a trial has finished."""
        trials = [t for t in self.study.get_trials(deepcopy=False) if not ledger.is_confirmation(t)]
        lost = ledger.lost_numbers(trials)
        failures = {t.number: str(t.user_attrs.get("fail_reason") or "") for t in trials
                    if t.state == optuna.trial.TrialState.FAIL and t.number not in lost}
        complete = sum(1 for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
        if failures or complete:
            self.tracker.note_no_answer(no_answer_note(self.study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR),
                                                       failures, complete))

    def close(self, status: str = "FINISHED") -> None:
        """The study's summary on its MLflow parent run, which ends ``status`` (FINISHED;
        KILLED when the driver was interrupted, FAILED when it stopped on an error) at the
        last trial's end: metrics at the step of the number of finished trials, among them
        ``wall_time_active_s`` (``active_seconds`` of the trials' spans). Every step is guarded:
        the parent run is ended even when the ledger cannot be read."""
        study = self.study
        try:
            self.update_best()  # the series' last points (trials other drivers finished)
        except Exception as exc:
            self.emit(Event("warning", -1, f"MLflow logging failed: {exc}"))
        metrics: dict[str, float] = {}
        files: dict[str, str] = {}
        step, end_ms = 0, None
        try:
            finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
            spans = [(t.datetime_start.timestamp(), t.datetime_complete.timestamp()) for t in finished
                     if t.datetime_start is not None and t.datetime_complete is not None]
            step = len(finished)
            end_ms = max((ms for t in finished if (ms := ledger_ms(t.datetime_complete)) is not None), default=None)
            front = pareto(study)
            lost = ledger.lost_numbers(study.get_trials(deepcopy=False))
            counted = [t for t in study.get_trials(deepcopy=False) if not ledger.is_confirmation(t)]
            metrics = {"wall_time_active_s": active_seconds(spans), "pareto_size": float(len(front)),
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
            self.tracker.end_study(metrics, files=files, status=status, step=step, end_ms=end_ms)
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
