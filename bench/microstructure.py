"""Voxelisation speed. Prints figures; asserts nothing.

    .venv/bin/python bench/microstructure.py DATAFILE [--resolution 0.5] [--repeat 3]

Reads an ``atom_style sphere`` data file (for example a dev trial's ``final.data``), treats
type 1 as AM and the last type as CBD (the Li-ion system) or reads ``--phases AM,SE,CBD``,
and times ``voxelise`` + porosity at the given resolution.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.microstructure import Packing, grid_shape, porosity, voxelise  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--resolution", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--phases", default="AM,CBD", help="phase name of type 1, 2, ...")
    args = ap.parse_args()
    d = read_sphere_data(args.data)
    names = args.phases.split(",")
    solid = {"AM": 1.0, "SE": 1.0, "CBD": 0.5}
    packing = Packing(d.positions, d.diameters / 2, tuple(names[t - 1] for t in d.types), d.lo, d.hi)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        vox = voxelise(packing, args.resolution, solid)
        phi = float(porosity(vox, solid))
        times.append(time.perf_counter() - t0)
    shape = grid_shape(packing, args.resolution)
    print(f"{len(d.types)} spheres, box {[round(h - lo, 1) for lo, h in zip(d.lo, d.hi)]} um, "
          f"{args.resolution:g} um voxels: grid {shape} = {shape[0] * shape[1] * shape[2] / 1e6:.1f} M voxels")
    print(f"voxelise + porosity: {statistics.median(times):.3f} s (median of {args.repeat}); porosity {phi:.4f}")


if __name__ == "__main__":
    main()
