"""Slurry-deck throughput: atom-steps/s per core of this deck with ``neighbor bin`` vs
``multi`` and with 2 OpenMP threads vs 2 MPI ranks, next to the previous deck (the one before
the faithful-model change, rebuilt from git commit bb4169f: wet-bead CBD counts, nph/sphere +
langevin, bin) and LAMMPS's own ``bench/in.chute``, all in one invocation. Prints figures;
asserts nothing.

    .venv/bin/python bench/deck_throughput.py [--beads 500 5089] [--steps 20000 2000]

Every run starts from the same random placement (the dev fidelity's box scale, the seed's
Table S1 slurry column), minimises and runs ``steps`` NPT steps; the rate is LAMMPS's own
loop time over all runs. Per core = rate / cores used.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchmark import chute_rate  # noqa: E402
from calib.stages.bead_systems import formulation_of, slurry_system  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.lammps.forcefield import TABLE_S1_SLURRY  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.outputs import run_stats  # noqa: E402
from sim_backends.lammps.placement import paper_scaled_box  # noqa: E402
from sim_backends.lammps.slurry import SlurryRunSpec, write_slurry_inputs  # noqa: E402

PREVIOUS = "bb4169f"
STUDY = REPO / "studies" / "ssb_slurry.yaml"


def previous_modules():
    """beads, forcefield, placement and slurry of the previous commit as a package."""
    pkg = types.ModuleType("prev")
    pkg.__path__ = []
    sys.modules["prev"] = pkg
    mods = {}
    for name in ("units", "beads", "forcefield", "outputs", "placement", "slurry"):
        src = subprocess.run(["git", "show", f"{PREVIOUS}:sim_backends/lammps/{name}.py"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        spec = importlib.util.spec_from_loader(f"prev.{name}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "prev"
        sys.modules[f"prev.{name}"] = mod
        exec(compile(src, f"{PREVIOUS}:{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    return mods


def run(wd: Path, ranks: int, threads: int) -> float:
    lmp = locate_lammps()
    subprocess.run(lmp.argv("in.slurry", "log.lammps", ranks, threads), cwd=wd,
                   env={**os.environ, **lmp.env, **lmp.thread_env(threads)}, check=True, capture_output=True)
    return run_stats((wd / "log.lammps").read_text()).atom_steps_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beads", type=int, nargs="+", default=[500, 5089])
    ap.add_argument("--steps", type=int, nargs="+", default=[20_000, 2_000])
    ap.add_argument("--one-core", action="store_true", help="only the single-core variants (bin, multi, previous)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calib_throughput_"))
    loaded = load_study(STUDY, fidelity="dev")
    fid = loaded.spec.fidelity_spec()
    print(f"# slurry-deck throughput (folders in {work})")
    print(f"in.chute before: {chute_rate(work) / 1e6:.2f} M atom-steps/s (1 core)")
    prev = previous_modules()
    for n, steps in zip(args.beads, args.steps):
        box = tuple(x * fid.initial_box_scale for x in paper_scaled_box(n))
        system = slurry_system(loaded.dataset, fid.model_copy(update={"n_beads": n}))
        ramp = steps // 2 // 1000 * 1000 or 1000
        hold = max(4, (steps - ramp) // 1000 // 2 * 2)
        rows = []
        variants = [("this deck, bin", "bin", 1, 1), ("this deck, multi", "multi", 1, 1)]
        if not args.one_core:
            variants += [("this deck, multi, 2 OpenMP threads", "multi", 1, 2),
                         ("this deck, multi, 2 MPI ranks", "multi", 2, 1)]
        for label, style, ranks, threads in variants:
            wd = work / f"n{n}_{style}_{ranks}x{threads}"
            wd.mkdir()
            spec = SlurryRunSpec(ramp_steps=ramp, block_steps=1000, window_blocks=hold,
                                 averaging_blocks=hold, min_hold_blocks=hold, max_hold_blocks=hold,
                                 early_stop=False, neighbor_style=style, thermo_every=1000)
            write_slurry_inputs(wd, system, TABLE_S1_SLURRY, spec, box)
            rate = run(wd, ranks, threads)
            rows.append((label, rate, rate / (ranks * threads)))
        # the previous deck: its own bead counts and ensemble, same box scale and steps
        wd = work / f"n{n}_previous"
        wd.mkdir()
        pb, pf = prev["beads"], prev["slurry"]
        form = formulation_of(loaded.dataset)
        old_form = pb.Formulation(tuple(pb.Phase(p.name, p.weight_fraction, p.density_g_cm3,
                                                 tuple(pb.SizeClass(c.diameter_um, c.number_fraction)
                                                       for c in p.size_classes), p.slurry_diameter_factor)
                                        for p in form.phases))
        old_system = pb.build_slurry_system(old_form, n)
        old_params = prev["forcefield"].ForceFieldParams(**TABLE_S1_SLURRY.as_dict())
        old_spec = pf.SlurryRunSpec(equilibration_steps=ramp, averaging_steps=hold * 1000)
        pf.write_slurry_inputs(wd, old_system, old_params, old_spec, box)
        rate = run(wd, 1, 1)
        rows.append((f"previous deck ({PREVIOUS}), bin", rate, rate))
        print(f"\n## {n} beads, {ramp + hold * 1000} NPT steps after minimisation")
        print("| deck | atom-steps/s | per core | vs previous |")
        print("|---|---|---|---|")
        for label, rate, per in rows:
            print(f"| {label} | {rate / 1e6:.3f} M | {per / 1e6:.3f} M | {per / rows[-1][2]:.2f} |")
    print(f"\nin.chute after: {chute_rate(work) / 1e6:.2f} M atom-steps/s (1 core)")


if __name__ == "__main__":
    main()
