"""Slurry density against run length and bead count, with the seed's Table S1 slurry column
(or any named/JSON parameter set). Prints figures; asserts nothing.

    .venv/bin/python bench/density_convergence.py --beads 500 --hold-steps 2000000 [--ramp-steps 20000]
    .venv/bin/python bench/density_convergence.py --beads 200 500 2000 --hold-steps 400000 --jobs 2

Each run: random placement in the seed's box scaled to N at the fidelity's edge scale,
minimisation, the pressure ramp, then the hold at 1 atm for ``--hold-steps`` with early
stopping off, so the whole trajectory is written. Printed per run: the density at a ladder
of step counts (mean of the preceding ``--window`` blocks), where the plateau test would
first have passed at each tolerance, and atom-steps/s. ``--keep DIR`` keeps the run folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from calib.stages.bead_systems import slurry_system  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.lammps.convergence import plateau_test  # noqa: E402
from sim_backends.lammps.forcefield import NAMED_PARAMETER_SETS, ForceFieldParams  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.outputs import run_stats  # noqa: E402
from sim_backends.lammps.placement import paper_scaled_box  # noqa: E402
from sim_backends.lammps.slurry import (DECK_FILE, LOG_FILE, SlurryRunSpec, density_trajectory,  # noqa: E402
                                        write_slurry_inputs)

STUDY = REPO / "studies" / "ssb_slurry.yaml"


def params_of(text: str) -> ForceFieldParams:
    if text in NAMED_PARAMETER_SETS:
        return NAMED_PARAMETER_SETS[text]
    base = dict(NAMED_PARAMETER_SETS["table-s1-slurry"].as_dict())
    base.update(json.loads(text))
    return ForceFieldParams.from_mapping(base)


def one(work: Path, n: int, args, params: ForceFieldParams, threads: int = 1) -> dict:
    import subprocess

    loaded = load_study(STUDY, fidelity=args.fidelity)
    fid = loaded.spec.fidelity_spec().model_copy(update={"n_beads": n})
    system = slurry_system(loaded.dataset, fid)
    block = args.block_steps
    hold_blocks = args.hold_steps // block
    spec = SlurryRunSpec(ramp_steps=args.ramp_steps, block_steps=block, sample_every=block // 100,
                         window_blocks=args.window, averaging_blocks=args.window, min_hold_blocks=hold_blocks,
                         max_hold_blocks=hold_blocks, early_stop=False, thermo_every=max(block, 10_000),
                         neighbor_style=args.neighbor, pdamp_us=args.pdamp, tdamp_us=args.tdamp, seed=args.seed)
    wd = work / f"n{n}"
    wd.mkdir(parents=True, exist_ok=True)
    box = tuple(x * fid.initial_box_scale for x in paper_scaled_box(n))
    write_slurry_inputs(wd, system, params, spec, box)
    lmp = locate_lammps()
    t0 = time.perf_counter()
    subprocess.run(lmp.argv(DECK_FILE, LOG_FILE, 1, threads), cwd=wd, env={**__import__("os").environ, **lmp.env, **lmp.thread_env(threads)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t0
    steps, rho = density_trajectory(wd)
    rs = run_stats((wd / LOG_FILE).read_text())
    return {"n": n, "steps": steps, "rho": rho, "wall_s": wall, "rate": rs.atom_steps_per_s,
            "counts": {p: system.phase_count(p) for p in ("AM", "SE", "CBD")}}


def report(r: dict, args) -> None:
    steps, rho, w = r["steps"], r["rho"], args.window
    hold = steps > args.ramp_steps
    print(f"\n## {r['n']} beads {r['counts']}: {r['wall_s']:.0f} s, {r['rate'] / 1e6:.2f} M atom-steps/s")
    marks = [s for s in (2e4, 5e4, 1e5, 2e5, 4e5, 1e6, 2e6, 4e6) if s <= steps[-1]] + [int(steps[-1])]
    print("| step | density g/cm^3 (mean of last %d blocks) |" % w)
    print("|---|---|")
    for s in marks:
        i = int(np.searchsorted(steps, s, side="right"))
        print(f"| {int(s):,} | {rho[max(0, i - w):i].mean():.4f} |")
    for tol in (0.02, 0.01, 0.005, 0.002, 0.001):
        t = plateau_test(rho[hold], w, tol)
        at = "never" if t.first_pass is None else f"{args.ramp_steps + (t.first_pass + 1) * args.block_steps:,}"
        print(f"plateau test, window {w} x {args.block_steps} steps, tolerance {tol:g}: first passes at step {at}; "
              f"last window change {t.change_rel:+.4f}, converged at the end: {t.converged}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beads", type=int, nargs="+", default=[500])
    ap.add_argument("--hold-steps", type=int, default=200_000)
    ap.add_argument("--ramp-steps", type=int, default=20_000)
    ap.add_argument("--block-steps", type=int, default=1000)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--fidelity", default="dev", help="whose initial_box_scale to use")
    ap.add_argument("--params", default="table-s1-slurry", help="a named set or JSON overrides of it")
    ap.add_argument("--neighbor", default="bin")
    ap.add_argument("--pdamp", type=float, default=1000.0, help="barostat damping, us (public: 1000)")
    ap.add_argument("--tdamp", type=float, default=0.2, help="thermostat damping, us (public: 0.2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    params = params_of(args.params)
    work = args.keep or Path(tempfile.mkdtemp(prefix="calib_density_"))
    print(f"# density vs run length: params {args.params}, ramp {args.ramp_steps} steps, Pdamp {args.pdamp:g} us, "
          f"Tdamp {args.tdamp:g} us, neighbor {args.neighbor}, "
          f"folders in {work}")
    with ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda n: one(work, n, args, params), args.beads))
    for r in results:
        report(r, args)


if __name__ == "__main__":
    main()
