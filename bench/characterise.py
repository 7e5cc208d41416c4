"""Characterisation of the Table S1 electrode: validity (0-50 % next to the seed's Fig. 4
trends) and speed (one characterisation of a calendered film at 0.5 um, alone on the
machine, against TauFactor's own multi-phase solver on the same image as the baseline).
Prints figures; asserts nothing.

    .venv/bin/python bench/characterise.py [--fidelity dev] [--pipeline DIR] [--degree 30]

Without ``--pipeline`` it first runs ``calib pipeline``'s chain with the seed's Table S1
(settings of studies/ssb_pipeline.yaml, calendering degrees left out with their reason
when a bead crosses the plane); with it, it reads an existing pipeline folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.execution.pipeline import run_pipeline  # noqa: E402

from calib.execution.pipeline_model import params_from  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.characterise import RESULT_FILE, SPEC_FILE, CharacteriseSpec, characterise  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402
from sim_backends.microstructure import film_voxels  # noqa: E402

STUDY = REPO / "studies" / "ssb_pipeline.yaml"


def validity(rows: list[dict]) -> None:
    print("| degree % | porosity | conductivity S/m | SE tau_g | SE D_eff/D_0 | sigma/tau (norm.) | SE connected | "
          "CG it | SOR it | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tau = "inf" if r["se_tortuosity"] is None else f"{r['se_tortuosity']:.3f}"
        print(f"| {r['degree_pct']:g} | {r['porosity']:.3f} | {r['conductivity_s_m']:.4g} | {tau} | "
              f"{r['se_diffusivity_rel']:.4f} | {r['ratio_normalised']:.2f} | {100 * r['se_connected_fraction']:.1f} % | "
              f"{r['conductivity_iterations']} | {r['se_iterations']} | {r['wall_s']:.1f} |")
    taus = [r["se_tortuosity"] for r in rows]
    ds = [r["se_diffusivity_rel"] for r in rows]
    sig = [r["conductivity_s_m"] for r in rows]
    ratio = [r["ratio_normalised"] for r in rows]
    deg = [r["degree_pct"] for r in rows]
    finite = [t for t in taus if t is not None]
    print("seed Fig. 4 trends, here:")
    print(f"- SE tortuosity falls with the degree: {all(b < a for a, b in zip(finite, finite[1:]))} "
          f"({', '.join('inf' if t is None else f'{t:.2f}' for t in taus)})")
    print(f"- SE D_eff rises with the degree: {all(b > a for a, b in zip(ds, ds[1:]))} "
          f"({', '.join(f'{d:.4f}' for d in ds)})")
    k = int(np.argmax(sig))
    print(f"- conductivity peaks at {deg[k]:g} % (seed: rises, then falls after about 30 %)")
    k = int(np.argmax(ratio))
    print(f"- conductivity / tortuosity peaks at {deg[k]:g} % (seed: near 40 %)")


def speed(state: Path, spec: CharacteriseSpec, repeats: int = 3) -> None:
    """calib's characterisation alone, then TauFactor's multi-phase SOR on the same slab."""
    import taufactor

    walls, last = [], {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            last = characterise(spec, Path(tmp), log=lambda m: None)
            walls.append(time.perf_counter() - t0)
    c, s = last["conductivity_solver"], last["se_solver"]
    print(f"\n## speed: one characterisation of {state.parent.name} ({last['voxels']} voxels at "
          f"{spec.resolution_um:g} um), median of {repeats}: {float(np.median(walls)):.1f} s "
          f"(goal <= 30 s on 2 cores)")
    print(f"conductivity: {c['iterations']} CG iterations (AMG preconditioner), {c['wall_s']:.1f} s, converged "
          f"{c['converged']}; SE diffusivity: {s['iterations']} TauFactor SOR iterations, {s['wall_s']:.1f} s, "
          f"converged {s['converged']}; pore network {last.get('pore_network', {}).get('wall_s', float('nan')):.1f} s")
    # baseline: TauFactor's own multi-phase solver (lateral faces no-flux) on the analysed slab
    data = read_sphere_data(state)
    types = [str(int(t)) for t in data.types]
    vox = film_voxels(data.positions, data.diameters / 2, np.array([spec.solid_radius_um_of_type[t] for t in types]),
                      [spec.phase_of_type[t] for t in types], data.lo, data.hi, data.lo[2], spec.resolution_um,
                      spec.nanoporosity)
    labels = vox.labels[:, :, :round(last["analysed_thickness_um"] / vox.resolution_um)]
    code = {n: i + 1 for i, n in enumerate(vox.names)}
    img = np.zeros(labels.shape, dtype=np.int64)
    img[labels == code["AM"]] = 1
    img[labels == code["CBD"]] = 2
    solver = taufactor.MultiPhaseSolver(np.ascontiguousarray(np.moveaxis(img, 2, 0)), cond={1: 0.005, 2: 15.93},
                                        device="cpu")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        solver.solve(iter_limit=20_000, verbose=False, conv_crit=1e-2)
    tf_wall = time.perf_counter() - t0
    tf_value = float(np.asarray(solver.D_eff).ravel()[0])
    print(f"baseline TauFactor MultiPhaseSolver (no-flux sides, conv_crit 1e-2, cap 20,000 iterations) on the same "
          f"slab: {tf_value:.4g} S/m after {solver.iter} iterations, {tf_wall:.1f} s, converged {solver.converged}; "
          f"calib's conductivity solve {c['effective']:.4g} S/m in {c['wall_s']:.1f} s: "
          f"{tf_wall / c['wall_s']:.1f} x faster")


def resolution(spec: CharacteriseSpec, finer: float) -> None:
    """The same film at a finer voxel: how much the observables move (their discretisation
    uncertainty)."""
    from dataclasses import replace

    out = {}
    for res in (spec.resolution_um, finer):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out[res] = characterise(replace(spec, resolution_um=res, pore_network=False), Path(tmp), log=lambda m: None)
            out[res]["bench_wall_s"] = time.perf_counter() - t0
    a, b = out[spec.resolution_um], out[finer]
    print(f"\n## resolution: {spec.resolution_um:g} um vs {finer:g} um on the same film")
    for key in ("porosity", "conductivity_s_m", "se_diffusivity_rel", "se_tortuosity"):
        va, vb = a[key], b[key]
        rel = "n/a" if va is None or vb is None or not vb else f"{(va - vb) / vb:+.1%}"
        print(f"- {key}: {va} vs {vb} ({rel} at the coarser voxel)")
    print(f"- SE connected fraction: {a['se_network']['connected_fraction']:.3f} vs "
          f"{b['se_network']['connected_fraction']:.3f}; wall {a['bench_wall_s']:.1f} s vs {b['bench_wall_s']:.1f} s")


def trend_at(folder: Path, rows: list[dict], res: float) -> None:
    """Every degree again at voxel edge ``res`` (no pore network): do the trends survive?"""
    from dataclasses import replace

    out = []
    for k, r in enumerate(rows):
        spec = CharacteriseSpec.from_json((folder / "characterise" / f"characterise_{k:02d}" / SPEC_FILE).read_text())
        with tempfile.TemporaryDirectory() as tmp:
            c = characterise(replace(spec, resolution_um=res, pore_network=False), Path(tmp), log=lambda m: None)
        # the voxel image's values: what the finer grid changes (the networks' have no grid)
        tau = c.get("se_tortuosity_voxel", c["se_tortuosity"])
        out.append({"degree_pct": r["degree_pct"], "porosity": c["porosity"],
                    "conductivity_s_m": c.get("conductivity_voxel_s_m", c["conductivity_s_m"]),
                    "se_tortuosity": tau, "se_diffusivity_rel": c.get("se_diffusivity_voxel_rel", c["se_diffusivity_rel"]),
                    "se_connected_fraction": c["se_network"]["connected_fraction"],
                    "conductivity_iterations": c["conductivity_solver"]["iterations"],
                    "se_iterations": c["se_solver"]["iterations"], "wall_s": c["wall_s"],
                    "ratio": c.get("conductivity_voxel_s_m", c["conductivity_s_m"]) / tau if tau else 0.0})
    top = max(o["ratio"] for o in out)
    for o in out:
        o["ratio_normalised"] = o["ratio"] / top if top else 0.0
    print(f"\n## every degree at {res:g} um")
    validity(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fidelity", default="dev")
    ap.add_argument("--pipeline", type=Path, default=None, help="an existing calib pipeline folder")
    ap.add_argument("--degree", type=float, default=30.0, help="the degree whose film the speed test uses")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--finer", type=float, default=0.25, help="the finer voxel edge of the resolution check (um)")
    ap.add_argument("--trend-at-finer", action="store_true", help="characterise every degree at --finer too")
    args = ap.parse_args()
    folder = args.pipeline
    if folder is None:
        work = Path(tempfile.mkdtemp(prefix="calib_char_"))
        folder = work / "pipeline"
        loaded = load_study(STUDY, fidelity=args.fidelity)
        t0 = time.perf_counter()
        res = run_pipeline(loaded, params_from("table-s1", "sqlite://"), folder, LocalBackend(), locate_lammps(),
                           seed=args.seed, keep_going=True)
        (folder / "pipeline.json").write_text(json.dumps({"degrees": res.degrees,
                                                          "failed_degrees": res.failed_degrees}, default=str))
        print(f"## Table S1 pipeline at {args.fidelity} ({time.perf_counter() - t0:.0f} s), folder {folder}")
    summary = json.loads((folder / "pipeline.json").read_text())
    rows = summary["degrees"]
    print(f"## validity at {args.fidelity}: Table S1, seed {args.seed}")
    for d, why in summary.get("failed_degrees", {}).items():
        print(f"(degree {d} % left out: {why})")
    validity(rows)
    k = [r["degree_pct"] for r in rows].index(args.degree)
    job = folder / "characterise" / f"characterise_{k:02d}"
    spec = CharacteriseSpec.from_json((job / SPEC_FILE).read_text())
    assert (job / RESULT_FILE).is_file()
    speed(Path(spec.state_file), spec)
    resolution(spec, args.finer)
    if args.trend_at_finer:
        trend_at(folder, rows, args.finer)


if __name__ == "__main__":
    main()
