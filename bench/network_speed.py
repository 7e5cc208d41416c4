"""Speed of the contact network (``sim_backends.particle_network``) against its baselines in one
invocation: the same solve with the machine's default BLAS threads (what it did before it
pinned BLAS to one thread) and, with ``--voxel UM``, the voxel conductivity solve
(``transport.effective_conductivity``) of the same packing. Issue 27's goal: 5089 beads in at
most 1 s. Prints times and ratios; asserts nothing.

    .venv/bin/python bench/network_speed.py [--beads 5089] [--repeats 3] [--voxel 0.25]

The packing: an FCC lattice of unit spheres (r = 1 um) at 0.985 of the touching distance
(necks of 0.17 r), jittered by 0.02 um, cut to ``--beads`` beads, each randomly AM (0.005 S/m)
or CBD (15.93 S/m); x and y periodic, electrodes at the lowest and highest centre.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sim_backends import particle_network as pn  # noqa: E402


def packing(n: int, seed: int = 1):
    cells = int(np.ceil((n / 4) ** (1 / 3)))
    a = 2.0 * np.sqrt(2.0) * 0.985  # cubic cell of an FCC of unit spheres at 0.985 x touching
    basis = np.array([(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)])
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = ((grid[:, None, :] + basis[None]) * a).reshape(-1, 3)
    pos = pos[np.lexsort((pos[:, 1], pos[:, 0], pos[:, 2]))][:n]  # whole layers from the bottom
    rng = np.random.default_rng(seed)
    pos = pos + rng.normal(0.0, 0.02, pos.shape)
    sigma = rng.choice([0.005, 15.93], n)
    return pos, np.ones(n), sigma, cells * a


def timed(fn, repeats: int):
    walls, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beads", type=int, default=5089)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--voxel", type=float, help="also time the voxel solve of the packing at this edge (um)")
    args = ap.parse_args()
    pos, r, sig, period = packing(args.beads)
    z0, z1 = float(pos[:, 2].min()), float(pos[:, 2].max())
    pn.network_conductivity(pos[:60], r[:60], sig[:60], (period, period), z0, z0 + 3.0)  # imports, warm caches
    t_net, res = timed(lambda: pn.network_conductivity(pos, r, sig, (period, period), z0, z1), args.repeats)
    t_def, res_def = timed(lambda: pn._network_conductivity(pos, r, sig, (period, period), z0, z1, 0.0, 0.0),
                           args.repeats)
    t_cut, res_cut = timed(lambda: pn.network_conductivity(pos, r, sig, (period, period), z0, z1,
                                                          cut_by_neighbours=True), args.repeats)
    print(f"# {args.beads} beads, {res.necks} necks, {res.conducting_beads} carrying; median of {args.repeats}")
    print(f"network, BLAS on one thread (calib):  {t_net:.2f} s, sigma_eff {res.effective:.6g} S/m "
          f"(goal: at most 1 s)")
    print(f"network, default BLAS threads:        {t_def:.2f} s, sigma_eff {res_def.effective:.6g} S/m "
          f"-> {t_def / t_net:.1f}x the time")
    print(f"network, cut by its neighbours' planes: {t_cut:.2f} s, sigma_eff {res_cut.effective:.6g} S/m")
    if args.voxel:
        from sim_backends.microstructure import Packing, voxelise
        from sim_backends.transport import effective_conductivity

        phases = tuple("CBD" if s > 1 else "AM" for s in sig)
        pk = Packing(pos, r, phases, (0.0, 0.0, z0), (period, period, z1))
        t0 = time.perf_counter()
        vox = voxelise(pk, args.voxel, {"AM": 1.0, "CBD": 1.0}, overlap="power")
        code = {p: i + 1 for i, p in enumerate(vox.names)}
        cond = effective_conductivity(vox.labels, {code["AM"]: 0.005, code["CBD"]: 15.93})
        t_vox = time.perf_counter() - t0
        print(f"voxel solve at {args.voxel:g} um ({vox.labels.size:,} voxels): {t_vox:.1f} s, "
              f"sigma_eff {cond.effective:.6g} S/m -> {t_vox / t_net:.0f}x the network's time")


if __name__ == "__main__":
    main()
