"""The Table S1 discrepancy (issue 26, point 8): under the seed's protocol (pressure ramped
0 -> 1 atm over 2e7 steps of 0.001 us, public thermostat and barostat, 200 beads, k = 1),
Table S1's slurry column overshoots the seed's 1.89 g/cm^3. Each plausible reading of the
table or the public inputs that could explain it is one run of the full protocol with that
one change; prints where each passes 1.89 and its density at the end.

    .venv/bin/python bench/discrepancy.py --jobs 2
    .venv/bin/python bench/discrepancy.py --readings lj-sf kn-mpa --jobs 1
    .venv/bin/python bench/discrepancy.py --report

A run is stopped once its density passes ``--decided`` (default 1.89 x 1.25 = 2.36) while
the pressure is still rising: the density rises monotonically along the ramp in every run
measured (bench/results/compression.jsonl), so such a reading ends above 1.89 whatever
follows, and the run records when it passed 1.89 and where it was stopped. A reading that
stays below runs to the end of the protocol (about an hour on one core). Results are kept
in ``--results`` (one JSON line per run) and not repeated.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402

from calib.stages.bead_systems import slurry_system  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from compression import params_of  # noqa: E402
from results_log import append_result, load_results  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.placement import paper_scaled_box  # noqa: E402
from sim_backends.lammps.slurry import (DECK_FILE, LOG_FILE, SEED_BLOCKS, SlurryRunSpec, density_trajectory,  # noqa: E402
                                        write_slurry_inputs)

STUDY = REPO / "studies" / "ssb_slurry.yaml"
RESULTS = REPO / "bench" / "results" / "discrepancy.jsonl"
SEED_DENSITY = 1.89
STEPS = 20_000_000

READINGS: dict[str, str] = {
    "table-s1": "Table S1 as calib reads it (lj/cut, eps x the dry/solid diameter, kn 0.1 in units micro, 1 atm; "
                "also bench/compression.py's k = 1 run)",
    "cbd-eps-wet": "eps_CBD on the wet 7.5 um slurry diameter, as the public epsi_cb = epsi_cb_pre * d_cb_liq (x 2.5)",
    "lj-sf": "the public inputs' force-shifted lj/sf (lj/smooth/linear) instead of the seed's lj/cut",
    "pressure-1kpa": "the target pressure as the number 1 in units micro (1 kPa) instead of 101.325 kPa",
    "eps-nm": "eps x d with d in nm instead of um (every eps x 1000)",
    "kn-mpa": "kn 0.1 read as MPa (100 in units micro, kPa), gamma_n kept",
    "kn-gpa": "kn 0.1 read as GPa (1e5 in units micro), gamma_n kept",
    "temperature-3000": "a thermostat at 3000 K instead of 300 K (temperature enters the capped creep, docs/model.md)",
}


def reading(name: str, spec: SlurryRunSpec, params: dict[str, float]) -> tuple[SlurryRunSpec, dict[str, float]]:
    """The run and parameters of one reading (everything else as ``table-s1``)."""
    p = dict(params)
    if name == "cbd-eps-wet":
        p["eps_CBD"] *= 7.5 / 3.0
    elif name == "lj-sf":
        spec = replace(spec, lj_style="lj/smooth/linear")
    elif name == "pressure-1kpa":
        spec = replace(spec, pressure_atm=1.0 / 101.325)
    elif name == "eps-nm":
        p = {k: v * 1000.0 if k.startswith("eps_") else v for k, v in p.items()}
    elif name == "kn-mpa":
        p["kn"] *= 1e3
    elif name == "kn-gpa":
        p["kn"] *= 1e6
    elif name == "temperature-3000":
        spec = replace(spec, temperature_K=3000.0)
    return spec, p


def one(args, name: str, work: Path) -> dict:
    from sim_backends.lammps.forcefield import ForceFieldParams

    loaded = load_study(STUDY, fidelity="paper")
    fid = loaded.spec.fidelity_spec().model_copy(update={"n_beads": args.beads})
    system = slurry_system(loaded.dataset, fid)
    block = STEPS // SEED_BLOCKS
    base = SlurryRunSpec(protocol="seed", temperature_K=300.0, timestep_us=0.001, ramp_steps=STEPS, block_steps=block,
                         sample_every=block // 10, averaging_blocks=2, thermo_every=block * 10, tdamp_us=0.2,
                         pdamp_us=1000.0, neighbor_style="bin", lj_style="lj/cut", seed=args.placement)
    spec, p = reading(name, base, params_of("table-s1").as_dict())
    wd = work / name
    wd.mkdir(parents=True, exist_ok=True)
    write_slurry_inputs(wd, system, ForceFieldParams.from_mapping(p), spec, paper_scaled_box(args.beads))
    deck = (wd / DECK_FILE).read_text().splitlines()
    ramp = next(i for i, ln in enumerate(deck) if ln.startswith("fix npt all npt/sphere"))
    deck.insert(ramp + 1, f"fix decided all halt {block} v_rho > {args.decided:g} error continue message yes")
    if args.stop_at_fraction < 1:  # a time cap: the run is cut there and says so
        deck[ramp + 2:ramp + 2] = ["variable stepnow equal step",
                                   f"fix cut all halt {block} v_stepnow >= {int(args.stop_at_fraction * STEPS)} "
                                   "error continue message yes"]
    (wd / DECK_FILE).write_text("\n".join(deck) + "\n")
    lmp = locate_lammps()
    t0 = time.perf_counter()
    proc = subprocess.run(lmp.argv(DECK_FILE, LOG_FILE, 1, 1), cwd=wd, env={**os.environ, **lmp.env, **lmp.thread_env(1)},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    rec = {"reading": name, "what": READINGS[name], "placement": args.placement, "n_beads": args.beads,
           "steps_full": STEPS, "wall_s": round(time.perf_counter() - t0, 1), "returncode": proc.returncode,
           "decided_above_g_cm3": args.decided, "stop_at_fraction": args.stop_at_fraction, "params": p, "lj_style": spec.lj_style,
           "pressure_atm": spec.pressure_atm, "temperature_K": spec.temperature_K, "measured": time.strftime("%Y-%m-%d")}
    try:
        steps, rho = density_trajectory(wd)
        rho = np.asarray(rho, dtype=float)
        rec["trajectory_g_cm3"] = [round(float(x), 6) for x in rho]
        above = np.nonzero(rho > SEED_DENSITY)[0]
        rec["passes_1_89_at_fraction"] = float((above[0] + 1) / SEED_BLOCKS) if len(above) else None
        rec["stopped_at_fraction"] = len(rho) / SEED_BLOCKS
        rec["last_density_g_cm3"] = float(rho[-1])
        rec["end_density_g_cm3"] = float(rho[-2:].mean()) if len(rho) == SEED_BLOCKS else None
    except Exception as exc:  # noqa: BLE001 - kept with the reason
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


def load(path: Path) -> dict[tuple, dict]:
    return load_results(path, lambda r: (r["reading"], r["placement"], r["n_beads"]))


def report(done: dict[tuple, dict]) -> None:
    print(f"\n## Table S1 under the seed protocol ({STEPS:,} steps, k = 1): which reading gives {SEED_DENSITY} at the end")
    print("| reading | what | passes 1.89 at | density where stopped (fraction of the run) | end density | wall (s) |")
    print("|---|---|---|---|---|---|")
    for (name, pl, beads), r in sorted(done.items()):
        at = r.get("passes_1_89_at_fraction")
        end = r.get("end_density_g_cm3")
        cut = r.get("stop_at_fraction", 1.0) < 1 and r.get("stopped_at_fraction", 1.0) >= r.get("stop_at_fraction", 1.0)
        never = f"not by {r['stopped_at_fraction']:.0%} (cut there for time)" if cut else "never"
        print(f"| {name} (placement {pl}, {beads} beads) | {r['what']} | "
              f"{never if at is None else f'{at:.1%} of the run'} | "
              f"{r.get('last_density_g_cm3', float('nan')):.3f} ({r.get('stopped_at_fraction', 0):.1%}) | "
              f"{'-' if end is None else f'{end:.3f}'} | {r['wall_s']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", nargs="+", default=[r for r in READINGS if r != "table-s1"], choices=list(READINGS))
    ap.add_argument("--beads", type=int, default=200)
    ap.add_argument("--placement", type=int, default=1)
    ap.add_argument("--decided", type=float, default=SEED_DENSITY * 1.25)
    ap.add_argument("--stop-at-fraction", type=float, default=1.0,
                    help="cut a run that has not decided by this fraction of the protocol (recorded)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    ap.add_argument("--report", action="store_true", help="print the table from --results, run nothing")
    args = ap.parse_args()
    done = load(args.results)
    if not args.report:
        todo = [n for n in args.readings if (n, args.placement, args.beads) not in done]
        work = args.keep or Path(tempfile.mkdtemp(prefix="calib_discrepancy_"))
        print(f"# {len(todo)} runs to do, folders in {work}", flush=True)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as ex:
            for rec in ex.map(lambda n: one(args, n, work), todo):
                append_result(args.results, rec)
                done[(rec["reading"], rec["placement"], rec["n_beads"])] = rec
                print(f"# done {rec['reading']}: passes 1.89 at {rec.get('passes_1_89_at_fraction')}, "
                      f"last {rec.get('last_density_g_cm3')} in {rec['wall_s']:.0f} s", flush=True)
        print(f"# wall time of this invocation: {time.perf_counter() - t0:.0f} s")
    report(done)


if __name__ == "__main__":
    main()
