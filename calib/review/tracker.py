"""The tracker a study reports to (``Tracker``), attached to the loop: the loop runs the same
with ``NullTracker``, which tracks nothing (``calib.review.mlflow_tracker.MlflowTracker``
logs to MLflow).
"""

from __future__ import annotations

from typing import Protocol

from calib.review.tracking_records import BestPoint, BestRecord, DatasetRecord, TrialRecord


class Tracker(Protocol):
    def start_study(self, study_name: str, tags: dict[str, str], params: dict[str, str],
                    objective: str = "objective", dataset: DatasetRecord | None = None,
                    description: str = "", stale_s: float = 120.0, start_ms: int | None = None,
                    free_keys: tuple[str, ...] = ()) -> None: ...
    def log_trial(self, record: TrialRecord, run_id: str | None = None) -> str | None: ...
    def logged_trials(self) -> dict[int, str | None] | None: ...
    def update_best(self, best: BestRecord, series: list[BestPoint]) -> None: ...
    def note_no_answer(self, text: str) -> None: ...
    def end_study(self, metrics: dict[str, float], files: dict[str, str] | None = None,
                  status: str = "FINISHED", step: int = 0, end_ms: int | None = None) -> None: ...


class NullTracker:
    """Tracks nothing."""

    def start_study(self, study_name: str, tags: dict[str, str], params: dict[str, str],
                    objective: str = "objective", dataset: DatasetRecord | None = None,
                    description: str = "", stale_s: float = 120.0, start_ms: int | None = None,
                    free_keys: tuple[str, ...] = ()) -> None:
        return None

    def log_trial(self, record: TrialRecord, run_id: str | None = None) -> str | None:
        return None

    def logged_trials(self) -> dict[int, str | None] | None:
        return None

    def update_best(self, best: BestRecord, series: list[BestPoint]) -> None:
        return None

    def note_no_answer(self, text: str) -> None:
        return None

    def end_study(self, metrics: dict[str, float], files: dict[str, str] | None = None,
                  status: str = "FINISHED", step: int = 0, end_ms: int | None = None) -> None:
        return None
