"""How a study waits on an MLflow store that is slow or gone: the HTTP retries of a tracking
server (``HTTP_RETRIES``), and ``MlflowClient`` wrappers that wait out a locked SQLite store
(``LockPatient``) or skip calls while a server is unreachable (``OutageAware``).
"""

from __future__ import annotations

import math
import time

import tenacity

HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""How long a study waits for a tracking server that does not answer: 3 retries 1, 2, 4 s
apart, 30 s per request (``MlflowTracker``)."""


class LockPatient:
    """An ``MlflowClient`` whose calls are retried for up to ``patience_s`` while SQLite
    reports "database is locked" (one call is one transaction: a locked one wrote nothing)."""

    def __init__(self, client, patience_s: float = 120.0) -> None:
        self._client = client
        self._patience = patience_s

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        return tenacity.retry(retry=tenacity.retry_if_exception(_locked), stop=tenacity.stop_after_delay(self._patience),
                              wait=tenacity.wait_exponential(multiplier=0.05, max=1.0), reraise=True)(attr)


def _locked(exc: BaseException) -> bool:
    """SQLite's "database is locked", as MLflow passes it on: inside its own exception's
    message (MLflow's store re-raises SQLAlchemy's errors as ``MlflowException`` text), so
    the message is all there is to tell it by."""
    return "database is locked" in str(exc)


class OutageAware:
    """An ``MlflowClient`` for a tracking server: once a call finds the server unreachable
    (MLflow's retries spent), calls fail at once for ``pause_s`` instead of each waiting out
    the retries again; the trials finished meanwhile are logged later (``StudySession.backfill``)."""

    def __init__(self, client, pause_s: float = 60.0) -> None:
        self._client = client
        self._pause = pause_s
        self._down_until = -math.inf
        self._why = ""

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if time.monotonic() < self._down_until:
                raise ConnectionError(f"the MLflow server is unreachable (skipping calls for up to "
                                      f"{self._pause:g} s): {self._why}")
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                text = str(exc)
                if "Max retries exceeded" in text or "Connection refused" in text or "timed out" in text:
                    self._down_until = time.monotonic() + self._pause
                    self._why = text.splitlines()[0][:300] if text else exc.__class__.__name__
                raise
        return call
