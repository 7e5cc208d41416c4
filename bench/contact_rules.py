"""How the contact rule moves the stage's network values (issue 27): for every calendered film of
a ``calib pipeline`` or ``calib reproduce`` folder (each ``placement_*/characterise``), the SE's
D_eff/D_0 and the electronic conductivity of the contact networks on the stage's analysed slab,
under each rule ``GAP:REL`` (beads, and a bead and an electrode plane, within GAP um join by a
neck of REL x the smaller radius; ``0:0``, the default, joins only what overlaps).

Why it matters: the beads' simulation spheres are 2 % larger than their solid ones, so beads in
Hertzian contact with each other or with the collector can have solid spheres a few tens of nm
apart; under the default rule they do not join.

    .venv/bin/python bench/contact_rules.py bench/out/series27b/reproduce/dev-... [--rules 0:0 0.125:0.05 0.25:0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim_backends.characterise import ION_KEPT_EXPONENT, RESULT_FILE, SPEC_FILE, CharacteriseSpec  # noqa: E402
from sim_backends.lammps.placement import read_sphere_data  # noqa: E402
from sim_backends.particle_network import network_conductivity  # noqa: E402


def rule(text: str) -> tuple[float, float]:
    gap, rel = (float(x) for x in text.split(":"))
    return gap, rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a pipeline or reproduce run folder (with placement_*/characterise)")
    ap.add_argument("--rules", type=rule, nargs="+", default=[(0.0, 0.0), (0.125, 0.05), (0.25, 0.1)],
                    metavar="GAP:REL")
    args = ap.parse_args()
    jobs = sorted(args.folder.glob("placement_*/characterise/characterise_*/" + SPEC_FILE))
    if not jobs:
        ap.error(f"{args.folder}: no placement_*/characterise/characterise_*/{SPEC_FILE}")
    names = [f"{g:g}:{q:g}" for g, q in args.rules]
    print(f"# {args.folder}: the networks under each contact rule GAP:REL (um : x the smaller radius)")
    print("| placement | degree | " + " | ".join(f"SE D_eff/D_0 {n}" for n in names) + " | "
          + " | ".join(f"conductivity S/m {n}" for n in names) + " |")
    print("|---|---|" + "---|" * (2 * len(names)))
    t0 = time.perf_counter()
    for spec_path in jobs:
        spec = CharacteriseSpec.from_json(spec_path.read_text())
        result = json.loads((spec_path.parent / RESULT_FILE).read_text())
        data = read_sphere_data(Path(spec.state_file))
        types = [str(int(t)) for t in data.types]
        phases = [spec.phase_of_type[t] for t in types]
        r = np.array([spec.solid_radius_um_of_type[t] for t in types])
        z0 = float(data.lo[2])
        z1 = z0 + result["analysed_thickness_um"]
        box = (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1])
        ion = np.array([1.0 if p == spec.ion_phase else 0.0 for p in phases])
        el = np.array([spec.conductivity_s_m.get(p, 0.0) for p in phases])
        se = [network_conductivity(data.positions, r, ion, box, z0, z1, touch_gap_um=g, touch_radius_rel=q,
                                   cut_by_neighbours=True, kept_exponent=ION_KEPT_EXPONENT).effective
              for g, q in args.rules]
        sigma = [network_conductivity(data.positions, r, el, box, z0, z1, touch_gap_um=g, touch_radius_rel=q,
                                      cut_by_neighbours=True).effective for g, q in args.rules]
        placement = spec_path.parents[2].name.removeprefix("placement_")
        print(f"| {placement} | {spec.label} | " + " | ".join(f"{v:.4f}" for v in se) + " | "
              + " | ".join(f"{v:.3g}" for v in sigma) + " |", flush=True)
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
