"""The Optuna study as the ledger of trials: open or resume a study, check that a resumed
study is the same calibration, and recover trials left RUNNING by a dead driver.

User attributes calib writes on each trial (names are part of the ledger format):
``calib_driver`` (host/boot-id/pid-namespace:pid:start-ticks of the driving process), ``calib_workdir``,
``calib_jobs`` (backend:job-id of the current phase's runs), ``calib_seed``, ``table_s1``,
``calib_fidelity``, ``fail_reason``, ``calib_lost`` (True: the slot is re-proposed),
``proposal_s``, ``calib_confirms`` and ``calib_confirm`` (a transfer confirmation,
``calib.optimize.confirmation``), ``core_s``, ``wall_s`` (the first run) and ``run_wall_s`` (every run); from
the stage's ``Score`` (``calib.stages.base.Score.ledger_attrs``): ``observables``,
``errors`` (per objective), ``objective_errors`` (signed error per objective: what
scalarisations and the Pareto front use), ``residuals`` and ``residual_sd`` (what the
composite optimiser models), ``penalty``, ``equilibrated``, ``report`` (the JSON report's
``best_observables``), ``summary_lines`` and the stage's own (slurry: ``viscosity`` per
shear rate, ``density_converged``, ``density_convergence``; drying: ``profiles``;
calendering: ``calendering``, ``profiles_by_degree``; characterise: ``characterisation``).
Study attributes: the identity (``calib_spec``), the study file, the dataset path, the
target fidelity, ``lineage`` and the stage's own (``viscosity_curve_source``).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from calib.core.errors import InputError

SPEC_ATTR = "calib_spec"
STUDY_FILE_ATTR = "calib_study_spec"
DATASET_PATH_ATTR = "calib_dataset_path"
STUDY_PATH_ATTR = "calib_study_path"
"""Study attribute: the study file the study was created from (relative paths in it resolve there)."""
IDENTITY_KEYS = ("stage", "dataset", "fidelity", "space", "physics")
UID_ATTR = "calib_uid"
TARGET_FIDELITY_ATTR = "calib_target_fidelity"
"""Study attribute: the fidelity the study's answer is judged at."""
FIDELITY_ATTR = "calib_fidelity"
"""Trial attribute: the fidelity the trial ran at."""
MANUAL_ATTR = "calib_manual"
"""Trial attribute of a manual trial (``calib refine``): where its set came from (``--set``, ``--file F``, ``--scan K``)."""
OUTSIDE_ATTR = "calib_outside_bounds"
"""Trial attribute: the free keys a manual set put outside the study's bounds."""
FALLBACK_ATTR = "calib_proposal_fallback"
"""Why the model could not propose this trial (its GP fit or acquisition failed): it got a
quasi-random (Sobol) point instead."""
CONFIRM_ATTR = "calib_confirms"
"""Trial attribute of a transfer confirmation (``calib.optimize.confirmation``): the number of the trial
whose set it runs again at the target protocol on fresh placements."""
CONFIRM_SETTINGS_ATTR = "calib_confirm"
"""Trial attribute of a transfer confirmation: its compression and replicates."""
CONFIRM_FIDELITY = "confirm"
"""The fidelity name a confirmation trial records (``FIDELITY_ATTR``)."""
CARRIED_ATTRS = (FIDELITY_ATTR, MANUAL_ATTR, OUTSIDE_ATTR, CONFIRM_ATTR, CONFIRM_SETTINGS_ATTR)
"""Trial attributes a re-proposed trial keeps from the lost one (its fidelity; that it was
a manual set, ``calib.optimize.manual_sets``, or a confirmation, ``calib.optimize.confirmation``)."""
STOPPED_ATTR = "stopped_early"
"""Trial attribute of a trial its stage stopped before its protocol ended (``Score.stopped``:
why); its observables bound the protocol's from one side, so it is data for the proposer
but never the study's answer (``at_target`` leaves it out)."""
POSTERIOR_ATTR = "calib_posterior"
"""Study attribute: the posterior of the free keys when the study last ended
(``calib.optimize.posterior.Posterior.as_dict``), or ``{"not_computed": why}``."""


def _proc_start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _machine() -> str:
    """This machine and process namespace: host name, boot id and PID-namespace inode (two
    containers with one host name, or a rebooted host, are other machines)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "?"
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = "?"
    return f"{socket.gethostname()}/{boot}/{ns}"


def driver_id() -> str:
    """machine:pid:start-ticks of this process (``_machine``; start ticks guard against pid
    reuse)."""
    pid = os.getpid()
    return f"{_machine()}:{pid}:{_proc_start_ticks(pid)}"


def driver_alive(ident: str) -> bool | None:
    """True/False if the driver ``ident`` is alive on this machine; None if on another
    machine, or if this system cannot tell (no ``/proc``)."""
    try:
        host, pid, ticks = ident.rsplit(":", 2)
    except ValueError:
        return False
    if host == socket.gethostname():  # written by calib before machine ids: the host name alone
        host = _machine()
    if host != _machine() or "?" in host or ticks == "None":
        return None
    return _proc_start_ticks(int(pid)) == ticks


def identity(stage: str, dataset: str, fidelity: str, space: dict[str, list], physics: dict) -> dict:
    """What must match for a study to be resumed: stage, dataset, fidelity, search space and
    everything that changes what a trial's value means (``physics``: LJ style, fixed keys,
    stage settings, objective, the resolved fidelity, the dataset file's checksum)."""
    return {"stage": stage, "dataset": dataset, "fidelity": fidelity, "space": space, "physics": physics}


def check_resumable(study: optuna.Study, ident: dict, storage: str) -> None:
    """Raise ``InputError`` if an existing study was a different calibration."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return
    old = json.loads(stored)
    new = json.loads(json.dumps(ident, sort_keys=True))  # same JSON normalisation as stored
    for key in IDENTITY_KEYS:
        a, b = old.get(key), new.get(key)
        if key == "physics" and isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    raise InputError(storage, f"physics.{sub}",
                                     f"study {study.study_name!r} exists with {a.get(sub)!r}; this run asks for "
                                     f"{b.get(sub)!r} (use another study name)")
        if a != b:
            raise InputError(storage, key, f"study {study.study_name!r} exists with {key}={a!r}; "
                                           f"this run asks for {b!r} (use another study name)")


def _db_error(exc: BaseException) -> str:
    """The first line of a database error (the driver's own, when SQLAlchemy wraps one)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else exc.__class__.__name__


def _shown(url) -> str:
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
        raise InputError("--storage", "url", f"cannot open {_shown(u)}: {_db_error(exc)}") from exc
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
        raise InputError("--storage", "url", f"cannot read the studies in {_shown(storage)}: {_db_error(exc)}") from exc
    finally:
        engine.dispose()


# what a database says when another process created Optuna's schema (or its version row)
# between this one's check and its write: PostgreSQL, then SQLite
_SCHEMA_RACE = ("already exists", "UniqueViolation", "duplicate key", "UNIQUE constraint failed")


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
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                                     heartbeat_stale_trial_callback=on_stale if heartbeat_s else None,
                                                     **kwargs)
            break
        except Exception as exc:  # drivers on other hosts creating the schema of a new database at once
            text = repr(exc) + repr(exc.__cause__)
            if attempt == 4 or not any(k in text for k in _SCHEMA_RACE):
                raise
            time.sleep(0.5 + random.random())
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


def open_study(name: str, storage: str | optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
               ident: dict, spec_json: str | None = None, dataset_path: str | None = None,
               study_path: str | None = None) -> optuna.Study:
    """Create or resume study ``name`` (minimise) and record its identity and full spec
    (several drivers may do so at once)."""
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize",
                                    load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # another driver created it between the check and the insert
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    check_resumable(study, ident, storage)
    if UID_ATTR not in study.user_attrs:
        study.set_user_attr(UID_ATTR, uuid.uuid4().hex[:12])
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, json.dumps(ident, sort_keys=True))
    if spec_json is not None and STUDY_FILE_ATTR not in study.user_attrs:
        study.set_user_attr(STUDY_FILE_ATTR, spec_json)
    if dataset_path is not None and DATASET_PATH_ATTR not in study.user_attrs:
        study.set_user_attr(DATASET_PATH_ATTR, dataset_path)
    if study_path is not None and STUDY_PATH_ATTR not in study.user_attrs:
        study.set_user_attr(STUDY_PATH_ATTR, study_path)
    return study


REPROPOSED_ATTR = "calib_reproposed_from"
"""Trial attribute: the number of the lost trial whose parameters this trial re-runs."""
RESUME_ATTR = "calib_resume"
"""Trial attribute of a re-proposed trial: where the lost trial ran (``workdir``) and its
backend jobs (``jobs``), so that a driver on a backend whose jobs outlive their driver
re-attaches to them instead of running the trial again."""


def lost_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the lost trials: FAIL trials whose driver stopped or died while they ran
    (``calib_lost``, or re-proposed by a later trial). They do not count against the budget."""
    trials = list(trials)
    reproposed = {t.user_attrs[REPROPOSED_ATTR] for t in trials if REPROPOSED_ATTR in t.user_attrs}
    return {t.number for t in trials if t.state == TrialState.FAIL
            and (t.user_attrs.get("calib_lost") or t.number in reproposed)}


def is_confirmation(t: FrozenTrial) -> bool:
    """A transfer confirmation (``calib.optimize.confirmation``): outside the budget and the answer."""
    return t.user_attrs.get(CONFIRM_ATTR) is not None


def budget_count(study: optuna.Study) -> int:
    """Trials that count against the budget, whichever driver runs them: COMPLETE, FAIL
    unless lost, and RUNNING; confirmations do not count."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    return sum(1 for t in trials if not is_confirmation(t) and (t.state in (TrialState.COMPLETE, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and t.number not in lost)))


def finished_count(study: optuna.Study) -> int:
    """Trials that have finished and count against the budget: COMPLETE, and FAIL unless
    lost; confirmations do not count."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    return sum(1 for t in trials if not is_confirmation(t) and (t.state == TrialState.COMPLETE
               or (t.state == TrialState.FAIL and t.number not in lost)))


def within_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` is one of the first ``n_trials`` trials that count (numbers
    are handed out atomically, so drivers racing for the last slot agree on who got it)."""
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)
    ahead = sum(1 for t in trials if t.number < number and t.number not in lost and not is_confirmation(t)
                and t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL))
    return ahead < n_trials


def requeue(study: optuna.Study, t: FrozenTrial) -> None:
    """Enqueue the parameters of lost trial ``t`` (and where it ran) so that a driver runs,
    or re-attaches to, the same point."""
    if not t.params:
        return
    attrs: dict = {REPROPOSED_ATTR: t.number}
    for key in CARRIED_ATTRS:
        if key in t.user_attrs:
            attrs[key] = t.user_attrs[key]
    if t.user_attrs.get("calib_jobs") and t.user_attrs.get("calib_workdir"):
        attrs[RESUME_ATTR] = {"workdir": t.user_attrs["calib_workdir"], "jobs": t.user_attrs["calib_jobs"]}
    study.enqueue_trial(dict(t.params), user_attrs=attrs)


class Recovery:
    """Finds trials whose driver is gone, fails them and re-queues their parameters.

    Liveness is Optuna's heartbeat: each driver records one for its running trials every
    ``heartbeat_interval`` s; a trial without one for ``grace_period`` s is failed as
    ``optuna.storages.fail_stale_trials`` does (exactly one driver wins the trial), with the
    ledger's reason (``_fail_stale``), and this object, the stale-trial callback, re-queues it. On top, a trial whose
    driver ran on this host and has exited is recovered at once (``driver_alive``), without
    waiting for the grace period, and a trial that was asked more than ``grace_s`` ago but
    never tagged (its driver died inside ``ask``, before its first heartbeat) is recovered
    too (its start time is the asking host's clock). ``recovered`` lists the trials recovered by this process.
    """

    def __init__(self, grace_s: float | None = None) -> None:
        self.grace_s = grace_s
        self.recovered: list[FrozenTrial] = []

    def __call__(self, study: optuna.Study, t: FrozenTrial) -> None:
        """The stale-trial callback (``t`` is already FAIL)."""
        requeue(study, t)
        self.recovered.append(t)

    def _fail_stale(self, study: optuna.Study) -> None:
        """``optuna.storages.fail_stale_trials`` with the ledger's reason: each trial whose
        heartbeat is stale (the heartbeat storage's ``_get_stale_trial_ids``, which Optuna's
        own function uses) gets ``fail_reason`` and ``calib_lost`` while it can (a finished
        trial's attributes cannot be set), then is failed, and the trials this driver failed
        go to the stale-trial callback (this object) as Optuna's function does."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.storages._heartbeat import is_heartbeat_enabled

        storage = study._storage
        if not is_heartbeat_enabled(storage):
            return
        backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
        grace = getattr(backend, "grace_period", None) or 2 * storage.get_heartbeat_interval()
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            try:
                ident = storage.get_trial(trial_id).user_attrs.get("calib_driver", "?")
                storage.set_trial_user_attr(trial_id, "fail_reason",
                                            f"driver lost: no heartbeat for over {grace:g} s (driver {ident})")
                storage.set_trial_user_attr(trial_id, "calib_lost", True)
                if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another driver failed it first (and gave the reason)
                continue
            self(study, storage.get_trial(trial_id))

    def sweep(self, study: optuna.Study) -> list[FrozenTrial]:
        """Recover what can be recovered now; returns the trials recovered by this sweep."""
        from optuna.exceptions import UpdateFinishedTrialError

        before = len(self.recovered)
        storage = study._storage
        self._fail_stale(study)
        now = datetime.datetime.now()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ident = t.user_attrs.get("calib_driver")
            if ident:
                if driver_alive(ident) is not False:  # alive, or another host: the heartbeat decides
                    continue
                why = f"driver lost: process {ident} ended while the trial ran"
            else:  # asked but never tagged nor beating: its driver died within ask
                if (self.grace_s is None or t.datetime_start is None
                        or (now - t.datetime_start).total_seconds() < self.grace_s):
                    continue
                why = f"driver lost: the trial was asked {self.grace_s:g}+ s ago and never tagged by a driver"
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", why)
                storage.set_trial_user_attr(t._trial_id, "calib_lost", True)
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another driver recovered it, or its own told it
                continue
            self(study, storage.get_trial(t._trial_id))
        return self.recovered[before:]


def at_target(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials run at the study's target fidelity (all of them, unless the study is
    multi-fidelity) that ran their whole protocol (not ``STOPPED_ATTR``): the trials a
    study's answer is judged on."""
    target = study.user_attrs.get(TARGET_FIDELITY_ATTR)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_confirmation(t)
            and not t.user_attrs.get(STOPPED_ATTR)
            and (target is None or t.user_attrs.get(FIDELITY_ATTR, target) == target)]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The lowest objective among the target-fidelity trials (``at_target``)."""
    done = at_target(study)
    return min(done, key=lambda t: t.value) if done else None


def proposal_kind(attrs: dict, number: int, sampler: str, n_initial: int) -> str:
    """How trial ``number`` (its ledger attributes ``attrs``) was proposed: ``manual (...)``
    (``calib refine``), ``re-attached (trial n)``, ``re-proposed (trial n)`` (a lost trial's
    point run again), ``sobol (no model)``, ``quasi-random fallback (model failed)`` / ``random (no model)``, ``initial design`` or
    ``model``."""
    if attrs.get(CONFIRM_ATTR) is not None:
        return f"confirmation (trial {attrs[CONFIRM_ATTR]})"
    if attrs.get(MANUAL_ATTR):
        return f"manual ({attrs[MANUAL_ATTR]})"
    if attrs.get("calib_reattached"):
        return f"re-attached (trial {attrs.get(REPROPOSED_ATTR)})"
    if attrs.get(REPROPOSED_ATTR) is not None:
        return f"re-proposed (trial {attrs[REPROPOSED_ATTR]})"
    if sampler in ("sobol", "random"):
        return f"{sampler} (no model)"
    if attrs.get(FALLBACK_ATTR):
        return "quasi-random fallback (model failed)"
    return "initial design" if number < n_initial else "model"
