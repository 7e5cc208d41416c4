"""Replay early-stopping rules on recorded fixed-length shear runs. Prints figures; asserts
nothing.

    .venv/bin/python bench/stop_rules.py /tmp/calib_bench_visc_*    # work dirs of bench/viscosity.py

``bench/viscosity.py`` keeps its work directory; each holds ``state/fixed_NN/`` (a full-length
run per rate) and ``state/early_NN/``. An early-stopped run is the same deterministic
trajectory cut short (checked here: its blocks equal the fixed run's first blocks), so any
stopping rule can be replayed on the fixed run's block means. For every rule in a grid
(window segments, z, precision, min strain, segment length) this prints the steps saved
over all runs and how far the early estimates fall from the fixed-length ones, in units of
the fixed run's blocking standard error: the fraction within one, the mean and the
maximum. Only fixed runs of the current study plans' full length are used, each once.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.stages.slurry_runs import rate_plans  # noqa: E402
from calib.stages.slurry_settings import simulated_rates_per_s  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.lammps.shear import blocking_sem, read_shear_stress, segment_means, window_test  # noqa: E402


def load_series(dirs: list[Path], study: Path, fidelity: str):
    loaded = load_study(study, fidelity=fidelity)
    fid = loaded.spec.fidelity_spec()
    plans = rate_plans(simulated_rates_per_s(loaded), loaded.spec.viscosity, fid)
    out = []
    for d in dirs:
        for plan in plans:
            f = d / "state" / f"fixed_{plan.index:02d}"
            if not (f / "shear_blocks.txt").exists():
                continue
            _, m = read_shear_stress(f)
            if len(m) != plan.max_segments * plan.segment_blocks:
                continue  # recorded with other plans
            e = d / "state" / f"early_{plan.index:02d}"
            if (e / "shear_blocks.txt").exists():
                _, me = read_shear_stress(e)
                if not np.allclose(me, m[:len(me)]):
                    raise SystemExit(f"{e}: the early run is not a prefix of the fixed run (not deterministic)")
            if any(plan.index == q.index and len(m) == len(w) and np.allclose(m / plan.rate_sim_per_us, w)
                   for _, q, w in out):
                continue  # the same run recorded twice (same seed and code)
            out.append((d.name, plan, m / plan.rate_sim_per_us))
    return out, fid, loaded.spec.viscosity


def replay(series, fid, window: int, z: float, precision: float, min_strain: float, seg_mult: int, fixed_skip_strain: float):
    rows = []
    for name, plan, v in series:
        sb = plan.segment_blocks * seg_mult
        segs = segment_means(v, sb)
        per_seg = plan.rate_sim_per_us * sb * fid.shear_block_steps * fid.timestep_us
        first = math.ceil(min_strain / per_seg - 1e-9) + window
        fixed_segs = segment_means(v, plan.segment_blocks)
        fskip = math.ceil(fixed_skip_strain / plan.strain_per_segment(fid) - 1e-9)
        fmean, fse = fixed_segs[fskip:].mean(), blocking_sem(fixed_segs[fskip:], min_blocks=4)
        stop = next(((k, window_test(segs[k - window:k], z, precision)[1]) for k in range(first, len(segs) + 1)
                     if window_test(segs[k - window:k], z, precision)[0]), None)
        if stop is None:
            rows.append((name, plan.rate_exp_per_s, 1.0, math.nan))
        else:
            rows.append((name, plan.rate_exp_per_s, stop[0] * sb / len(v), abs(stop[1] - fmean) / fse))
    frac = np.array([r[2] for r in rows])
    dz = np.array([r[3] for r in rows])
    stopped = ~np.isnan(dz)
    return {"saved": 1 - frac.mean(), "within": float(np.mean(dz[stopped] <= 1)) if stopped.any() else math.nan,
            "mean": float(np.mean(dz[stopped])) if stopped.any() else math.nan,
            "max": float(np.max(dz[stopped])) if stopped.any() else math.nan, "stopped": int(stopped.sum()),
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--study", type=Path, default=REPO / "studies" / "lib_nmc_slurry.yaml")
    ap.add_argument("--fidelity", default="dev")
    args = ap.parse_args()
    series, fid, v = load_series(args.dirs, args.study, args.fidelity)
    print(f"{len(series)} fixed-length runs of full length from {len({s[0] for s in series})} work dirs")
    cur = replay(series, fid, v.window_segments, v.z, v.precision, v.min_strain, 1, v.min_strain)
    print(f"\nstudy's rule (window {v.window_segments}, z {v.z:g}, precision {v.precision:g}, min strain "
          f"{v.min_strain:g}): {100 * cur['saved']:.0f} % of steps saved; early estimate within one fixed-run "
          f"blocking SE in {100 * cur['within']:.0f} % of {cur['stopped']} runs; mean {cur['mean']:.2f} SE, "
          f"max {cur['max']:.2f} SE")
    for name, rate, frac, d in cur["rows"]:
        print(f"  {name} {rate:g} 1/s: stopped at {100 * frac:.0f} % of the steps, |early - fixed| = {d:.2f} SE")
    grid = list(itertools.product((4, 6, 8, 10, 12), (0.5, 1.0, 1.5, 2.0), (0.02, 0.03, 0.05), (1.0, 2.0, 3.0), (1, 2)))
    results = [(rule, replay(series, fid, *rule, v.min_strain)) for rule in grid]
    ok = [(rule, r) for rule, r in results if r["saved"] >= 0.5 and r["stopped"] == len(series)]
    ok.sort(key=lambda t: (-t[1]["within"], t[1]["mean"]))
    print(f"\n{len(grid)} rules replayed; {len(ok)} save >= 50 % of the steps with every run stopping. Best 10 by the "
          f"fraction within one SE:")
    print("| window | z | precision | min strain | segment x | saved | within 1 SE | mean SE | max SE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (w, z, p, ms, mult), r in ok[:10]:
        print(f"| {w} | {z:g} | {p:g} | {ms:g} | {mult} | {100 * r['saved']:.0f} % | {100 * r['within']:.0f} % | "
              f"{r['mean']:.2f} | {r['max']:.2f} |")
    best_any = max(results, key=lambda t: t[1]["within"] if t[1]["stopped"] == len(series) else -1)
    print(f"\nhighest fraction within one SE at any saving: {100 * best_any[1]['within']:.0f} % "
          f"(rule {best_any[0]}, {100 * best_any[1]['saved']:.0f} % saved)")


if __name__ == "__main__":
    main()
