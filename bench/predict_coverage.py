"""How honest ``calib predict``'s intervals are: each trial of finished studies predicted by
the model of the trials before it (never seen), the fraction of those values within the
stated +-1 sd and +-2 sd (ideal: 68 % and 95 %), before and after the held-out calibration
``calib predict`` applies (``calib.optimize.surrogate``: the sd widened by the root mean
square of the standardised errors of the study's previous ``HELD_OUT`` held-out
predictions, at least 1). Both are computed in the same invocation from the same fits.
Prints figures; asserts nothing.

    .venv/bin/python bench/predict_coverage.py LEDGER.db [LEDGER.db ...] [--studies sobol random composite]
        [--first 4] [--json out.json]

LEDGER.db: Optuna SQLite ledgers of calib studies (the deterministic twins of
``bench/optimizers.py`` keep theirs under its work folder: ``det_<seed>/twin.db``). Trial n
is predicted by the model of trials 0..n-1 (at least ``--first``), which is what a user of
``calib predict`` gets before running it. The calibrated prediction of trial n uses only the
held-out errors of trials before n (no peeking).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib import ledger  # noqa: E402
from calib.optimize.surrogate import HELD_OUT, HELD_OUT_MIN, held_out_z, sd_scale  # noqa: E402
from calib.study.stored import open_stored  # noqa: E402


def study_rows(name: str, url: str, first: int) -> list[dict]:
    """One row per (held-out trial, output): raw z and the calibrated z."""
    st = open_stored(name, url)
    done = sorted((t for t in ledger.at_target(st.study) if all(k in t.params for k in st.space.keys)),
                  key=lambda t: t.number)
    raw: dict[str, list[tuple[int, float]]] = {}
    for n in range(first, len(done)):
        for out, z in held_out_z(done, st.space, n).items():
            raw.setdefault(out, []).append((n, z))
    rows = []
    for out, zs in raw.items():
        for i, (n, z) in enumerate(zs):
            prev = [x for _, x in zs[max(0, i - HELD_OUT):i]]
            scale = sd_scale(prev) if len(prev) >= HELD_OUT_MIN else 1.0
            rows.append({"study": name, "output": out, "n": n, "z": z, "scale": scale, "z_cal": z / scale,
                         "calibrated": len(prev) >= HELD_OUT_MIN})
    return rows


def coverage(rows: list[dict], key: str) -> tuple[float, float, int]:
    a = np.abs([r[key] for r in rows])
    return float(np.mean(a <= 1)), float(np.mean(a <= 2)), len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ledgers", nargs="+", type=Path)
    ap.add_argument("--studies", nargs="+", default=["sobol", "random", "composite"],
                    help="keep studies whose name holds one of these")
    ap.add_argument("--first", type=int, default=4, help="fewest trials a model is fitted on")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for db in args.ledgers:
        url = f"sqlite:///{db.resolve()}"
        for s in optuna.get_all_study_summaries(url):
            if any(k in s.study_name for k in args.studies):
                rows += study_rows(s.study_name, url, args.first)
                print(f"  {db.parent.name}/{s.study_name}: {s.n_trials} trials ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    print(f"held-out predictions (trial n from trials 0..n-1, n >= {args.first}); ideal: 68 % within 1 sd, "
          f"95 % within 2 sd")
    print("| output | held-out trials | model's sd: within 1 sd | within 2 sd | calibrated: within 1 sd | within 2 sd "
          "| median factor |")
    print("|---|---|---|---|---|---|---|")
    for out in sorted({r["output"] for r in rows}):
        mine = [r for r in rows if r["output"] == out and r["calibrated"]]  # the same trials in both columns
        if not mine:
            continue
        a1, a2, n = coverage(mine, "z")
        b1, b2, _ = coverage(mine, "z_cal")
        print(f"| {out} | {n} | {a1:.0%} | {a2:.0%} | {b1:.0%} | {b2:.0%} | "
              f"{float(np.median([r['scale'] for r in mine])):.2f} |")
    for lo, hi in ((args.first, 10), (10, 20), (20, 10**9)):
        part = [r for r in rows if lo <= r["n"] < hi and r["calibrated"]]
        if part:
            a1, a2, n = coverage(part, "z")
            b1, b2, _ = coverage(part, "z_cal")
            print(f"- models of {f'{lo}-{hi - 1}' if hi < 10**9 else f'{lo} or more'} trials: {n} predictions; "
                  f"model's sd {a1:.0%} / {a2:.0%}, calibrated {b1:.0%} / {b2:.0%} within 1 / 2 sd")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
