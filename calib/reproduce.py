"""``calib reproduce``: the seed's Table S1 through slurry -> drying -> calendering, side by
side with what the seed reports (Alabdali et al., Sec. 3.2-3.3, Fig. 3).

The seed gives numbers for the slurry density (1.89 g/cm^3 simulated, 1.90 measured), the
dried porosity (about 0.50 with CBD 50 % nanoporous), the dry CBD content (3.4 wt%) and the
bead total (5089); for the thickness change on drying and the calendered porosities it gives
trends only (the film thins; porosity falls with the degree and the pores almost vanish at
50 %), which ``SEED_NOTES`` states and ``trend_checks`` tests.
"""

from __future__ import annotations

from typing import Any

SEED: dict[str, Any] = {
    "slurry_density_g_cm3": 1.89,
    "dried_porosity": 0.50,
    "drying_thickness_change_rel": None,
    "cbd_wt_pct_dried": 3.4,
    "bead_counts": {"AM": None, "SE": None, "CBD": None, "total": 5089},
    "degrees": [],
}
"""The seed's values for the keys of ``reproduction``; None where it gives only a trend."""

SEED_NOTES: dict[str, str] = {
    "slurry_density_g_cm3": "Sec. 3.2: simulated 1.89, measured 1.90",
    "dried_porosity": "Sec. 3.3: about 50 % with the CBD phase counted as 50 % nanoporous",
    "drying_thickness_change_rel": "Sec. 3.3: 'the electrode thickness decreases' (negative; no value)",
    "cbd_wt_pct_dried": "Sec. 3.1: dry formulation 69.0 / 27.6 / 3.4 wt%",
    "bead_counts": "Sec. 3.1: 5089 beads in all (no count per phase)",
    "degrees": "Sec. 3.3, Fig. 3a: porosity falls with the degree; the pores almost vanish at 50 %",
}


def reproduction(summary: dict) -> dict:
    """The report object of ``calib reproduce --json`` from a ``calib pipeline`` summary."""
    sl, dr = summary.get("slurry", {}), summary.get("dried", {})
    counts = dict(summary.get("bead_counts", {}))
    counts["total"] = sum(counts.values())
    degrees = [{"degree_pct": d["degree_pct"], "porosity": d["porosity"], "thickness_um": d["thickness_um"]}
               for d in summary.get("degrees", [])]
    out = {
        "fidelity": summary.get("fidelity"),
        "slurry_density_g_cm3": sl.get("density_g_cm3"),
        "dried_porosity": dr.get("porosity"),
        "drying_thickness_change_rel": dr.get("thickness_change_rel"),
        "cbd_wt_pct_dried": dr.get("cbd_wt_pct"),
        "bead_counts": counts,
        "solids_content": summary.get("solids_content"),
        "degrees": degrees,
        "failed_degrees": dict(summary.get("failed_degrees", {})),
        "converged": {
            "slurry_density_g_cm3": sl.get("density_converged"),
            "drying_thickness_change_rel": None if "lz_converged" not in dr else bool(dr["lz_converged"]),
            "dried_porosity": None if "lz_converged" not in dr else bool(dr["lz_converged"]),
            "degrees": None,
        },
        "seed": SEED,
        "seed_notes": SEED_NOTES,
        "workdir": summary.get("workdir"),
    }
    out["trend_checks"] = trend_checks(out)
    if "failed" in summary:
        out["failed"] = summary["failed"]
    return out


def trend_checks(rep: dict) -> dict[str, bool | None]:
    """The seed's qualitative findings, checked on the reproduction (None: not measured)."""
    por = [d["porosity"] for d in rep["degrees"]]
    change = rep["drying_thickness_change_rel"]
    return {
        "film_thins_on_drying": None if change is None else change < 0,
        "porosity_falls_with_degree": None if len(por) < 2 else all(b < a for a, b in zip(por, por[1:])),
    }


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rep: dict) -> list[str]:
    """The side-by-side markdown table a person reads."""
    conv = rep["converged"]

    def c(key: str) -> str:
        v = conv.get(key)
        return "not tested" if v is None else ("yes" if v else "NO")

    s = rep["seed"]
    rows = [
        "| observable | calib | seed | converged |",
        "|---|---|---|---|",
        f"| slurry density (g/cm^3) | {_fmt(rep['slurry_density_g_cm3'], '.3f')} | {s['slurry_density_g_cm3']} "
        f"| {c('slurry_density_g_cm3')} |",
        f"| dried porosity (CBD 50 % nanoporous) | {_fmt(rep['dried_porosity'], '.3f')} | about {s['dried_porosity']} "
        f"| {c('dried_porosity')} |",
        f"| thickness change on drying | {_fmt(rep['drying_thickness_change_rel'], '+.1%')} | negative (no value) "
        f"| {c('drying_thickness_change_rel')} |",
        f"| CBD after drying (wt%) | {_fmt(rep['cbd_wt_pct_dried'], '.2f')} | {s['cbd_wt_pct_dried']} | exact |",
        "| beads AM / SE / CBD (total) | {AM} / {SE} / {CBD} ({total}) | total 5089 | exact |".format(**rep["bead_counts"]),
    ]
    for d in rep["degrees"]:
        rows.append(f"| porosity at {d['degree_pct']:g} % calendering (thickness {d['thickness_um']:.1f} um) | "
                    f"{d['porosity']:.3f} | falls; about 0 at 50 % | not tested |")
    return rows
