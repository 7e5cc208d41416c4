"""Drivers that open a new SQLite ledger at the same moment: every one of them gets the
storage (one of them creates Optuna's schema; the others meet its tables or its version row
and retry). Real processes, real SQLite, no mock."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from calib import ledger

DRIVERS = 4
ROUNDS = 8  # without the retry on SQLite's "UNIQUE constraint failed", 6 rounds in 10 failed


def _open(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        ledger.rdb_storage(url)
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(repr(exc)[:300])


def test_drivers_opening_a_new_sqlite_ledger_at_once_all_succeed(tmp_path: Path):
    ctx = mp.get_context("fork")  # children start at once, with calib already imported
    for r in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'ledger_{r}.db'}"
        barrier, results = ctx.Barrier(DRIVERS), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(DRIVERS)]
        for p in procs:
            p.start()
        outcome = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert outcome == ["ok"] * DRIVERS, f"round {r}: {outcome}"
