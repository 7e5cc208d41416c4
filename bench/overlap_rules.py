"""Overlap rules of the voxel image against the contact network, on one film: the electronic
conductivity at several voxel sizes under the phase-rank rule (the characterise stage's) and
the radical-plane rule (``voxelise(..., overlap="power")``), each with and without the SE
beads, and the rank rule with ties by the radical plane (``rank-power``), next to ``particle_network.network_conductivity`` on the same slab (the stage's
top-surface cut at the first resolution). Prints a table with wall times; asserts nothing.

    .venv/bin/python bench/overlap_rules.py FILM.data [--resolutions 0.5 0.25 0.125] [--touch 0.125:0.05 0.25:0.1]

FILM.data: a calendered or dried state (LAMMPS data file of the dried column's types), e.g.
``bench/out/electrode_protocols/dev_s1/calender_from_*/v0.02_dt0.0001_d30/calender_00/final.data``.
Phases and solid radii come from ``studies/ssb_pipeline.yaml``'s dataset, as in the stage;
the conductivities are the seed's (AM 0.005, CBD 15.93 S/m; SE insulating), the stage's
defaults. docs/stages/characterise.md#overlaps. ``--se``: the SE's D_eff/D_0 from the
contact network against power-rule voxel solves (docs/stages/characterise.md#se-transport).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.stages.bead_systems import systems_for  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.characterise import ION_KEPT_EXPONENT, surface_cut  # noqa: E402
from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.microstructure import Packing, contact_cuts, voxelise  # noqa: E402
from sim_backends.particle_network import network_conductivity  # noqa: E402
from sim_backends.transport import effective_conductivity, fv_relative_diffusivity  # noqa: E402

CONDUCTIVITY_S_M = {"AM": 0.005, "CBD": 15.93}
RANK = {"CBD": 0.5, "AM": 1.0, "SE": 1.0}  # the stage's solid fractions (CBD 50 % nanoporous)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("film", type=Path)
    ap.add_argument("--resolutions", type=float, nargs="+", default=[0.5, 0.25])
    ap.add_argument("--study", type=Path, default=REPO / "studies" / "ssb_pipeline.yaml")
    ap.add_argument("--rules", nargs="+", default=["rank/kept", "rank/dropped", "power/kept", "power/dropped",
                                                   "rank-power/kept"],
                    help="voxel rules to run, as RULE/SE (SE: kept or dropped)")
    ap.add_argument("--touch", nargs="*", default=[], metavar="GAP:REL",
                    type=lambda t: tuple(float(x) for x in t.split(":")),
                    help="network contact rules for beads that touch without overlapping: within GAP um, "
                         "a neck of REL x the smaller radius (e.g. 0.125:0.05 0.25:0.1)")
    ap.add_argument("--se", action="store_true",
                    help="the SE's D_eff/D_0 instead: power-rule voxel solves (sigma 1 in the SE) at each resolution "
                         "against the contact network with the SE conducting")
    ap.add_argument("--se-alone", action="store_true",
                    help="with --se: the SE beads alone (AM and CBD left out), to split the SE-SE contacts' share of "
                         "a difference from the cuts' share")
    args = ap.parse_args()
    loaded = load_study(args.study, fidelity="dev")
    data = read_sphere_data(args.film)
    _, dried = systems_for(loaded.dataset, len(data.types))
    phase = {t.type_id: t.phase for t in dried.types}
    radius = {t.type_id: t.dry_diameter_um / 2 for t in dried.types}
    ph = [phase[int(t)] for t in data.types]
    r = np.array([radius[int(t)] for t in data.types])
    sig = np.array([CONDUCTIVITY_S_M.get(p, 0.0) for p in ph])
    collector = float(data.lo[2])
    top = float(np.max(data.positions[:, 2] + data.diameters / 2))
    full = Packing(data.positions, r, tuple(ph), (data.lo[0], data.lo[1], collector), (data.hi[0], data.hi[1], top))
    keep = np.array([p != "SE" for p in ph])
    no_se = Packing(data.positions[keep], r[keep], tuple(p for p in ph if p != "SE"), full.lo, full.hi)
    if args.se:
        slab = surface_cut(voxelise(full, 0.5, RANK).labels, 0.5) * 0.5  # the stage's slab, whole film
        if args.se_alone:
            alone = np.array([p == "SE" for p in ph])
            full = Packing(data.positions[alone], r[alone], ("SE",) * int(alone.sum()), full.lo, full.hi)
        se_against_network(args, data, full, full.radii, list(full.phases), collector, slab)
        return
    slab_um = None
    print(f"# {args.film}: {len(r)} beads; conductivity S/m, voxel fractions of the analysed slab")
    print("| rule | SE beads | voxel um | slab um | conductivity S/m | CG converged | SE | CBD | AM | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for res in args.resolutions:
        n = surface_cut(voxelise(full, res, RANK).labels, 0.5)  # the stage's slab at this resolution
        for rule, se in (x.split("/") for x in args.rules):
            pk = full if se == "kept" else no_se
            t0 = time.perf_counter()
            vox = voxelise(pk, res, RANK, overlap=rule)
            lab = vox.labels[:, :, :n]
            code = {p: i + 1 for i, p in enumerate(vox.names)}
            c = effective_conductivity(lab, {code[p]: s for p, s in CONDUCTIVITY_S_M.items() if p in code})
            fr = {p: (f"{np.mean(lab == code[p]):.3f}" if p in code else "-") for p in ("SE", "CBD", "AM")}
            slab = n * vox.resolution_um
            slab_um = slab_um or slab
            print(f"| {rule} | {se} | {res:g} | {slab:.2f} | {c.effective:.4g} | {c.converged} | {fr['SE']} | "
                  f"{fr['CBD']} | {fr['AM']} | {time.perf_counter() - t0:.0f} |", flush=True)
    print(f"\ncontact network on the {slab_um:.2f} um slab:")
    for gap, rel, cut in [(0.0, 0.0, False), (0.0, 0.0, True), *((g, q, False) for g, q in args.touch)]:
        t0 = time.perf_counter()
        try:
            net = network_conductivity(data.positions, r, sig, (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1]),
                                       collector, collector + slab_um, touch_gap_um=gap, touch_radius_rel=rel,
                                       cut_by_neighbours=cut)
        except ValueError as exc:
            print(f"- contact rule gap {gap:g} um, radius {rel:g} r: {exc}")
            continue
        rule = "overlapping beads only" if gap == 0 else f"beads within {gap:g} um join by a neck of {rel:g} r"
        rule += ", cut by their neighbours (the power rule's geometry, SE included)" if cut else ", SE ignored"
        print(f"- {rule}: {net.effective:.4g} S/m, {net.necks} necks, {net.conducting_beads} of {net.beads} beads "
              f"carrying, {time.perf_counter() - t0:.1f} s")


def se_against_network(args, data, full: Packing, r: np.ndarray, ph: list[str], collector: float,
                       slab: float) -> None:
    """SE D_eff/D_0 on the stage's slab (``slab`` um above the collector): the contact network
    (SE conducting, cut by its neighbours) and power-rule voxel solves at each resolution, with
    every face open and with the contact rule (``contact_cuts``)."""
    sig = np.array([1.0 if p == "SE" else 0.0 for p in ph])
    t0 = time.perf_counter()
    net = network_conductivity(full.centres, r, sig, (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1]),
                               collector, collector + slab, cut_by_neighbours=True, kept_exponent=ION_KEPT_EXPONENT)
    print(f"# {args.film}: SE D_eff/D_0 on the {slab:.2f} um slab")
    print(f"- contact network, SE conducting (the stage's, kept^{ION_KEPT_EXPONENT:g}): {net.effective:.5g} ({net.necks} necks, {net.conducting_beads} of "
          f"{net.beads} beads carrying, {time.perf_counter() - t0:.1f} s)")
    print("| voxel um | slab um | SE D_eff/D_0, every face | with the contact rule | CG converged | SE fraction "
          "| wall s |")
    print("|---|---|---|---|---|---|---|")
    box = (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1])
    for res in args.resolutions:
        t0 = time.perf_counter()
        vox = voxelise(full, res, RANK, overlap="power", owners=True)
        k = int(round(slab / vox.resolution_um))
        code = {p: i + 1 for i, p in enumerate(vox.names)}
        se = vox.labels[:, :, :k] == code["SE"]
        c = fv_relative_diffusivity(se)
        cuts = tuple(x[:, :, :k] for x in contact_cuts(vox, full.centres, full.radii, box))
        c_cut = fv_relative_diffusivity(se, cuts=cuts)
        print(f"| {res:g} | {k * vox.resolution_um:.2f} | {c.effective:.5g} | {c_cut.effective:.5g} | "
              f"{c.converged and c_cut.converged} | {np.mean(se):.4f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
