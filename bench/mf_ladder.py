"""Multi-fidelity over the compression ladder against single-fidelity BO at the target rung.
Prints figures; asserts nothing.

    .venv/bin/python bench/mf_ladder.py [--seeds 5] [--workers 2] [--single-trials 12]
        [--multi-trials 24] [--json]

A real-LAMMPS density twin of the default study (five free keys, its bounds) under common
random numbers: per seed, every trial of both studies runs on the same placement (LAMMPS
seed ``calib.execution.session_types.trial_seed(seed, 0)``), and the target is the density of
``HIDDEN`` on that placement at the *target rung*, so the objective is deterministic and the
hidden set scores 0. The ladder is the seed protocol compressed k = 1000 (``smoke``), k = 200 (``dev``) and,
as the target, k = 20 (``k20``, defined here: 200 beads, ``LADDER_TARGET``), about 25 times
a smoke run's cost. The full protocol (k = 1, one to six hours a run at 200 beads) is out
of a benchmark's reach: single-fidelity BO there would cost 5 seeds x 10 runs x hours. k =
20 lies between the rungs whose error against k = 1 is measured (k = 10: 3.1 % mean, k =
100: 3.5 %; docs/model.md#compression); it stands in for an expensive target protocol,
not for k = 1.

Per seed, in this invocation:

1. the hidden set runs once at every rung on the seed's placement: the target, and the
   measured cost of one run at each rung (LAMMPS wall time x cores), which becomes the
   multi-fidelity study's ``costs_core_s``;
2. ``composite`` at the target rung only (``--single-trials`` trials, its Sobol start at
   the target): the baseline;
3. ``composite`` over the ladder smoke -> dev -> k20 (``--multi-trials`` trials; Sobol
   start at smoke, two model proposals at dev (``calib.optimize.fidelity_ladder.transfer_rung``),
   then screen-then-confirm with the cost-aware choice of the screening rung:
   ``calib.optimize.fidelity_ladder.MF_NOTE``).

Printed: per sampler the median core-seconds (every run's wall x cores, all rungs, summed up
to and including the first *target-rung* trial within the tolerance: a calibration counts
only once a run at the target shows it), trials and target-rung trials, and the ratio
multi / single (issue 28's goal: <= 1/5 at the target rung, median of >= 5 seeds).
Seeds run in ``--workers`` processes, each study on one core (``parallel: 1``), so the
core-seconds of both samplers are measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optimizers import (HIDDEN, core_s_rows, plot_core_s, run_fixed, run_twin, summarise,  # noqa: E402
                        synthetic_study, trial_records)

from calib.optimize import fidelity_ladder  # noqa: E402
from calib.spec.fidelity import BUILTIN_FIDELITIES, Fidelity  # noqa: E402
from calib.execution.session_types import trial_seed  # noqa: E402
from calib.study.space import ParameterSpace  # noqa: E402
from calib.stages.slurry import SlurryTrial  # noqa: E402
from calib.study.load import DEFAULT_STUDY, load_study  # noqa: E402

TOLERANCES = (0.05, 0.03, 0.02, 0.01)
TARGET_NAME = "k20"
LADDER_TARGET = {"n_beads": 200, "compression": 20, "initial_box_scale": 0.3, "equilibration_steps": 20_000,
                 "averaging_steps": 20_000, "density_window_steps": 20_000, "density_max_steps": 40_000}
"""The target rung: the seed protocol compressed k = 20 at 200 beads (1,000,000 steps, one
to two minutes on one core for sets like ``HIDDEN``)."""
TWIN_TIMEOUT_S = 1200
"""Wall-time limit of one twin trial (s): a k = 20 run of a dense set takes several minutes."""
SINGLE, MULTI = "composite, target rung only", "composite, smoke -> dev -> target"
PREVIOUS = "composite, smoke -> dev -> target, first model proposals at the target (rule until 2026-12-07)"


def ladder_study(work: Path, target: float, target_name: str) -> Path:
    """The twin's study file: the default study against the synthetic target, at the target rung."""
    path = synthetic_study(work, target, target_name)
    study = yaml.safe_load(path.read_text())
    study["fidelities"] = {target_name: LADDER_TARGET}
    study["fidelity"] = target_name
    study["parallel"] = 1
    study["trial_timeout_s"] = TWIN_TIMEOUT_S
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def hidden_runs(seed: int, root: Path) -> dict:
    """The hidden set at every rung on seed's placement: its densities (g/cm^3; the target
    rung's is the seed's target) and the cost of each run (core-seconds)."""
    work = root / f"seed_{seed}"
    work.mkdir()
    loaded = load_study(DEFAULT_STUDY)
    space = ParameterSpace.from_spec(loaded.spec.parameters)
    rungs = {"smoke": BUILTIN_FIDELITIES["smoke"], "dev": BUILTIN_FIDELITIES["dev"],
             TARGET_NAME: Fidelity(**LADDER_TARGET)}
    hidden, costs = {}, {}
    for name, fid in rungs.items():
        d = work / f"hidden_{name}"
        d.mkdir()
        trial = SlurryTrial(d, loaded, fid, space.full_params(HIDDEN), seed=trial_seed(seed, 0, True))
        _, walls = run_fixed(trial)
        assert trial.slurry is not None
        hidden[name] = trial.slurry.density_g_cm3
        costs[name] = float(sum(walls.values()))
    ladder_study(work, hidden[TARGET_NAME], TARGET_NAME)
    (work / "hidden.json").write_text(json.dumps({"hidden": hidden, "costs_core_s": costs}))
    print(f"  seed {seed}: hidden {', '.join(f'{k} {v:.4f}' for k, v in hidden.items())} g/cm^3; costs "
          f"{', '.join(f'{k} {v:.1f}' for k, v in costs.items())} core-s", file=sys.stderr)
    return {"seed": seed, "hidden": hidden, "costs_core_s": costs}


def run_arm(seed: int, root: Path, arm: str, trials: int, costs: dict[str, float]) -> list[dict]:
    """One study of ``arm`` on seed's twin (``hidden_runs`` wrote its study file)."""
    t0 = time.perf_counter()
    work = root / f"seed_{seed}"
    study_file = work / "twin_study.yaml"
    mf = None if arm == SINGLE else {"ladder": list(costs), "costs_core_s": costs}
    current = fidelity_ladder.transfer_rung
    if arm == PREVIOUS:  # the rule until 2026-12-07: the first model proposals at the target
        fidelity_ladder.transfer_rung = lambda ladder: len(ladder.names) - 1  # in this worker process
        work = work / "previous"
        work.mkdir()
    try:
        out = run_twin(work, study_file, "composite", seed, trials, 1, multi_fidelity=mf)
    finally:
        fidelity_ladder.transfer_rung = current
    print(f"  seed {seed} / {arm}: best {min((x['rel_error'] for x in out if x['at_target']), default=math.inf):.2%}"
          f" at the target, {sum(x['core_s'] for x in out):.0f} core-s ({time.perf_counter() - t0:.0f} s)",
          file=sys.stderr)
    return out


def print_ladder_table(summary: dict, target_name: str) -> None:
    print(f"\n## core-seconds to a calibration shown by a {target_name} run (median over seeds; "
          "in brackets the seeds that got there)")
    print("| sampler | " + " | ".join(f"core-s to {t:.0%}" for t in TOLERANCES)
          + f" | trials to 3 % | {target_name} trials | core-s in all | best {target_name} error at budget |")
    print("|---|" + "---|" * (len(TOLERANCES) + 4))
    for line in core_s_rows(summary, TOLERANCES, 0.03):
        print(line)


def ratios(summary: dict, arm: str = MULTI) -> dict[str, float]:
    """Median core-seconds to each tolerance, ``arm`` / single (inf: the arm's median never got
    there, nan: neither did)."""
    out = {}
    for t in TOLERANCES:
        a, b = (summary[s]["to_tolerance"][f"{t:g}"]["median_core_s"] for s in (arm, SINGLE))
        out[f"{t:g}"] = a / b if math.isfinite(a) and math.isfinite(b) else (math.inf if math.isfinite(b) else math.nan)
    return out


def per_seed_ratios(results: list[dict], tol: float, arm: str = MULTI) -> list[str]:
    """Per seed: core-seconds to ``tol`` of ``arm`` over single, or which of them never got there."""
    from optimizers import core_s_to

    out = []
    for r in results:
        a, b = core_s_to(r[arm], tol), core_s_to(r[SINGLE], tol)
        if math.isfinite(a) and math.isfinite(b):
            out.append(f"{a / b:.2f}")
        else:
            out.append("neither" if a == b else ("single never" if math.isfinite(a) else "ladder never"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="seeds run side by side (one core each)")
    ap.add_argument("--single-trials", type=int, default=12)
    ap.add_argument("--multi-trials", type=int, default=24)
    ap.add_argument("--previous-rule", action="store_true",
                    help="also run the ladder under the previous rule (first model proposals at the target)")
    ap.add_argument("--plots", type=Path, default=Path("runs/bench_optimizers"))
    ap.add_argument("--report-from", type=Path, default=None,
                    help="report the studies finished in this work folder (of an interrupted run) instead of running")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.plots.mkdir(parents=True, exist_ok=True)
    if args.report_from is not None:
        results, arms = from_ledgers(args.report_from, args.single_trials, args.multi_trials)
        report(results, arms, args, wall=math.nan)
        return
    root = Path(tempfile.mkdtemp(prefix="calib_bench_ladder_"))
    print(f"# multi-fidelity over the compression ladder; work in {root}", file=sys.stderr)
    t0 = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    arms = [SINGLE, MULTI] + ([PREVIOUS] if args.previous_rule else [])
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(hidden_runs, seeds, [root] * len(seeds)))
        tasks = [(r["seed"], arm) for arm in arms for r in results]  # the longest (single) first
        futures = {(s_, arm): pool.submit(run_arm, s_, root, arm,
                                          args.single_trials if arm == SINGLE else args.multi_trials,
                                          results[seeds.index(s_)]["costs_core_s"]) for s_, arm in tasks}
        for (s_, arm), f in futures.items():
            results[seeds.index(s_)][arm] = f.result()
    report(results, arms, args, wall=time.perf_counter() - t0)


def from_ledgers(root: Path, single_trials: int, multi_trials: int) -> tuple[list[dict], list[str]]:
    """The seeds and arms whose studies finished in ``root`` (an interrupted run's work
    folder): an arm is reported only if every seed's study ran its whole budget."""
    import optuna

    from calib.study.load import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results, done = [], {SINGLE: [], MULTI: [], PREVIOUS: []}
    for work in sorted(root.glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
        seed = int(work.name.split("_")[1])
        saved = json.loads((work / "hidden.json").read_text()) if (work / "hidden.json").exists() else None
        spec = load_study(work / "twin_study.yaml").spec
        r: dict = {"seed": seed}
        for arm, db, name, n in ((SINGLE, work / "twin.db", f"twin_composite_{seed}", single_trials),
                                 (MULTI, work / "twin.db", f"twin_composite_mf_{seed}", multi_trials),
                                 (PREVIOUS, work / "previous" / "twin.db", f"twin_composite_mf_{seed}", multi_trials)):
            if not db.exists():
                continue
            try:
                study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
            except KeyError:
                continue
            finished = [t for t in study.trials if t.state.is_finished()]
            if len(finished) < n:
                continue
            if arm != SINGLE and saved is None:
                saved = {"costs_core_s": json.loads(study.user_attrs["calib_study_spec"])["optimizer"]["multi_fidelity"][
                    "costs_core_s"]}
            r[arm] = trial_records(study, spec)[:n]
            done[arm].append(seed)
        ds = yaml.safe_load((work / "twin_data" / "dataset.yaml").read_text())
        r["hidden"] = (saved or {}).get("hidden") or {TARGET_NAME: ds["targets"]["slurry_density"]["value"]}
        r["costs_core_s"] = (saved or {}).get("costs_core_s", {})
        results.append(r)
    seeds = [r["seed"] for r in results]
    arms = [a for a in (SINGLE, MULTI, PREVIOUS) if done[a] and done[a] == seeds]
    for a in (SINGLE, MULTI, PREVIOUS):
        if a not in arms:
            print(f"not reported: {a} (finished for seeds {done[a]} of {seeds})", file=sys.stderr)
    return results, arms


def report(results: list[dict], arms: list[str], args: argparse.Namespace, wall: float) -> None:
    runs = {arm: [r[arm] for r in results] for arm in arms}
    summary = summarise(runs, TOLERANCES)
    costs = {k: statistics.mean(r["costs_core_s"][k] for r in results if k in r["costs_core_s"])
             for k in ("smoke", "dev", TARGET_NAME) if any(k in r["costs_core_s"] for r in results)}
    print(f"hidden {HIDDEN}; per seed, the hidden set at each rung on the seed's own placement (g/cm^3; the "
          f"{TARGET_NAME} value is that seed's target, synthetic):")
    for r in results:
        print(f"- seed {r['seed']}: " + ", ".join(f"{k} {v:.4f}" for k, v in r["hidden"].items())
              + " (costs " + ", ".join(f"{k} {v:.1f}" for k, v in r["costs_core_s"].items()) + " core-s)")
    print("mean cost of one run: " + ", ".join(f"{k} {v:.1f} core-s" for k, v in costs.items()))
    print_ladder_table(summary, TARGET_NAME)
    rat = {arm: ratios(summary, arm) for arm in runs if arm != SINGLE}
    for arm, r in rat.items():
        print(f"\nratio of median core-seconds to the tolerance at the target rung, {arm} / single (goal: <= 1/5):")
        print("- " + ", ".join(f"{float(t):.0%}: {x:.2f}" for t, x in r.items()))
        for t in (0.03, 0.02):
            print(f"- per seed at {t:.0%}: " + ", ".join(per_seed_ratios(results, t, arm)))
    plot_core_s("multi-fidelity over the compression ladder (real LAMMPS)", runs, args.plots / "mf_ladder.png")
    print(f"\nplot in {args.plots / 'mf_ladder.png'}; {wall:.0f} s")
    if args.json:
        print(json.dumps({"results": results, "summary": summary, "ratios": rat, "costs_core_s": costs,
                          "wall_s": wall}, default=float))


if __name__ == "__main__":
    main()
