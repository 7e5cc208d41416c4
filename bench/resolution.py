"""Resolution study of the characterisation (issue 27, point 1): each film characterised at
several voxel sizes by the stage's own code (``sim_backends.characterise`` with the stage's
settings from ``--study``), each quantity extrapolated to zero voxel size
(``sim_backends.resolution.extrapolate``: Richardson with the observed order, Roache's error
estimate, a verdict). Prints one table per film and the wall time of every characterisation;
asserts nothing.

    .venv/bin/python bench/resolution.py FILM.data [FILM2.data ...] [--resolutions 0.5 0.35 0.25 0.177]
    .venv/bin/python bench/resolution.py --report

Quantities: electronic conductivity (S/m), SE D_eff/D_0 and tau_g, the SE's connected
fraction, porosity, and the median pore and throat diameters of the pore network (um;
``--no-pores`` leaves the network out, it is the slowest part at fine voxels). Every
characterisation is kept in ``--results`` (one JSON line per film and voxel size, keyed by
the film's sha256, the voxel size, the overlap rule and the study's settings), so a study
continues across invocations; ``--report`` prints the tables from the results alone. The
full film is characterised (x and y periodic): a grid over ``--max-gib`` is refused with the
reason and recorded as such.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from results_log import append_result, load_results  # noqa: E402

from calib.stages.film_structure import nanoporosity_of  # noqa: E402
from calib.stages.bead_systems import systems_for  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.characterise import CharacterisationFailed, CharacteriseSpec, characterise  # noqa: E402
from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.resolution import extrapolate  # noqa: E402

RESULTS = REPO / "bench" / "results" / "resolution.jsonl"
QUANTITIES = (
    ("conductivity_s_m", "conductivity (S/m)"),
    ("se_diffusivity_rel", "SE D_eff/D_0"),
    ("se_tortuosity", "SE tau_g"),
    ("se_connected_fraction", "SE connected fraction"),
    ("porosity", "porosity"),
    ("pore_d50_um", "median pore diameter (um)"),
    ("throat_d50_um", "median throat diameter (um)"),
)


def key_of(r: dict) -> tuple:
    return (r["film_sha256"], r["resolution_um"], r["settings"])


def spec_for(study: Path, film: Path, resolution_um: float, pores: bool, max_gib: float,
             overlap: str | None = None) -> CharacteriseSpec:
    """The characterise stage's spec for ``film`` at ``resolution_um`` (``CharacteriseTrial.job_spec``'s
    fields from the study's settings)."""
    loaded = load_study(study, fidelity="dev")
    s = loaded.spec.characterise
    n = len(read_sphere_data(film).types)
    _, dried = systems_for(loaded.dataset, n)
    return CharacteriseSpec(
        state_file=str(film.resolve()), phase_of_type={str(t.type_id): t.phase for t in dried.types},
        solid_radius_um_of_type={str(t.type_id): t.dry_diameter_um / 2.0 for t in dried.types},
        nanoporosity=nanoporosity_of(loaded), resolution_um=resolution_um,
        conductivity_s_m={"AM": s.sigma_am_s_m, "CBD": s.sigma_cbd_s_m},
        surface_solid_fraction_rel=s.surface_solid_fraction_rel, pore_network=pores,
        max_bytes=int(max_gib * 1024**3), label=film.name, iter_limit=s.solver_iter_limit,
        **({} if overlap is None else {"overlap": overlap}))


def settings_of(spec: CharacteriseSpec) -> str:
    """The spec's settings other than the film and the voxel size (part of a result's key)."""
    return (f"{spec.conductivity_s_m} nano {spec.nanoporosity} cut {spec.surface_solid_fraction_rel} "
            f"iter {spec.iter_limit} pores {spec.pore_network}" + ("" if spec.overlap == "rank" else f" overlap {spec.overlap}"))


def measure(spec: CharacteriseSpec, film: Path, sha: str) -> dict:
    res = spec.resolution_um
    rec = {"film": str(film), "film_sha256": sha, "resolution_um": res, "settings": settings_of(spec),
           "measured": time.strftime("%Y-%m-%d")}
    t0 = time.perf_counter()
    try:
        out = characterise(spec, Path(tempfile.mkdtemp(prefix="calib_resolution_")), log=lambda m: None)
    except CharacterisationFailed as exc:
        return {**rec, "error": str(exc), "wall_s": round(time.perf_counter() - t0, 1)}
    pn = out.get("pore_network") or {}
    rec.update({
        "wall_s": round(time.perf_counter() - t0, 1), "voxels": out["voxels"],
        "voxel_um": out["resolution_um"], "analysed_thickness_um": out["analysed_thickness_um"],
        # the voxel solve's conductivity (the study is of the voxel image); the network's beside it
        "conductivity_s_m": out.get("conductivity_voxel_s_m", out["conductivity_s_m"]),
        "conductivity_converged": out["conductivity_solver"]["converged"],
        "conductivity_network_s_m": (out.get("conductivity_network") or {}).get("effective"),
        # the voxel solve's SE likewise (the stage's default SE is the network's, with no grid)
        "se_diffusivity_rel": out.get("se_diffusivity_voxel_rel", out["se_diffusivity_rel"]),
        "se_tortuosity": out.get("se_tortuosity_voxel", out["se_tortuosity"]),
        "se_network_diffusivity_rel": (out.get("se_contact_network") or {}).get("effective"),
        "se_converged": out["se_solver"]["converged"], "se_connected_fraction": out["se_network"]["connected_fraction"],
        "porosity": out["porosity"], "pore_d50_um": pn.get("pore_d50_um"), "throat_d50_um": pn.get("throat_d50_um"),
    })
    return rec


def report(results: dict) -> None:
    films: dict[tuple, list[dict]] = {}
    for r in results.values():
        films.setdefault((r["film_sha256"], r["settings"]), []).append(r)
    for (sha, settings), rows in films.items():
        rows = sorted((r for r in rows if "error" not in r), key=lambda r: -r["resolution_um"])
        if not rows:
            continue
        print(f"\n## {rows[0]['film']} (sha256 {sha[:12]}; {settings})")
        print("| voxel um | voxels | slab um | " + " | ".join(label for _, label in QUANTITIES) +
              " | solvers converged | wall s |")
        print("|---" * (len(QUANTITIES) + 5) + "|")
        for r in rows:
            vals = " | ".join("-" if r.get(q) is None else f"{r[q]:.4g}" for q, _ in QUANTITIES)
            print(f"| {r['voxel_um']:.4g} | {'x'.join(map(str, r['voxels']))} | {r['analysed_thickness_um']:.2f} | "
                  f"{vals} | {r['conductivity_converged'] and r['se_converged']} | {r['wall_s']:.0f} |")
        print("\n| quantity | extrapolated | error | error % | order | verdict |")
        print("|---|---|---|---|---|---|")
        for q, label in QUANTITIES:
            pts = [(r["voxel_um"], r[q]) for r in rows if r.get(q) is not None and math.isfinite(r[q])]
            if len(pts) < 3:
                print(f"| {label} | - | - | - | - | fewer than three voxel sizes |")
                continue
            e = extrapolate([h for h, _ in pts], [v for _, v in pts])
            order = "-" if math.isnan(e.order) else f"{e.order:.2f}"
            rel = f"{100 * e.error_rel:.1f}" if e.error_rel < 10 else "> 1000"
            print(f"| {label} | {e.value:.4g} | {e.error:.2g} | {rel} | {order} | "
                  f"{e.verdict}: {e.reason} |")
        for r in results.values():
            if r["film_sha256"] == sha and r["settings"] == settings and "error" in r:
                print(f"- {r['resolution_um']:g} um: {r['error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("films", type=Path, nargs="*")
    ap.add_argument("--resolutions", type=float, nargs="+", default=[0.5, 0.35, 0.25, 0.177])
    ap.add_argument("--study", type=Path, default=REPO / "studies" / "ssb_pipeline.yaml")
    ap.add_argument("--no-pores", action="store_true", help="leave the pore network out")
    ap.add_argument("--overlap", choices=("rank", "power", "rank-power"),
                    help="who gets a voxel where beads overlap (default: the stage's)")
    ap.add_argument("--max-gib", type=float, default=4.0, help="largest voxel grid (GiB)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--report", action="store_true", help="print the tables from --results, run nothing")
    args = ap.parse_args()
    done = load_results(args.results, key_of)
    if not args.report:
        t0 = time.perf_counter()
        for film in args.films:
            sha = hashlib.sha256(film.read_bytes()).hexdigest()
            for res in sorted(args.resolutions, reverse=True):
                spec = spec_for(args.study, film, res, not args.no_pores, args.max_gib, args.overlap)
                smallest = 2.0 * min(spec.solid_radius_um_of_type.values())
                if smallest / res < 3.0:  # the stage's own limit (CharacteriseSettings)
                    print(f"# {film.name} at {res:g} um: left out, fewer than 3 voxels across the smallest "
                          f"bead ({smallest:g} um)")
                    continue
                if (sha, res, settings_of(spec)) in done:
                    continue
                rec = measure(spec, film, sha)
                append_result(args.results, rec)
                done[key_of(rec)] = rec
                print(f"# {film.name} at {res:g} um: " + (rec.get("error") or
                      f"{rec['conductivity_s_m']:.4g} S/m, tau_g {rec['se_tortuosity']}, {rec['wall_s']:.0f} s"),
                      flush=True)
        print(f"# wall time of this invocation: {time.perf_counter() - t0:.0f} s")
    report(done)


if __name__ == "__main__":
    main()
