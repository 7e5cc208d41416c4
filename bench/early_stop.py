"""Early stopping of seed-protocol slurry runs against recorded full runs. Prints figures;
asserts nothing.

    .venv/bin/python bench/early_stop.py                       # the compression bench's runs
    .venv/bin/python bench/early_stop.py --studies runs/calib.db:ssb_slurry --band 0.1
    .venv/bin/python bench/early_stop.py --band 0.1 --twin-seeds 5 --twin-trials 20

1. **Monotone rise** (``SEED_MONOTONE_NOTE``): over every run of ``--results`` (the
   compression bench's seed-protocol runs: block means at 200 fractions of the run), the
   largest excess of a block before the last two over the run's end density.
2. **Forecast** (``calib.stages.slurry_results.END_FORECAST_EXPONENT``): the end density of a run
   stopped at fraction f is forecast as rho(f) x f^-b(k); per compression k this fits b as
   the median of ln(rho_end / rho(f)) / -ln f over f in [0.2, 0.9] and runs, and prints the
   forecast's error at f = 0.2, 0.4, 0.6, 0.8 with the b in the code.
3. **Replay on studies** (``--studies DB:NAME ...``, studies run without a band): for each
   ``--band``, which trials the rule stops (a block above target x (1 + band)), the steps it
   saves, and whether the study's best trial, or any trial within the band at its end, would
   have been stopped. A stopped run is the same deterministic trajectory cut short, so the
   replay is exact for the decision (it cannot say what the proposer would have done next:
   run a twin study with the band for that).
4. **Twin** (``--twin-seeds N``): the default study at ``--twin-fidelity`` with the first
   ``--band`` and without, the same seeds, one trial at a time, all in this invocation: best
   error at the budget (judged on trials that ran the whole protocol), LAMMPS atom-steps and
   wall time, and whether the unbanded best trial's trajectory crosses the band.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.stages.slurry_results import END_FORECAST_EXPONENT, end_forecast_exponent  # noqa: E402
from sim_backends.lammps.slurry import SEED_END_BLOCKS, density_trajectory  # noqa: E402

FRACTIONS = (0.2, 0.4, 0.6, 0.8)


def load_runs(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("end_density_g_cm3") and len(r.get("trajectory_g_cm3") or []) == 200]


def monotone(rows: list[dict]) -> None:
    ex = []
    for r in rows:
        v = np.array(r["trajectory_g_cm3"], dtype=float)
        end = v[-SEED_END_BLOCKS:].mean()
        ex.append((float(v[:-SEED_END_BLOCKS].max() / end - 1), r["set"], r["k"]))
    ex.sort(reverse=True)
    print(f"1. monotone rise: {len(rows)} runs; largest excess of an earlier block over the end density: "
          f"{100 * ex[0][0]:+.3f} % ({ex[0][1]}, k = {ex[0][2]}); runs with any block above the end: "
          f"{sum(e[0] > 0 for e in ex)}")


def forecast(rows: list[dict]) -> None:
    f = (np.arange(200) + 1) / 200
    sel = (f >= 0.2) & (f <= 0.9)
    print("\n2. forecast rho_end = rho(f) x f^-b(k)")
    print("| k | runs | fitted b | b in the code | error at f = " + ", ".join(f"{x:g}" for x in FRACTIONS)
          + " (median [worst]) |")
    print("|---|---|---|---|---|")
    for k in sorted({r["k"] for r in rows}):
        runs = [np.array(r["trajectory_g_cm3"], dtype=float) for r in rows if r["k"] == k]
        bs = []
        for v in runs:
            end = v[-SEED_END_BLOCKS:].mean()
            bs.extend(np.log(end / v[sel]) / -np.log(f[sel]))
        b_code = end_forecast_exponent(k)
        cells = []
        for x in FRACTIONS:
            i = int(round(x * 200)) - 1
            e = np.array([v[i] * f[i] ** -b_code / v[-SEED_END_BLOCKS:].mean() - 1 for v in runs])
            cells.append(f"{100 * np.median(e):+.1f} % [{100 * e[np.argmax(abs(e))]:+.0f} %]")
        print(f"| {k} | {len(runs)} | {np.median(bs):.3f} | {b_code:.3f} | " + "; ".join(cells) + " |")


def replay(spec: str, bands: list[float]) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db, name = spec.rsplit(":", 1)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{Path(db).resolve()}")
    target = None
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state != optuna.trial.TrialState.COMPLETE or not t.user_attrs.get("errors", {}).get("slurry_density"):
            continue
        target = t.user_attrs["errors"]["slurry_density"]["target"]
        folder = Path(db).parent / name / f"trial_{t.number:05d}"
        if not folder.is_dir():
            continue
        steps, rho = density_trajectory(folder)
        trials.append((t.number, t.value, steps, rho))
    if not trials or target is None:
        print(f"\n3. {spec}: no complete trial with its density blocks")
        return
    best = min(trials, key=lambda x: x[1])
    print(f"\n3. replay on {spec}: {len(trials)} trials, target {target:g} g/cm^3, best trial {best[0]} "
          f"({best[3][-SEED_END_BLOCKS:].mean():.4g})")
    for band in bands:
        thr = target * (1 + band)
        total = saved = 0
        stopped, wrong = [], []
        for n, _, steps, rho in trials:
            end = rho[-SEED_END_BLOCKS:].mean()
            total += steps[-1]
            hit = np.nonzero(rho > thr)[0]
            if len(hit):
                stop = steps[hit[0]]
                saved += steps[-1] - stop
                stopped.append(n)
                if abs(end / target - 1) <= band or n == best[0]:
                    wrong.append(n)
        print(f"  band {band:.0%} (stop above {thr:.4g}): stops {len(stopped)} of {len(trials)} trials, saves "
              f"{saved / total:.0%} of the steps; best trial stopped: {'YES' if best[0] in stopped else 'no'}; "
              f"trials inside the band at their end that would have stopped: {wrong or 'none'}")


def twin(seeds: int, trials: int, band: float, fidelity: str, work: Path) -> None:
    """The default study at ``fidelity`` with and without the band, same seeds, one trial at
    a time: the best error at the budget, LAMMPS steps and wall time of each, and (replay)
    whether the unbanded study's best trial would have been stopped."""
    import subprocess
    import time

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = (REPO / "studies/ssb_slurry.yaml").read_text()
    print(f"\n4. twin: studies/ssb_slurry.yaml at {fidelity}, {trials} trials, seeds 0-{seeds - 1}, band {band:.0%} "
          "against none")
    print("| seed | best error, no band | best error, band | steps, band / none | wall, band / none | "
          "unbanded best stopped by the band? |")
    print("|---|---|---|---|---|---|")
    for seed in range(seeds):
        row = {}
        for label, extra in (("none", ""), ("band", f"\nslurry:\n  early_stop_band_rel: {band}\n")):
            d = Path(tempfile.mkdtemp(prefix=f"calib_es_{label}_", dir=work))
            study = d / "study.yaml"
            study.write_text(base.replace("name: ssb_slurry\n", f"name: es_{label}\n", 1) + extra)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study", str(study),
                            "--fidelity", fidelity, "--trials", str(trials), "--seed", str(seed), "--parallel", "1",
                            "--runs-dir", str(d), "--tracking-uri", "none", "--json"],
                           check=True, capture_output=True, cwd=REPO)
            wall = time.perf_counter() - t0
            st = optuna.load_study(study_name=f"es_{label}", storage=f"sqlite:///{d / 'calib.db'}")
            done = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
            full = [t for t in done if not t.user_attrs.get("stopped_early")]
            best = min(full, key=lambda t: t.value) if full else None
            steps = sum(t.user_attrs["observables"].get("atom_steps", 0) for t in done)
            err = abs(best.user_attrs["errors"]["slurry_density"]["rel_error"]) if best else math.nan
            stopped_best = None
            if label == "none" and best is not None:
                _, rho = density_trajectory(d / "es_none" / f"trial_{best.number:05d}")
                stopped_best = bool(np.any(rho > best.user_attrs["errors"]["slurry_density"]["target"] * (1 + band)))
            row[label] = (err, steps, wall, stopped_best)
        n, b = row["none"], row["band"]
        print(f"| {seed} | {100 * n[0]:.2f} % | {100 * b[0]:.2f} % | {b[1] / n[1]:.2f} | {b[2] / n[2]:.2f} | "
              f"{'YES' if n[3] else 'no'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "bench/results/compression.jsonl")
    ap.add_argument("--studies", nargs="*", default=[], help="DB:NAME of studies run without a band")
    ap.add_argument("--band", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--twin-seeds", type=int, default=0, help="run the twin (4.) over this many seeds")
    ap.add_argument("--twin-trials", type=int, default=20)
    ap.add_argument("--twin-fidelity", default="smoke")
    args = ap.parse_args()
    rows = [r for r in load_runs(args.results) if r.get("n_beads") == 200]
    monotone(rows)
    forecast(rows)
    print(f"(b in the code: {END_FORECAST_EXPONENT})")
    for spec in args.studies:
        replay(spec, args.band)
    if args.twin_seeds:
        work = Path(tempfile.mkdtemp(prefix="calib_bench_early_stop_"))
        twin(args.twin_seeds, args.twin_trials, args.band[0], args.twin_fidelity, work)
        print(f"(work in {work})")


if __name__ == "__main__":
    main()
