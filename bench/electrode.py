"""Drying, calendering and voxelisation speed, plus the Table S1 validity figures.
Prints figures; asserts nothing.

    .venv/bin/python bench/electrode.py [--fidelity smoke dev] [--release both] [--seed 1]

For each fidelity: the Table S1 pipeline (slurry -> drying -> calendering 0..50 %, settings
of studies/ssb_pipeline.yaml) through the local backend, then, alone on the machine, the
drying run again and one calendering degree (30 %) from the same states, so their wall
times are not shared with concurrent runs; then ``electrode_structure`` (voxelise +
porosity + profiles) on the dried state at 0.5 um. LAMMPS's ``bench/in.chute`` runs
before and after as the same-run engine reference. ``--release both`` repeats the
calendering with the study's other ``release`` setting (plane removed: spring-back).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchmark import chute_rate  # noqa: E402
from calib.execution.runner import Runner, TrialExecution  # noqa: E402
from calib.stages.calendering import CalenderingTrial  # noqa: E402
from calib.stages.drying import DryingTrial  # noqa: E402
from calib.stages.film_structure import analyse_state, nanoporosity_of  # noqa: E402
from calib.stages.bead_systems import systems_for  # noqa: E402
from calib.stages.upstream_state import Lineage, sha256_of, state_bead_count  # noqa: E402
from calib.execution.pipeline import run_pipeline  # noqa: E402
from calib.execution.pipeline_model import params_from  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402

STUDY = REPO / "studies" / "ssb_pipeline.yaml"


def _run_all(trial, backend, lammps, loaded) -> dict[str, float]:
    """Run one stage trial to its end through the loop's runner; wall seconds per run."""
    ex = TrialExecution(trial, Runner(backend, lammps, loaded.spec.resources, loaded.spec.trial_timeout_s), "bench")
    outcome = ex.run()
    if outcome.failed:
        raise RuntimeError(outcome.why)
    return ex.wall_s


def one_fidelity(work: Path, fidelity: str, seed: int, release_both: bool) -> None:
    loaded = load_study(STUDY, fidelity=fidelity)
    lammps, backend = locate_lammps(), LocalBackend()
    params = params_from("table-s1", "sqlite:///unused.db")
    wd = work / f"pipeline_{fidelity}"
    wd.mkdir()
    t0 = time.perf_counter()
    res = run_pipeline(loaded, params, wd, backend, lammps, seed=seed)
    total = time.perf_counter() - t0
    print(f"\n## {fidelity}: Table S1 pipeline ({state_bead_count(wd / 'slurry' / 'final.data')} beads), "
          f"{total:.1f} s in all")
    print(f"slurry density {res.slurry['density_g_cm3']:.4f} g/cm^3 (converged {res.slurry['density_converged']}, change {res.slurry['density_change_rel']:+.3%}); "
          f"dried thickness {res.dried['thickness_um']:.1f} um, porosity {100 * res.dried['porosity']:.2f} %")
    print("| degree % | T0 um | held um | final um | porosity % |")
    print("|---|---|---|---|---|")
    for d in res.degrees:
        print(f"| {d['degree_pct']:g} | {d['thickness_before_um']:.2f} | {d['thickness_held_um']:.2f} | "
              f"{d['thickness_um']:.2f} | {100 * d['porosity']:.2f} |")
    por = [d["porosity"] for d in res.degrees]
    print(f"porosity falls monotonically: {all(b < a for a, b in zip(por, por[1:]))}")
    print("pipeline run walls (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.wall_s.items()))

    # alone: drying again, then one degree
    dried_state = wd / "drying" / "final.data"
    slurry_state = wd / "slurry" / "final.data"
    dry_loaded = loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"stage": "drying"})})
    d2 = work / f"drying_alone_{fidelity}"
    d2.mkdir()
    dt = DryingTrial(d2, dry_loaded, loaded.spec.fidelity_spec(), params.dried, seed,
                     Lineage("slurry", None, None, None, str(slurry_state), sha256_of(slurry_state)))
    wall_dry = _run_all(dt, backend, lammps, dry_loaded)["drying"]
    c2 = work / f"calender_alone_{fidelity}"
    c2.mkdir()
    cal_loaded = loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"stage": "calendering"})})
    ct = CalenderingTrial(c2, cal_loaded, loaded.spec.fidelity_spec(), params.dried, seed,
                          Lineage("drying", None, None, None, str(dried_state), sha256_of(dried_state)), (30.0,))
    wall_cal = _run_all(ct, backend, lammps, cal_loaded)["calender_00"]
    print(f"alone: drying run {wall_dry:.1f} s; one calendering degree (30 %) {wall_cal:.1f} s")

    _, dried = systems_for(loaded.dataset, state_bead_count(dried_state))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        s = analyse_state(dried_state, dried, None, 0.5, nanoporosity_of(loaded), wd)
        times.append(time.perf_counter() - t)
    print(f"voxelisation of the dried {fidelity} film at 0.5 um: {s.voxels / 1e6:.1f} M voxels, "
          f"{statistics.median(times):.3f} s (median of 3; voxelise + porosity + profiles)")

    if release_both:
        other = not loaded.spec.calendering.release
        spec = loaded.spec.model_copy(update={"stage": "calendering", "calendering": loaded.spec.calendering.model_copy(
            update={"release": other})})
        c3 = work / f"calender_held_{fidelity}"
        c3.mkdir()
        ch = CalenderingTrial(c3, loaded.model_copy(update={"spec": spec}), loaded.spec.fidelity_spec(),
                              params.dried, seed,
                              Lineage("drying", None, None, None, str(dried_state), sha256_of(dried_state)),
                              tuple(d["degree_pct"] for d in res.degrees))
        _run_all(ch, backend, lammps, loaded)
        held = ch.results
        print(("plane removed (spring-back)" if other else "plane kept in place") + ": porosity % " +
              ", ".join(f"{r.degree_pct:g}: {100 * r.porosity:.2f} ({r.thickness_um:.1f} um)" for r in held) +
              f"; monotonic: {all(b.porosity < a.porosity for a, b in zip(held, held[1:]))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelity", nargs="+", default=["smoke", "dev"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--release", choices=("as-study", "both"), default="both")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="calib_bench_electrode_") as tmp:
        work = Path(tmp)
        chute = [chute_rate(work)]
        for fid in args.fidelity:
            one_fidelity(work, fid, args.seed, args.release == "both")
        chute.append(chute_rate(work))
        print(f"\nLAMMPS bench/in.chute (32,000 atoms, 1 rank) before/after: "
              f"{', '.join(f'{c / 1e6:.2f}' for c in chute)} M atom-steps/s (mean {statistics.mean(chute) / 1e6:.2f})")


if __name__ == "__main__":
    main()
