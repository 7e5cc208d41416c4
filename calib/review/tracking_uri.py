"""Where MLflow tracking goes: the default embedded store (a SQLite file under the run
directory, ``default_tracking_uri``) and the up-front check of a ``--tracking-uri`` that
points elsewhere: a server, a database or a folder (``check_tracking_uri``).
"""

from __future__ import annotations

from pathlib import Path

from calib.core.errors import InputError


def default_tracking_uri(runs_dir: Path) -> str:
    """Embedded store: ``sqlite:///<runs_dir>/mlflow.db``."""
    return f"sqlite:///{(Path(runs_dir) / 'mlflow.db').resolve()}"


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's client would send (``MLFLOW_TRACKING_TOKEN``, or
    ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``), for the up-front probe."""
    import base64
    import os

    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    user, pw = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and pw:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
    return {}


TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Refuse, before anything is written, a ``--tracking-uri`` that cannot be used: a
    scheme MLflow has no store for, a server that does not answer an API call within
    ``timeout_s`` (down, not MLflow, or refusing this host name), or a database that cannot
    be opened, or a local store (a SQLite file, a folder) that cannot be created where the
    URI puts it (``InputError``). MLflow itself would retry an unreachable server for
    minutes, and fail on a local path only once the study had been created."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    if uri == "none":
        return
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme in ("", "file", "sqlite"):
        _check_local_store(uri, scheme)
    if not scheme:  # a local folder (MLflow's file store)
        return
    if scheme not in TRACKING_SCHEMES:
        raise InputError("--tracking-uri", "uri", f"{uri!r}: MLflow has no tracking store for {scheme}:// "
                                                  f"(use http(s)://, a database URL, a folder or 'none')")
    if scheme in ("http", "https"):
        # one cheap API call: it answers only if the server runs, is MLflow and accepts this host name
        probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        try:
            with urllib.request.urlopen(urllib.request.Request(probe, headers=_auth_headers()),
                                        timeout=timeout_s) as resp:
                ok, detail = resp.status == 200, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            body = exc.read(300).decode(errors="replace").strip().splitlines()
            ok, detail = False, f"HTTP {exc.code}" + (f": {body[0]}" if body else "")
        except Exception as exc:  # refused, timed out, name not resolved, TLS
            ok, detail = False, str(getattr(exc, "reason", exc))
        if not ok:
            raise InputError("--tracking-uri", "uri", f"no MLflow server answers at {uri} ({detail})")
    elif scheme in ("postgresql", "mysql", "mssql"):
        from calib.ledger import check_storage

        try:
            check_storage(uri, timeout_s=int(timeout_s))
        except InputError as exc:
            raise InputError("--tracking-uri", "uri", exc.message) from exc


def _check_local_store(uri: str, scheme: str) -> None:
    """A local MLflow store must be creatable: the folder of a SQLite file, or a file store
    (a plain path or ``file://``), must be a writable folder or one that can be created."""
    from urllib.parse import unquote, urlsplit

    from sqlalchemy.engine import make_url

    from calib.core.paths import check_folder, check_sqlite_file

    if scheme == "sqlite":
        try:
            db = make_url(uri).database
        except Exception as exc:
            raise InputError("--tracking-uri", "uri", f"not a usable SQLAlchemy URL: {uri!r} "
                                                      f"({exc.__class__.__name__}: {exc})") from exc
        if db in (None, "", ":memory:"):
            return
        check_sqlite_file(Path(db), "--tracking-uri", "uri")  # MLflow makes the folder itself
    else:
        check_folder(Path(unquote(urlsplit(uri).path)) if scheme == "file" else Path(uri), "--tracking-uri", "uri")
