"""Ledger scale beyond this machine, by simulation: N concurrent worker processes on one
PostgreSQL study with an instant objective. Prints figures; asserts nothing.

    .venv/bin/python bench/ledger_scale.py [--workers 1 4 16 64] [--trials-per-worker 8]
        [--url postgresql+psycopg://...] [--json]

Each worker runs the driver's ledger protocol as ``calib optimize`` does (``calib.execution.trial_lifecycle``),
without LAMMPS and MLflow: open the study (Optuna ``RDBStorage`` with heartbeats,
``calib.ledger.rdb_storage``), and while the budget (``ledger.budget_count``) has room: sweep
for stale trials (``ledger.Recovery``), ``ask`` (random sampler: the proposal costs nothing),
tag the trial and start its heartbeat, give it back if another worker filled the budget
first (``ledger.within_budget``), evaluate an instant objective and ``tell``. Per N it prints
asks per second (all workers, from the first ask to the last tell), the budget, the trials
that counted, duplicates (trial numbers evaluated by more than one worker, and identical
points; must be 0), lost trials (budget slots never filled, or trials left RUNNING/WAITING;
must be 0) and give-backs (races for the last slots, not run). Without ``--url`` a
throw-away PostgreSQL server is started on loopback (``tests/services.Postgres``; needs
root and Debian's ``postgresql``, installed if missing) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def worker(url: str, name: str, budget: int, seed: int, start: mp.Event, out: mp.Queue) -> None:
    try:
        _work(url, name, budget, seed, start, out)
    except BaseException as exc:  # report, never leave the parent waiting
        out.put({"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                 "evaluated": [], "given_back": 0, "t_first": None, "t_last": None})


def _work(url: str, name: str, budget: int, seed: int, start: mp.Event, out: mp.Queue) -> None:
    import optuna
    from optuna.trial import TrialState

    from calib import ledger
    from calib.execution.heartbeat import Heartbeat

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.simplefilter("ignore")
    recovery = ledger.Recovery()
    storage = ledger.rdb_storage(url, heartbeat_s=5, grace_s=60, on_stale=recovery)
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(5)}
    start.wait()
    study = ledger.open_study(name, storage, optuna.samplers.RandomSampler(seed=seed), {"bench": 1})
    beat = Heartbeat(study._storage, 5)
    me = ledger.driver_id()
    evaluated, given_back, t_first, t_last = [], 0, None, None
    try:
        while ledger.budget_count(study) < budget:
            recovery.sweep(study)
            trial = study.ask(dists)
            t_first = t_first or time.time()
            trial.set_user_attr("calib_driver", me)
            beat.add(trial._trial_id)
            if not ledger.within_budget(study, trial.number, budget):
                trial.set_user_attr("calib_lost", True)
                study.tell(trial, state=TrialState.FAIL)
                beat.discard(trial._trial_id)
                given_back += 1
                continue
            value = sum((trial.params[k] - 0.3) ** 2 for k in dists)  # the instant objective
            study.tell(trial, value)
            beat.discard(trial._trial_id)
            evaluated.append(trial.number)
            t_last = time.time()
    finally:
        beat.stop()
    out.put({"evaluated": evaluated, "given_back": given_back, "t_first": t_first, "t_last": t_last})


def run(url: str, n: int, per_worker: int) -> dict:
    import optuna
    from optuna.trial import TrialState

    from calib import ledger

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"scale_{n}_{uuid.uuid4().hex[:6]}"
    budget = n * per_worker
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    # create the study (and the schema) once, as the first driver would
    ledger.open_study(name, ledger.rdb_storage(url), optuna.samplers.RandomSampler(), {"bench": 1})
    procs = [ctx.Process(target=worker, args=(url, name, budget, 1000 + i, start, out)) for i in range(n)]
    for p in procs:
        p.start()
    time.sleep(min(60.0, 2.0 + 0.5 * n))  # let every worker import and connect before the start
    start.set()
    results = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    lost_set = ledger.lost_numbers(trials)
    counted = [t for t in trials if t.number not in lost_set]
    evaluated = [num for r in results for num in r["evaluated"]]
    points = {tuple(round(v, 12) for v in t.params.values()) for t in counted}
    t_first = min(r["t_first"] for r in results if r["t_first"])
    t_last = max(r["t_last"] for r in results if r["t_last"])
    asks = len(trials)
    return {
        "workers": n, "budget": budget, "asks": asks, "counted": len(counted),
        "asks_per_s": asks / (t_last - t_first) if t_last > t_first else float("nan"),
        "duplicates": (len(evaluated) - len(set(evaluated))) + (len(counted) - len(points)),
        "lost": max(0, budget - sum(1 for t in counted if t.state == TrialState.COMPLETE))
        + sum(1 for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)),
        "overshoot": max(0, len(counted) - budget),
        "given_back": sum(r["given_back"] for r in results),
        "workers_that_evaluated": sum(1 for r in results if r["evaluated"]),
        "worker_errors": sorted({r["error"] for r in results if "error" in r}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--trials-per-worker", type=int, default=8)
    ap.add_argument("--url", help="a PostgreSQL SQLAlchemy URL (default: a throw-away server on loopback)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    server = None
    url = args.url
    if url is None:
        from services import Postgres

        server = Postgres(max_connections=2 * max(args.workers) + 50)  # two per worker: main + heartbeat thread
        url = server.url
    try:
        rows = [run(url, n, args.trials_per_worker) for n in args.workers]
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"ledger scale on PostgreSQL, instant objective, {args.trials_per_worker} trials per worker "
          f"({mp.cpu_count()} cores here: the workers share them)")
    print(f"{'workers':>7} {'budget':>6} {'asks':>5} {'counted':>7} {'asks/s':>7} {'duplicates':>10} {'lost':>4} "
          f"{'overshoot':>9} {'given back':>10} {'busy workers':>12}")
    for r in rows:
        print(f"{r['workers']:>7} {r['budget']:>6} {r['asks']:>5} {r['counted']:>7} {r['asks_per_s']:>7.1f} "
              f"{r['duplicates']:>10} {r['lost']:>4} {r['overshoot']:>9} {r['given_back']:>10} "
              f"{r['workers_that_evaluated']:>12}")
        for e in r["worker_errors"]:
            print(f"        worker error: {e}")


if __name__ == "__main__":
    main()
