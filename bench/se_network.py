"""The contact network for the SE's D_eff/D_0 against converging voxel solves (issue 27, point 3).

For each film: the stage's analysed slab (the collector to the top cut of its 0.5 um power-rule
image), optionally with the bottom electrode lifted ``--lift`` um above the collector; the
contact network (SE conducting, every other bead insulating, cut by the radical planes of
the beads overlapping it; ``particle_network.network_conductivity``) at each
``--exponents`` (how the cut scales a bead's conductivity: kept volume fraction ^ exponent),
and power-rule voxel solves with the contact rule (faces between beads that do not overlap
pass nothing: ``microstructure.contact_cuts``) at each ``--resolutions``, with the
first-order Richardson extrapolation of the two finest and the network's error against it.

Why the lift: where only a few SE beads touch the collector, through discs a few tenths of
a micrometre wide, those contacts set the film's D_eff and no affordable voxel grid resolves
them (the voxels give each at least a voxel's area), while the network's Holm constriction
is exact for small discs. Lifting the collector 1 um gives every bead crossing it a disc the
grid resolves, so the voxel solves converge and the comparison tests the network's model of
the film's interior. ``--lift 0`` shows the unresolved case.

    .venv/bin/python bench/se_network.py FILM... [--lift 1.0] [--resolutions 0.25 0.177 0.125]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from calib.stages.bead_systems import systems_for  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.characterise import surface_cut  # noqa: E402
from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.microstructure import Packing, contact_cuts, voxelise  # noqa: E402
from sim_backends.particle_network import network_conductivity  # noqa: E402
from sim_backends.transport import fv_relative_diffusivity  # noqa: E402

SOLID = {"CBD": 0.5, "AM": 1.0, "SE": 1.0}  # the stage's solid fractions (CBD 50 % nanoporous)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("films", type=Path, nargs="+")
    ap.add_argument("--lift", type=float, default=1.0, help="bottom electrode this far above the collector (um)")
    ap.add_argument("--resolutions", type=float, nargs="+", default=[0.25, 0.177, 0.125])
    ap.add_argument("--exponents", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--study", type=Path, default=REPO / "studies" / "ssb_pipeline.yaml")
    args = ap.parse_args()
    if len(args.resolutions) < 2:
        ap.error("--resolutions needs at least two grids (the extrapolation uses the two finest)")
    loaded = load_study(args.study, fidelity="dev")
    t_all = time.perf_counter()
    print(f"# SE D_eff/D_0: contact network against voxel solves with the contact rule; bottom electrode "
          f"{args.lift:g} um above the collector")
    print("| film | slab um | SE beads on the bottom electrode (smallest disc um) | "
          + " | ".join(f"voxel {h:g} um" for h in args.resolutions) + " | extrapolated | "
          + " | ".join(f"network ^{e:g}" for e in args.exponents) + " | wall s |")
    print("|---" * (5 + len(args.resolutions) + len(args.exponents)) + "|")
    for film in args.films:
        t0 = time.perf_counter()
        data = read_sphere_data(film)
        _, dried = systems_for(loaded.dataset, len(data.types))
        phase = {t.type_id: t.phase for t in dried.types}
        radius = {t.type_id: t.dry_diameter_um / 2 for t in dried.types}
        ph = tuple(phase[int(t)] for t in data.types)
        r = np.array([radius[int(t)] for t in data.types])
        collector = float(data.lo[2])
        top = float(np.max(data.positions[:, 2] + data.diameters / 2))
        box = (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1])
        whole = Packing(data.positions, r, ph, (data.lo[0], data.lo[1], collector), (data.hi[0], data.hi[1], top))
        image = voxelise(whole, 0.5, SOLID, overlap="power")  # the stage's slab: its top cut on this image
        z1 = collector + surface_cut(image.labels, 0.5) * image.resolution_um
        z0 = collector + args.lift
        sig = np.array([1.0 if p == "SE" else 0.0 for p in ph])
        nets = [network_conductivity(data.positions, r, sig, box, z0, z1, cut_by_neighbours=True,
                                     kept_exponent=e).effective for e in args.exponents]
        dist = np.abs(data.positions[:, 2] - z0)
        on = (sig > 0) & (dist < r)
        discs = np.sqrt(r[on] ** 2 - dist[on] ** 2) if on.any() else np.array([np.nan])
        packing = Packing(data.positions, r, ph, (data.lo[0], data.lo[1], z0), (data.hi[0], data.hi[1], z1))
        values, edges = [], []
        for h in args.resolutions:
            vox = voxelise(packing, h, SOLID, overlap="power", owners=True)
            code = {p: i + 1 for i, p in enumerate(vox.names)}
            res = fv_relative_diffusivity(vox.labels == code["SE"], cuts=contact_cuts(vox, data.positions, r, box))
            values.append(res.effective)
            edges.append(vox.resolution_um)
        (h1, v1), (h2, v2) = (edges[-2], values[-2]), (edges[-1], values[-1])
        extrapolated = v2 + (v2 - v1) * h2 / (h1 - h2)  # first order: v(h) = v0 + c h
        cells = " | ".join(f"{v:.4f}" for v in values)
        nets_s = " | ".join(f"{v:.4f} ({(v / extrapolated - 1) * 100:+.1f} %)" for v in nets)
        name = "/".join(film.parts[-4:-1])
        print(f"| {name} | {z1 - z0:.2f} | {int(on.sum())} ({discs.min():.2f}) | {cells} | {extrapolated:.4f} | "
              f"{nets_s} | {time.perf_counter() - t0:.0f} |", flush=True)
    print(f"\nwall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
