"""The ledger's database: a storage URL checked before anything is written, whether a study
exists, and Optuna's RDB storage opened (heartbeats, SQLite write locks, drivers racing to
create the schema)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import optuna
import tenacity
from optuna.trial import FrozenTrial

from calib.core.errors import InputError


def _db_error(exc: BaseException) -> str:
    """The first line of a database error (the driver's own, when SQLAlchemy wraps one)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else exc.__class__.__name__


def shown(url) -> str:
    """A database URL as it may be printed: its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the --storage URL>"


def check_storage(url: str, timeout_s: int = 5, runs_dir: Path | None = None) -> None:
    """Refuse, before anything is written, a storage URL that cannot be used: malformed, a
    database whose driver is missing, or a server that cannot be reached or refuses the
    credentials within ``timeout_s`` (``InputError`` on ``--storage``). A SQLite file is
    created on first use: with ``runs_dir`` (a command that creates the study) it must be
    creatable, i.e. not a folder, and in an existing writable folder or in the runs folder
    (which the command makes); SQLite creates the database file but not its folder."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    try:
        u = make_url(url)
        u.get_dialect().import_dbapi()  # the driver is installed
    except Exception as exc:
        raise InputError("--storage", "url", f"not a usable SQLAlchemy URL: {url!r} ({exc.__class__.__name__}: "
                                             f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    if u.get_backend_name() == "sqlite":
        if runs_dir is not None and u.database not in (None, "", ":memory:"):
            from calib.core.paths import check_sqlite_file

            check_sqlite_file(Path(u.database), "--storage", "url", folder_made=runs_dir)
        return
    args = {"connect_timeout": timeout_s} if u.get_backend_name() in ("postgresql", "mysql") else {}
    engine = create_engine(u, connect_args=args, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        raise InputError("--storage", "url", f"cannot open {shown(u)}: {_db_error(exc)}") from exc
    finally:
        engine.dispose()


def study_exists(name: str, storage: str) -> bool:
    """Whether ``storage`` holds a study ``name``, read without writing anything (no SQLite
    file, no schema is created to find out); a database that cannot be read is an
    ``InputError`` on ``--storage``."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return False
    engine = create_engine(storage, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("studies"):
                return False
            row = conn.execute(text("SELECT 1 FROM studies WHERE study_name = :n"), {"n": name}).first()
            return row is not None
    except Exception as exc:
        raise InputError("--storage", "url", f"cannot read the studies in {shown(storage)}: {_db_error(exc)}") from exc
    finally:
        engine.dispose()


# what a database says when another process created Optuna's schema (or its version row)
# between this one's check and its write: PostgreSQL, then SQLite
_SCHEMA_RACE = ("already exists", "UniqueViolation", "duplicate key", "UNIQUE constraint failed")


def _schema_race(exc: BaseException) -> bool:
    """Whether opening the storage failed because drivers on other hosts created the schema
    of a new database at once (retried). Told by the message: Optuna re-raises the driver's
    error inside its own, and the two databases name it differently."""
    text = repr(exc) + repr(exc.__cause__)
    return any(k in text for k in _SCHEMA_RACE)


def rdb_storage(url: str, heartbeat_s: int | None = None, grace_s: int | None = None,
                on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``, with heartbeats every ``heartbeat_s`` s and trials
    without one for ``grace_s`` s handed to ``on_stale`` (None: no heartbeat).

    SQLite has no row locks (``SELECT ... FOR UPDATE`` is ignored), so two drivers taking
    the same queued trial would both read it WAITING: each transaction starts with ``BEGIN
    IMMEDIATE`` instead (SQLAlchemy's recipe for pysqlite), which serialises them, and waits
    up to a minute for a lock another driver holds."""
    sqlite = url.startswith("sqlite")
    kwargs: dict = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if sqlite else {}

    @tenacity.retry(retry=tenacity.retry_if_exception(_schema_race), stop=tenacity.stop_after_attempt(5),
                    wait=tenacity.wait_random(0.5, 1.5), reraise=True)
    def open_storage() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                              heartbeat_stale_trial_callback=on_stale if heartbeat_s else None,
                                              **kwargs)

    storage = open_storage()
    if sqlite:
        _immediate_transactions(storage.engine)
    return storage


def _immediate_transactions(engine) -> None:
    """pysqlite: no implicit transactions of its own; every SQLAlchemy transaction begins
    with ``BEGIN IMMEDIATE`` (takes the write lock up front)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the hooks are not reused
