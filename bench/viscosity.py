"""Benchmarks of the viscosity measurement. Prints figures; asserts nothing.

    .venv/bin/python bench/viscosity.py [--fidelity dev] [--study studies/lib_nmc_slurry.yaml]

- Engine reference: LAMMPS's ``bench/in.chute`` in the same invocation (before and after).
- Early stopping: one slurry state of the study's system at ``--fidelity`` is built with a
  fixed parameter set (``--params``); then for each of the study's shear rates a
  fixed-length run (every segment up to max_strain / shear_max_steps) and an early-stopped
  run (same deck, stopping at the first steady window after min_strain) start from the same
  restart, side by side on two cores. Reported per rate: steps and wall time of both, the
  steps saved, the fixed run's viscosity (batch mean of the segments after min_strain) with
  its batch-means and blocking standard errors, the early run's viscosity (its last window),
  and whether the early estimate lies within one fixed-run standard error. The work
  directory is kept: ``bench/stop_rules.py`` replays other stopping rules on its runs.
- ``--smoke-trial``: one whole ``smoke`` trial with the study's curve (slurry run, then the
  shear rates concurrently through the local backend), wall time end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchmark import chute_rate  # noqa: E402  (the same engine reference as bench/benchmark.py)
from calib.stages.slurry import SlurryTrial  # noqa: E402
from calib.stages.slurry_runs import rate_plans, shear_run_spec  # noqa: E402
from calib.stages.slurry_settings import simulated_rates_per_s  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.backend import Task  # noqa: E402
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.shear import (SHEAR_DECK, SHEAR_LOG, blocking_sem, read_shear_stress,  # noqa: E402
                                      segment_means, shear_result, write_shear_inputs)
from sim_backends.lammps.units import micro_viscosity_to_pa_s  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402

DEFAULT_PARAMS = "eps_AM=5,eps_SE=50,eps_CBD=1"


def params_from(text: str):
    return dataclasses.replace(TABLE_S1_SLURRY, **{k: float(v) for k, v in (kv.split("=") for kv in text.split(","))})


def run_jobs(backend: LocalBackend, jobs: list[tuple[Path, tuple[str, ...], dict]]) -> list[float]:
    """Submit all, wait for all; wall seconds of each (from its own start)."""
    handles = [backend.submit(Task(d, argv, env, timeout_s=None)) for d, argv, env in jobs]
    results = [backend.wait(h) for h in handles]
    for (d, _, _), r in zip(jobs, results):
        if r.state.value != "DONE":
            raise RuntimeError(f"{d}: {r.state.value} {r.reason}")
    return [r.wall_s for r in results]


def early_stopping(work: Path, study: Path, fidelity: str, params_text: str, seed: int = 1) -> list[dict]:
    loaded = load_study(study, fidelity=fidelity)
    fid = loaded.spec.fidelity_spec()
    params = params_from(params_text)
    inst = locate_lammps()
    backend = LocalBackend(cores=2)
    trial = SlurryTrial(work / "state", loaded, fid, params, seed=seed)
    trial.workdir.mkdir()
    (run,) = trial.first_runs()
    t0 = time.perf_counter()
    run_jobs(backend, [(trial.workdir, inst.argv(run.deck), inst.env)])
    print(f"slurry state ({fid.n_beads} beads, {fidelity}): {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for plan in rate_plans(simulated_rates_per_s(loaded), loaded.spec.viscosity, fid):
        spec = shear_run_spec(plan, loaded.spec, fid, params, trial.system)
        specs = {"fixed": dataclasses.replace(spec, early_stop=False), "early": spec}
        dirs = {}
        for k, sp in specs.items():
            d = trial.workdir / f"{k}_{plan.index:02d}"
            d.mkdir()
            write_shear_inputs(d, sp)
            dirs[k] = d
        walls = run_jobs(backend, [(dirs[k], inst.argv(SHEAR_DECK, SHEAR_LOG), inst.env) for k in specs])
        res = {k: shear_result(dirs[k], specs[k]) for k in specs}
        f, e = res["fixed"], res["early"]
        row = {"rate_exp_per_s": plan.rate_exp_per_s, "rate_sim_per_us": plan.rate_sim_per_us,
               "steps_fixed": f.steps, "steps_early": e.steps, "saved": 1 - e.steps / f.steps,
               "wall_fixed_s": walls[0], "wall_early_s": walls[1], "strain_fixed": f.strain, "strain_early": e.strain,
               "eta_fixed": micro_viscosity_to_pa_s(f.viscosity), "se_fixed": micro_viscosity_to_pa_s(f.sem),
               "fixed_converged": f.converged, "eta_early": micro_viscosity_to_pa_s(e.viscosity),
               "se_early": micro_viscosity_to_pa_s(e.sem), "early_converged": e.converged}
        row["within_se"] = abs(row["eta_early"] - row["eta_fixed"]) <= row["se_fixed"]
        # the fixed run's standard error with the correlation of its segment means accounted for
        _, mpxy = read_shear_stress(dirs["fixed"])
        skip = max(0, specs["fixed"].min_segments - specs["fixed"].window)
        steady = segment_means(mpxy / plan.rate_sim_per_us, plan.segment_blocks)[skip:]
        row["se_fixed_blocking"] = micro_viscosity_to_pa_s(blocking_sem(steady, min_blocks=4))
        row["within_se_blocking"] = abs(row["eta_early"] - row["eta_fixed"]) <= row["se_fixed_blocking"]
        rows.append(row)
        print(f"  rate {plan.rate_exp_per_s:g} 1/s done", flush=True)
    return rows


def smoke_trial(work: Path, study: Path, params_text: str) -> dict:
    loaded = load_study(study, fidelity="smoke")
    fid = loaded.spec.fidelity_spec()
    inst = locate_lammps()
    backend = LocalBackend(cores=2)
    trial = SlurryTrial(work / "smoke_trial", loaded, fid, params_from(params_text), seed=1)
    trial.workdir.mkdir()
    t0 = time.perf_counter()
    runs = trial.first_runs()
    walls: dict[str, float] = {}
    while runs:
        for r, w in zip(runs, run_jobs(backend, [(r.workdir, inst.argv(r.deck, r.log), inst.env) for r in runs])):
            walls[r.key] = w
        runs = trial.next_runs()
    score = trial.score(walls)
    return {"wall_s": time.perf_counter() - t0, "slurry_s": walls["slurry"],
            "rates": [(r.rate_exp_per_s, r.viscosity_pa_s, r.converged, r.steps, r.wall_s) for r in trial.rates],
            "density": score.observables["density_g_cm3"], "objective": score.value}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelity", default="dev")
    ap.add_argument("--study", type=Path, default=REPO / "studies" / "lib_nmc_slurry.yaml")
    ap.add_argument("--params", default=DEFAULT_PARAMS, help="Table S1 slurry column with these keys replaced")
    ap.add_argument("--seed", type=int, default=1, help="seed of the slurry state (placement, velocities)")
    ap.add_argument("--smoke-trial", action="store_true")
    ap.add_argument("--no-early-stopping", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calib_bench_visc_"))
    print(f"# calib viscosity benchmark ({time.strftime('%Y-%m-%d %H:%M')}), work dir {work}")
    print(f"study {args.study.name}, parameters: Table S1 slurry column with {args.params}, seed {args.seed}")
    chute = [chute_rate(work)]
    rows = [] if args.no_early_stopping else early_stopping(work, args.study, args.fidelity, args.params, args.seed)
    smoke = smoke_trial(work, args.study, args.params) if args.smoke_trial else None
    chute.append(chute_rate(work))
    print(f"\nLAMMPS bench/in.chute (32,000 atoms, 1 rank): {statistics.mean(chute) / 1e6:.2f} M atom-steps/s "
          f"(runs: {', '.join(f'{c / 1e6:.2f}' for c in chute)})")
    if rows:
        print(f"\nEarly stopping vs fixed length at {args.fidelity} (two runs side by side per rate):")
        print("| rate 1/s (sim 1/us) | steps fixed | steps early | saved | wall fixed s | wall early s | "
              "eta fixed Pa s | eta early Pa s | within fixed SE | fixed SE by blocking | within it | "
              "converged fixed/early |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['rate_exp_per_s']:g} ({r['rate_sim_per_us']:g}) | {r['steps_fixed']} | {r['steps_early']} | "
                  f"{100 * r['saved']:.0f} % | {r['wall_fixed_s']:.1f} | {r['wall_early_s']:.1f} | "
                  f"{r['eta_fixed']:.3f} +- {r['se_fixed']:.3f} | {r['eta_early']:.3f} +- {r['se_early']:.3f} | "
                  f"{'yes' if r['within_se'] else 'no'} | {r['se_fixed_blocking']:.3f} | "
                  f"{'yes' if r['within_se_blocking'] else 'no'} | {r['fixed_converged']}/{r['early_converged']} |")
        tot_f = sum(r["steps_fixed"] for r in rows)
        tot_e = sum(r["steps_early"] for r in rows)
        print(f"all rates: {tot_e} of {tot_f} steps ({100 * (1 - tot_e / tot_f):.0f} % saved)")
    if smoke:
        print(f"\nOne smoke trial with the curve: {smoke['wall_s']:.1f} s end to end "
              f"(slurry {smoke['slurry_s']:.1f} s, then {len(smoke['rates'])} rates on 2 cores); "
              f"density {smoke['density']:.3f} g/cm^3, objective {smoke['objective']:.3g}")
        for rate, eta, conv, steps, wall in smoke["rates"]:
            print(f"  {rate:g} 1/s: eta {eta:.3g} Pa s, {steps} steps, {wall:.1f} s, converged {conv}")


if __name__ == "__main__":
    main()
