"""Protocol compression against the full protocol: the slurry density at the end of the seed's
protocol (pressure ramped 0 -> 1 atm over the whole run; public thermostat and barostat), run
in 1/k of the steps under a compression law (``sim_backends/lammps/compression.py``), for
several parameter sets and placements. Prints the error against k = 1 per k and law, and the
rank correlation across sets; asserts nothing.

    .venv/bin/python bench/compression.py --steps 20000000 --k 1 10 100 1000 --sets all --placements 1 2 --jobs 2
    .venv/bin/python bench/compression.py --steps 2000000 --k 1 10 100 --law thermal timestep --sets table-s1

Every run is kept in ``--results`` (one JSON line per run: its settings, the density
trajectory as block means at 200 equal fractions of the run, wall time), and a run already
there is not repeated, so a long measurement (a k = 1 run of 2e7 steps at 200 beads takes
about an hour on one core) can be continued across invocations and machines. ``--report``
prints the tables from the results alone.

``--chunk-steps N --keep DIR`` runs each run longer than N steps as segments of N steps
chained by restart files (``segment_decks``: the same ramp, ``run N start 0 stop <steps>``);
an invocation that stops (a session ending, ``--timeout-s``, ``--segments``) leaves its
segments in DIR and the same command continues from the last one finished (a k = 1 run of
Table S1 at 200 beads, 2e5 steps in 4 segments, cut after 3 and resumed: its trajectory is
the uncut single run's within 3.3e-5). ``--import-trial TRIAL_DIR SET`` records the k = 1
runs a calib study already made (its trial folder and ``replicate_NN`` folders) as this
bench's, after checking that their decks and placements are byte-identical to this bench's
for SET at one of ``--placements`` (calib's studies use ``neighbor multi`` where the
cutoffs span a factor 2: ``--neighbor multi``, part of every run's key):

    .venv/bin/python bench/compression.py --neighbor multi --placements 1 2 \\
        --import-trial runs/ssb_slurry_full/trial_00023 full-t23
    .venv/bin/python bench/compression.py --sets all-high --placements 2 --k 1 \\
        --chunk-steps 1000000 --keep bench/out/compression
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from results_log import append_result, load_results  # noqa: E402

from calib.stages.bead_systems import slurry_system  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.lammps.compression import LAWS, NptProtocol, compress  # noqa: E402
from sim_backends.lammps.forcefield import NAMED_PARAMETER_SETS, ForceFieldParams  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.outputs import run_stats  # noqa: E402
from sim_backends.lammps.placement import paper_scaled_box  # noqa: E402
from sim_backends.lammps.slurry import (DECK_FILE, DENSITY_FILE, LOG_FILE, SEED_BLOCKS, SEED_END_BLOCKS, SlurryRunSpec,  # noqa: E402
                                        density_trajectory, write_slurry_inputs)

STUDY = REPO / "studies" / "ssb_slurry.yaml"
RESULTS = REPO / "bench" / "results" / "compression.jsonl"
BLOCKS, END_BLOCKS = SEED_BLOCKS, SEED_END_BLOCKS
"""The stage's own block layout of a seed-protocol run (200 blocks, the end = the last 2)."""

_S1 = NAMED_PARAMETER_SETS["table-s1-slurry"].as_dict()
PARAMETER_SETS: dict[str, dict[str, float]] = {
    "table-s1": {},
    # the default study's best set before this bench (fidelity.py's bias note, 2026-12-01)
    "best-2026-12-01": {"eps_AM": 1.068, "sigma_AM": 0.948, "eps_SE": 765.8, "sigma_SE": 1.039, "eps_CBD": 45.96},
    # the default study's best set under the seed-protocol default (README main job in a fresh
    # clone, 2026-12-05: trial 12, 1.8897 g/cm^3 at dev = k 200)
    "best-2026-12-05": {"eps_AM": 363.0770485284501, "sigma_AM": 1.0812988845523492, "eps_SE": 10000.0,
                        "sigma_SE": 1.0977752031087675, "eps_CBD": 0.1},
    # the default study's best set with its dev density mapped to the full protocol (x 1.078,
    # studies/ssb_slurry.yaml's transfer; calib optimize --confirm, 2026-12-06: trial 12,
    # 1.7717 g/cm^3 at dev, 1.9099 mapped)
    "best-2026-12-06": {"eps_AM": 2999.9999999999977, "sigma_AM": 1.0676351698495767, "eps_SE": 10000.0,
                        "sigma_SE": 1.1, "eps_CBD": 0.1},
    # corners and centre of the default study's bounds (studies/ssb_slurry.yaml)
    "all-low": {"eps_AM": 1.0, "eps_SE": 10.0, "eps_CBD": 0.1, "sigma_AM": 0.9, "sigma_SE": 0.9},
    "all-high": {"eps_AM": 3000.0, "eps_SE": 10000.0, "eps_CBD": 1000.0, "sigma_AM": 1.1, "sigma_SE": 1.1},
    "centre": {"eps_AM": 54.8, "eps_SE": 316.0, "eps_CBD": 10.0, "sigma_AM": 1.0, "sigma_SE": 1.0},
    "soft-cbd-stiff-se": {"eps_AM": 1.0, "eps_SE": 10000.0, "eps_CBD": 0.1, "sigma_AM": 1.1, "sigma_SE": 0.9},
    "stiff-cbd-soft-se": {"eps_AM": 3000.0, "eps_SE": 10.0, "eps_CBD": 1000.0, "sigma_AM": 0.9, "sigma_SE": 1.1},
    "stiff-am-only": {"eps_AM": 3000.0, "eps_SE": 10.0, "eps_CBD": 0.1, "sigma_AM": 1.1, "sigma_SE": 1.0},
    # the k = 1 trials of studies/ssb_slurry_full.yaml (its search judged at the full protocol,
    # 2026-12-06; params.json of trials 20, 22 and 23): their two placements per trial are
    # this bench's placements 1 and 2 with neighbor multi (--import-trial checks the decks)
    "full-t20": {"eps_AM": 2122.4481465422573, "sigma_AM": 1.0646956932333815, "eps_SE": 2271.0916729251758,
                 "sigma_SE": 1.0608839630549036, "eps_CBD": 630.904964244113},
    "full-t22": {"eps_AM": 2999.9999999999977, "sigma_AM": 1.1, "eps_SE": 6953.193488960254,
                 "sigma_SE": 1.1, "eps_CBD": 999.9999999999998},
    "full-t23": {"eps_AM": 2521.089378098627, "sigma_AM": 1.0827405343634662, "eps_SE": 4032.5982756159983,
                 "sigma_SE": 1.0814628937993331, "eps_CBD": 790.4688825765593},
}


def params_of(name: str) -> ForceFieldParams:
    return ForceFieldParams.from_mapping({**_S1, **PARAMETER_SETS[name]})


def key_of(r: dict) -> tuple:
    return (r["set"], r["placement"], r["n_beads"], r["steps_full"], r["k"], r["law"], r.get("neighbor", "bin"))


def load(path: Path) -> dict[tuple, dict]:
    return load_results(path, key_of)


def prepare(args, set_name: str, placement: int, k: int, law: str, wd: Path) -> NptProtocol:
    """Write the run's inputs (deck and placement) into ``wd``; returns its compressed protocol."""
    loaded = load_study(STUDY, fidelity="paper")
    fid = loaded.spec.fidelity_spec().model_copy(update={"n_beads": args.beads})
    system = slurry_system(loaded.dataset, fid)
    target = NptProtocol(steps=args.steps, timestep_us=0.001, temperature_K=300.0, tdamp_us=0.2, pdamp_us=1000.0)
    run = compress(target, k, law) if k > 1 else target  # k = 1: the protocol itself (law "none")
    block = run.steps // BLOCKS
    spec = SlurryRunSpec(protocol="seed", temperature_K=run.temperature_K, timestep_us=run.timestep_us,
                         ramp_steps=run.steps, block_steps=block, sample_every=max(1, block // 10),
                         averaging_blocks=END_BLOCKS, thermo_every=block * 10, tdamp_us=run.tdamp_us,
                         pdamp_us=run.pdamp_us, neighbor_style=args.neighbor, seed=placement)
    wd.mkdir(parents=True, exist_ok=True)
    write_slurry_inputs(wd, system, params_of(set_name), spec, paper_scaled_box(args.beads))
    return run


def record(args, set_name: str, placement: int, k: int, law: str, run: NptProtocol, wd: Path, wall: float,
           returncode: int) -> dict:
    """The results line of a finished run in ``wd`` (its end density, or its reason if failed)."""
    rec = {"set": set_name, "placement": placement, "n_beads": args.beads, "steps_full": args.steps, "k": k,
           "law": law, "neighbor": args.neighbor, "steps": run.steps, "timestep_us": run.timestep_us,
           "temperature_K": run.temperature_K, "tdamp_us": run.tdamp_us, "pdamp_us": run.pdamp_us,
           "wall_s": round(wall, 1), "returncode": returncode, "params": {**_S1, **PARAMETER_SETS[set_name]},
           "measured": time.strftime("%Y-%m-%d")}
    try:
        steps, rho = density_trajectory(wd)
        rec["trajectory_g_cm3"] = [round(float(x), 6) for x in rho]
        rec["end_density_g_cm3"] = float(np.mean(rho[-END_BLOCKS:])) if len(rho) == BLOCKS else None
        rec["atom_steps_per_s"] = run_stats((wd / LOG_FILE).read_text()).atom_steps_per_s
    except Exception as exc:  # a blown-up run: kept with its reason (LAMMPS's ERROR line if any)
        log = (wd / LOG_FILE).read_text() if (wd / LOG_FILE).exists() else ""
        errs = [ln for ln in log.splitlines() if ln.startswith("ERROR")]
        rec["error"] = errs[-1] if errs else f"{type(exc).__name__}: {exc}"
        rec["end_density_g_cm3"] = None
    return rec


def one(args, set_name: str, placement: int, k: int, law: str, work: Path) -> dict:
    wd = work / f"{set_name}_p{placement}_k{k}_{law}_{args.neighbor}"
    run = prepare(args, set_name, placement, k, law, wd)
    if args.chunk_steps and run.steps > args.chunk_steps:
        wall, rc, extra = run_chunked(wd, run.steps, args.chunk_steps, args.timeout_s, args.segments)
        if extra is None:  # stopped: not recorded, the same command resumes it
            return {"set": set_name, "placement": placement, "k": k, "law": law, "stopped": True, "wall_s": wall}
        rec = record(args, set_name, placement, k, law, run, wd, wall, rc)
        return {**rec, **extra}
    lmp = locate_lammps()
    t0 = time.perf_counter()
    proc = subprocess.run(lmp.argv(DECK_FILE, LOG_FILE, 1, 1), cwd=wd, env={**os.environ, **lmp.env, **lmp.thread_env(1)},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return record(args, set_name, placement, k, law, run, wd, time.perf_counter() - t0, proc.returncode)


PROGRESS = "segments.json"
"""A chunked run's progress in its folder: segments done, the density file's size then, walls."""


def segment_decks(deck: str, steps: int, chunk: int) -> list[str]:
    """The slurry deck ``deck`` (one ``run <steps>``) as LAMMPS inputs of ``ceil(steps / chunk)``
    segments chained by restart files. Every segment runs ``run N start 0 stop <steps>``, so
    the barostat's pressure ramp is the single run's linear function of the step; a later
    segment reads the previous restart and declares again what a restart does not keep (pair
    coefficients, neighbour and thermo settings, the variable and fixes: ``npt`` under its ID,
    so LAMMPS restores its thermostat and barostat state; the density blocks appended to the
    same file). Refuses a deck of another shape. Chunk boundaries must fall on block ends."""
    lines = deck.splitlines()
    runs = [i for i, ln in enumerate(lines) if ln.startswith("run ")]
    if len(runs) != 1 or lines[runs[0]] != f"run {steps}":
        raise ValueError(f"the deck must have one 'run {steps}' line")
    blocks = [ln for ln in lines if ln.startswith("fix rho_blocks ") and f" file {DENSITY_FILE} " in ln]
    if len(blocks) != 1 or chunk % int(blocks[0].split()[6]) != 0:
        raise ValueError("--chunk-steps must be a multiple of the density block")
    head, tail = lines[:runs[0]], lines[runs[0] + 1:]
    keep = ("pair_coeff ", "neighbor ", "neigh_modify ", "timestep ", "thermo_style ", "thermo_modify ", "thermo ",
            "variable ", "fix ")
    again = [ln.replace(f" file {DENSITY_FILE} ", f" append {DENSITY_FILE} ") for ln in head if ln.startswith(keep)]
    newton = [ln for ln in head if ln.startswith("newton ")]  # before read_restart, as in the first segment
    comm = [ln for ln in head if ln.startswith("comm_modify ")]  # a restart does not keep them
    n = math.ceil(steps / chunk)
    decks = []
    for i in range(n):
        run_line = f"run {min(chunk, steps - i * chunk)} start 0 stop {steps}"
        body = head if i == 0 else ["# segment of a chunked run (bench/compression.py)", *newton,
                                    f"read_restart seg_{i}.restart", *comm, *again]
        end = tail if i == n - 1 else [f"write_restart seg_{i + 1}.restart"]
        decks.append("\n".join([*body, run_line, *end, ""]))
    return decks


def run_chunked(wd: Path, steps: int, chunk: int, timeout_s: float | None,
                max_segments: int | None = None) -> tuple[float, int, dict | None]:
    """Run the deck in ``wd`` as segments (``segment_decks``), continuing from the last segment a
    previous invocation finished when its decks are the same (the density file rewound to its
    size then); anything else starts over. Returns (wall s of all invocations' segments,
    return code, the record's extra fields), extra None when a segment stopped (timeout or
    interruption: the command resumes it)."""
    decks = segment_decks((wd / DECK_FILE).read_text(), steps, chunk)
    prog_path = wd / PROGRESS
    prog = json.loads(prog_path.read_text()) if prog_path.exists() else {}
    if prog.get("decks") != decks:
        prog = {"decks": decks, "done": 0, "density_bytes": 0, "walls": [], "session_starts": []}
        for f in [*wd.glob("seg_*"), *wd.glob("log.seg_*"), wd / DENSITY_FILE]:
            f.unlink(missing_ok=True)
    done = prog["done"]
    if (wd / DENSITY_FILE).exists():  # what a cut segment appended
        with open(wd / DENSITY_FILE, "r+b") as fh:
            fh.truncate(prog["density_bytes"])
    prog["session_starts"].append(done)
    lmp = locate_lammps()
    rc = 0
    for i in range(done, len(decks)):
        if max_segments is not None and i - done >= max_segments:
            return sum(prog["walls"]), 0, None
        (wd / f"in.seg_{i}").write_text(decks[i])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(lmp.argv(f"in.seg_{i}", f"log.seg_{i}.lammps", 1, 1), cwd=wd,
                                  env={**os.environ, **lmp.env, **lmp.thread_env(1)}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            prog_path.write_text(json.dumps(prog))
            return sum(prog["walls"]) + time.perf_counter() - t0, 124, None
        prog["walls"].append(round(time.perf_counter() - t0, 1))
        rc = proc.returncode
        if rc < 0:  # killed by a signal (an interruption, not a failure): resumable
            prog["walls"].pop()
            prog_path.write_text(json.dumps(prog))
            return sum(prog["walls"]), rc, None
        if rc != 0:
            break
        prog["done"] = i + 1
        prog["density_bytes"] = (wd / DENSITY_FILE).stat().st_size
        prog_path.write_text(json.dumps(prog))
        (wd / f"seg_{i}.restart").unlink(missing_ok=True)  # only the latest restart is needed
    (wd / LOG_FILE).write_text("".join((wd / f"log.seg_{i}.lammps").read_text()
                                       for i in range(len(decks)) if (wd / f"log.seg_{i}.lammps").exists()))
    return sum(prog["walls"]), rc, {"chunk_steps": chunk, "segments": len(decks),
                                    "session_starts": prog["session_starts"]}


def log_wall_s(log: str) -> float:
    """LAMMPS's "Total wall time: h:mm:ss" of a finished run, in seconds."""
    lines = [ln for ln in log.splitlines() if ln.startswith("Total wall time:")]
    if not lines:
        raise ValueError("no 'Total wall time' line: the run did not finish")
    h, m, sec = (int(x) for x in lines[-1].split(":", 1)[1].strip().split(":"))
    return 3600.0 * h + 60.0 * m + sec


def import_trial(args, trial_dir: Path, set_name: str) -> list[dict]:
    """The k = 1 records of a calib trial folder (and its ``replicate_NN`` folders) that ran
    this bench's run: each folder's deck and placement file must be byte-identical to what
    this bench writes for ``set_name`` at one of ``--placements`` (with ``--neighbor``), which
    fixes its placement; a folder matching none is refused, naming the first difference."""
    recs = []
    for wd in [trial_dir, *sorted(trial_dir.glob("replicate_*"))]:
        found = None
        for p in args.placements:
            ref = Path(tempfile.mkdtemp(prefix="calib_compression_ref_"))
            run = prepare(args, set_name, p, 1, "none", ref)
            same = all((ref / f).read_bytes() == (wd / f).read_bytes() for f in (DECK_FILE, "system.data"))
            shutil.rmtree(ref)
            if same:
                found = (p, run)
                break
        if found is None:
            sys.exit(f"{wd}: its {DECK_FILE} or system.data differs from this bench's k = 1 run of {set_name} at "
                     f"placements {args.placements} with neighbor {args.neighbor}")
        p, run = found
        rec = record(args, set_name, p, 1, "none", run, wd, log_wall_s((wd / LOG_FILE).read_text()), 0)
        rec["source"] = f"calib trial folder {wd.relative_to(REPO) if wd.is_relative_to(REPO) else wd}"
        recs.append(rec)
    return recs


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else math.nan


def label(r: dict) -> str:
    """A run's set, with its neighbor style when not the default bin."""
    nb = r.get("neighbor", "bin")
    return r["set"] if nb == "bin" else f"{r['set']} ({nb})"


def sp(r: dict) -> tuple:
    """A run's set, placement and neighbor style: what its k = 1 reference must share."""
    return (r["set"], r["placement"], r.get("neighbor", "bin"))


def report(results: dict[tuple, dict], steps_full: int, beads: int) -> None:
    rows = [r for r in results.values() if r["steps_full"] == steps_full and r["n_beads"] == beads]
    ref = {sp(r): r for r in rows if r["k"] == 1}  # same set, placement and neighbor style
    print(f"\n## Seed protocol over {steps_full:,} steps at {beads} beads: end density (g/cm^3, mean of the last "
          f"{END_BLOCKS} of {BLOCKS} blocks)")
    print("| set | placement | k | law | steps | T (K) | Tdamp (us) | Pdamp (us) | dt (us) | end density | vs k=1 | "
          "max dev. along the run | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["set"], r["placement"], r["k"], r["law"])):
        base = ref.get(sp(r))
        end = r.get("end_density_g_cm3")
        dev = traj = "-"
        if base and end is not None and base.get("end_density_g_cm3") and r["k"] > 1:
            dev = f"{end / base['end_density_g_cm3'] - 1:+.1%}"
            a, b = np.array(r["trajectory_g_cm3"]), np.array(base["trajectory_g_cm3"])
            late = slice(BLOCKS // 10, None)  # from 10 % of the run on (early densities are tiny)
            traj = f"{np.max(np.abs(a[late] / b[late] - 1)):.1%}"
        print(f"| {label(r)} | {r['placement']} | {r['k']} | {r['law']} | {r['steps']:,} | {r['temperature_K']:.4g} | "
              f"{r['tdamp_us']:.3g} | {r['pdamp_us']:.4g} | {r['timestep_us']:.3g} | "
              f"{'FAILED: ' + r.get('error', '') if end is None else f'{end:.4f}'} | {dev} | {traj} | {r['wall_s']:.0f} |")
    print("\n## Error against k = 1, per k and law (over sets and placements with a k = 1 run)")
    print("| k | law | runs | sets | mean abs error | max abs error | Spearman over runs | Spearman over set means "
          "| error of the set means: mean abs / max abs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, law in sorted({(r["k"], r["law"]) for r in rows if r["k"] > 1}):
        errs, a, b = [], [], []
        per_set: dict[str, tuple[list, list]] = {}
        for r in rows:
            base = ref.get(sp(r))
            if r["k"] != k or r["law"] != law or not base or r.get("end_density_g_cm3") is None \
                    or base.get("end_density_g_cm3") is None:
                continue
            errs.append(r["end_density_g_cm3"] / base["end_density_g_cm3"] - 1)
            a.append(r["end_density_g_cm3"])
            b.append(base["end_density_g_cm3"])
            per_set.setdefault(r["set"], ([], []))[0].append(r["end_density_g_cm3"])
            per_set[r["set"]][1].append(base["end_density_g_cm3"])
        if errs:  # set means: over the placements that have both runs (the placements' spread averaged out)
            ma = [float(np.mean(x)) for x, _ in per_set.values()]
            mb = [float(np.mean(y)) for _, y in per_set.values()]
            merr = [x / y - 1 for x, y in zip(ma, mb)]
            print(f"| {k} | {law} | {len(errs)} | {len(per_set)} | {np.mean(np.abs(errs)):.1%} | "
                  f"{np.max(np.abs(errs)):.1%} | {spearman(a, b):.3f} | {spearman(ma, mb):.3f} | "
                  f"{np.mean(np.abs(merr)):.1%} / {np.max(np.abs(merr)):.1%} |")
    for ref_k in sorted({r["k"] for r in rows if r["k"] > 1}):
        by_set = {(r["set"], r["k"], r["law"]): r["end_density_g_cm3"] for r in rows
                  if r["placement"] == 1 and r.get("end_density_g_cm3") is not None}
        refs = {s: v for (s, k, _), v in by_set.items() if k == ref_k}
        if len(refs) < 3:
            continue
        print(f"\n## Rank correlation across sets against k = {ref_k} (placement 1; where k = 1 runs are missing, "
              "the closest affordable reference)")
        print("| k | law | sets | Spearman | max abs difference from the reference |")
        print("|---|---|---|---|---|")
        for k, law in sorted({(k, law) for (_, k, law) in by_set if k > ref_k}):
            common = sorted(s for s in refs if (s, k, law) in by_set)
            if len(common) >= 3:
                a = [by_set[(s, k, law)] for s in common]
                b = [refs[s] for s in common]
                worst = max(abs(x / y - 1) for x, y in zip(a, b))
                print(f"| {k} | {law} | {len(common)} | {spearman(a, b):.3f} | {worst:.1%} |")
        break  # the lowest k > 1 with three sets is the reference
    ks = sorted({r["k"] for r in rows})
    cells: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for r in rows:
        if r.get("end_density_g_cm3") is not None and (r["k"] == 1 or r["law"] == "undamped"):
            cells.setdefault(label(r), {}).setdefault(r["k"], []).append((r["placement"], r["end_density_g_cm3"]))
    print("\n## Per set: end density at each k (undamped law), mean over placements (their number), and "
          "the k = 1 placements' relative sd")
    print("| set | " + " | ".join(f"k = {k}" for k in ks) + " | k = 1 placements' rel. sd |")
    print("|---" * (len(ks) + 2) + "|")
    for name, by_k in sorted(cells.items(), key=lambda t: (-len(t[1].get(1, [])), t[0])):
        row = [f"{np.mean([v for _, v in by_k[k]]):.3f} ({len(by_k[k])})" if k in by_k else "-" for k in ks]
        one = [v for _, v in by_k.get(1, [])]
        sd = f"{np.std(one, ddof=1) / np.mean(one):.1%}" if len(one) > 1 else "-"
        print(f"| {name} | " + " | ".join(row) + f" | {sd} |")
    factors = [(r["set"], r["placement"], r["k"], r["law"], ref[sp(r)]["end_density_g_cm3"]
                / r["end_density_g_cm3"]) for r in rows
               if r["k"] > 1 and r.get("end_density_g_cm3") and sp(r) in ref
               and ref[sp(r)].get("end_density_g_cm3")]
    if factors:
        print("\n## Transfer factor: k = 1 end density over the rung's, same set and placement "
              "(what a fidelity's transfer map multiplies by; docs/model.md#transfer)")
        print("| k | law | set | placement | factor |")
        print("|---|---|---|---|---|")
        for s_, p, k, law, f in sorted(factors, key=lambda x: (x[2], x[3], x[0], x[1])):
            print(f"| {k} | {law} | {s_} | {p} | {f:.4f} |")
    spread = {}
    for r in rows:
        if r.get("end_density_g_cm3") is not None:
            spread.setdefault((label(r), r["k"], r["law"]), []).append(r["end_density_g_cm3"])
    pairs = [(key, v) for key, v in spread.items() if len(v) > 1]
    if pairs:
        print("\n## Spread across placements (relative sd of the end density)")
        print("| set | k | law | placements | mean | rel. sd |")
        print("|---|---|---|---|---|---|")
        for (s, k, law), v in sorted(pairs):
            print(f"| {s} | {k} | {law} | {len(v)} | {np.mean(v):.4f} | {np.std(v, ddof=1) / np.mean(v):.2%} |")


def bead_report(results: dict[tuple, dict], steps_full: int) -> None:
    """End density against bead count under the same protocol, k and law (mean over
    placements, their relative sd, and the difference from the largest bead count's mean)."""
    groups: dict[tuple, dict[int, list[float]]] = {}
    for r in results.values():
        if r["steps_full"] == steps_full and r["set"] == "table-s1" and r.get("end_density_g_cm3") is not None:
            groups.setdefault((r["k"], r["law"]), {}).setdefault(r["n_beads"], []).append(r["end_density_g_cm3"])
    rows = [(key, by) for key, by in sorted(groups.items()) if len(by) > 1]
    if not rows:
        return
    print(f"\n## Bead count: Table S1's end density under the same protocol ({steps_full:,} steps at k = 1)")
    print("| k | law | beads | placements | mean end density | rel. sd | vs the most beads |")
    print("|---|---|---|---|---|---|---|")
    for (k, law), by in rows:
        ref = float(np.mean(by[max(by)]))
        for n, v in sorted(by.items()):
            sd = f"{np.std(v, ddof=1) / np.mean(v):.2%}" if len(v) > 1 else "-"
            print(f"| {k} | {law} | {n} | {len(v)} | {np.mean(v):.4f} | {sd} | {np.mean(v) / ref - 1:+.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000_000, help="the full protocol's steps (seed: 2e7)")
    ap.add_argument("--beads", type=int, default=200)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--law", nargs="+", default=["temperature"], choices=LAWS)
    ap.add_argument("--sets", nargs="+", default=["table-s1"], help=f"names of {sorted(PARAMETER_SETS)} or 'all'")
    ap.add_argument("--placements", type=int, nargs="+", default=[1])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--report", action="store_true", help="print the tables from --results, run nothing")
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    ap.add_argument("--chunk-steps", type=int,
                    help="run each run longer than this as resumable segments of this many steps (a multiple of "
                         "its density block; needs --keep, where a later invocation finds the segments done)")
    ap.add_argument("--timeout-s", type=float, help="wall limit of each segment of a chunked run (default: none)")
    ap.add_argument("--segments", type=int, help="segments each chunked run may run in this invocation (default: all)")
    ap.add_argument("--neighbor", choices=("bin", "multi"), default="bin",
                    help="LAMMPS neighbor style of the runs (calib picks multi for some sets; part of a run's key)")
    ap.add_argument("--import-trial", nargs=2, action="append", metavar=("TRIAL_DIR", "SET"), default=[],
                    help="record a calib trial's k = 1 runs (its folder and replicate_NN folders) as this bench's "
                         "runs of SET, after checking their decks are this bench's (see --placements, --neighbor)")
    args = ap.parse_args()
    sets = sorted(PARAMETER_SETS) if args.sets == ["all"] else args.sets
    done = load(args.results)
    for trial_dir, set_name in args.import_trial:
        for rec in import_trial(args, Path(trial_dir), set_name):
            if key_of(rec) in done:
                print(f"# already recorded: {rec['set']} p{rec['placement']} k1 ({rec['source']})")
                continue
            append_result(args.results, rec)
            done[key_of(rec)] = rec
            print(f"# imported {rec['set']} p{rec['placement']} k1 from {rec['source']}: "
                  f"{rec['end_density_g_cm3']} ({rec['wall_s']:.0f} s)")
    if not args.report and not args.import_trial:
        todo = [(s, p, k, law) for s in sets for p in args.placements for k in args.k
                for law in (["none"] if k == 1 else args.law)
                if (s, p, args.beads, args.steps, k, "none" if k == 1 else law, args.neighbor) not in done]
        todo.sort(key=lambda t: t[2])  # longest first, so that the pool ends together
        if args.chunk_steps:  # every chunked run's blocks checked before the first run starts
            probe = Path(tempfile.mkdtemp(prefix="calib_compression_probe_"))
            for s_, p_, k_, law_ in todo:
                run_ = prepare(args, s_, p_, k_, law_, probe)
                if run_.steps > args.chunk_steps:
                    try:
                        segment_decks((probe / DECK_FILE).read_text(), run_.steps, args.chunk_steps)
                    except ValueError as exc:
                        sys.exit(f"--chunk-steps {args.chunk_steps}: {s_} p{p_} k{k_}: {exc}")
            shutil.rmtree(probe)
        if args.chunk_steps and not args.keep:
            sys.exit("--chunk-steps needs --keep DIR: a later invocation resumes from the segments kept there")
        work = args.keep or Path(tempfile.mkdtemp(prefix="calib_compression_"))
        print(f"# {len(todo)} runs to do, folders in {work}", flush=True)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as ex:
            for rec in ex.map(lambda t: one(args, *t, work), todo):
                if rec.get("stopped"):
                    print(f"# stopped {rec['set']} p{rec['placement']} k{rec['k']} {rec['law']} after "
                          f"{rec['wall_s']:.0f} s of segments: not recorded, run the same command to resume", flush=True)
                    continue
                append_result(args.results, rec)
                done[key_of(rec)] = rec
                print(f"# done {rec['set']} p{rec['placement']} k{rec['k']} {rec['law']}: "
                      f"{rec.get('end_density_g_cm3')} in {rec['wall_s']:.0f} s", flush=True)
        print(f"# wall time of this invocation: {time.perf_counter() - t0:.0f} s")
    report(done, args.steps, args.beads)
    bead_report(done, args.steps)


if __name__ == "__main__":
    main()
