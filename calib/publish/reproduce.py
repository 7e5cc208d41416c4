"""``calib reproduce``: the seed's Table S1 through slurry -> drying -> calendering and the
characterisation of each calendered film, side by side with what the seed reports
(Alabdali et al., Sec. 3.2-3.4, Fig. 3-4).

The seed gives numbers for the slurry density (1.89 g/cm^3 simulated, 1.90 measured), the
dried porosity (about 0.50 with CBD 50 % nanoporous), the dry CBD content (3.4 wt%) and the
bead total (5089); for the thickness change on drying and the calendered porosities it gives
trends only (the film thins; porosity falls with the degree and the pores almost vanish at
50 %; Fig. 4: the SE tortuosity falls and its effective diffusivity rises with the degree,
the electronic conductivity rises and then falls after about 30 %, the ratio of
conductivity to tortuosity peaks near 40 %), which ``SEED_NOTES`` states and
``trend_checks`` tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from calib.stages.errorbars import ERROR_KEYS, UNRESOLVED, distinct_peak, infinite_tau, monotone, plus_minus, rises_then_falls

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
    "degrees": "Sec. 3.3, Fig. 3a: porosity falls with the degree; the pores almost vanish at 50 %. Sec. 3.4, "
               "Fig. 4: SE tortuosity falls and D_eff rises with the degree; conductivity rises, then falls after "
               "about 30 %; conductivity / tortuosity peaks near 40 % (no values read off the figure)",
}


def reproduction(summary: dict) -> dict:
    """The report object of ``calib reproduce --json`` from a ``calib pipeline`` summary."""
    sl, dr = summary.get("slurry", {}), summary.get("dried", {})
    counts = dict(summary.get("bead_counts", {}))
    counts["total"] = sum(counts.values())
    degrees = [{"degree_pct": d["degree_pct"], "porosity": d["porosity"], "thickness_um": d["thickness_um"],
                "relaxed": d.get("relaxed"), **{k: d.get(k) for k in CHARACTERISATION_KEYS if k in d or
                                                not k.endswith("_finite_placements")}}
               for d in summary.get("degrees", [])]
    cal_protocol = next((d.get("protocol") for d in summary.get("degrees", []) if d.get("protocol")), None)
    out = {
        "fidelity": summary.get("fidelity"),
        "slurry_density_g_cm3": sl.get("density_g_cm3"),
        "dried_porosity": dr.get("porosity"),
        "drying_thickness_change_rel": dr.get("thickness_change_rel"),
        "cbd_wt_pct_dried": dr.get("cbd_wt_pct"),
        "bead_counts": counts,
        "solids_content": summary.get("solids_content"),
        "errors": {"slurry_density_g_cm3": sl.get("density_g_cm3_error"), "dried_porosity": dr.get("porosity_error"),
                   "drying_thickness_change_rel": dr.get("thickness_change_rel_error")},
        "placements": sl.get("placements", 1),
        "degrees": degrees,
        "failed_degrees": dict(summary.get("failed_degrees", {})),
        "converged": {
            "slurry_density_g_cm3": sl.get("density_converged"),
            "drying_thickness_change_rel": None if "lz_converged" not in dr else bool(dr["lz_converged"]),
            "dried_porosity": None if "lz_converged" not in dr else bool(dr["lz_converged"]),
            "degrees": None if not degrees or any(d["relaxed"] is None for d in degrees)
            else all(d["relaxed"] for d in degrees),
        },
        "protocols": {
            "slurry_density_g_cm3": sl.get("density_protocol"),
            "dried_porosity": dr.get("protocol"),
            "drying_thickness_change_rel": dr.get("protocol"),
            "degrees": cal_protocol,
        },
        "seed": SEED,
        "seed_notes": SEED_NOTES,
        "workdir": summary.get("workdir"),
    }
    out["trend_checks"] = trend_checks(out)
    if "failed" in summary:
        out["failed"] = summary["failed"]
    return out


CHARACTERISATION_KEYS = ("conductivity_s_m", "se_tortuosity", "se_diffusivity_rel", "se_connected_fraction",
                         "ratio_normalised", "conductivity_converged", "se_converged", "conductivity_method", "se_method",
                         "placements", "se_tortuosity_finite_placements", *(f"{k}_error" for k in ERROR_KEYS))
"""The characterisation columns of each degree (``calib.stages.characterise``)."""


def _points(rep: dict, key: str) -> list[tuple[float, float | None, float | None]]:
    return [(d["degree_pct"], d.get(key), d.get(f"{key}_error")) for d in rep["degrees"]]


def trend_checks(rep: dict) -> dict[str, Any]:
    """The seed's qualitative findings, checked on the reproduction (None: not measured).
    A trend counts only beyond the error bars (``calib.stages.errorbars``): each step of a monotone
    trend larger than the two points' errors, a peak above every other point's bar; False
    when the data contradict it beyond the bars, ``"unresolved"`` when they move within them."""
    change = rep["drying_thickness_change_rel"]
    cond_peak, _ = distinct_peak(_points(rep, "conductivity_s_m"))
    ratio_peak, ratio_distinct = distinct_peak(_points(rep, "ratio_normalised"))
    return {
        "film_thins_on_drying": monotone([(0.0, 0.0, 0.0), (1.0, change, rep.get("errors", {}).get(
            "drying_thickness_change_rel"))], True) if change is not None else None,
        "porosity_falls_with_degree": monotone(_points(rep, "porosity"), True),
        "se_tortuosity_falls_with_degree": monotone(_points(rep, "se_tortuosity"), True),
        "se_diffusivity_rises_with_degree": monotone(_points(rep, "se_diffusivity_rel"), False),
        "conductivity_peak_degree_pct": cond_peak,
        "conductivity_rises_then_falls": rises_then_falls(_points(rep, "conductivity_s_m")),
        "ratio_peak_degree_pct": ratio_peak,
        "ratio_peak_stands_out": None if ratio_peak is None else ratio_distinct,
        "ratio_peaks_at_30_to_50_pct": None if ratio_peak is None else (
            (30.0 <= ratio_peak <= 50.0) if ratio_distinct else UNRESOLVED),
    }


def density_against_seed(slurry_dir: Path, protocol: str | None = None) -> dict[str, Any]:
    """Where the reproduction's slurry density passes the seed's 1.89 g/cm^3 along its run
    (step and fraction of the run; None if it never does) and the plot of its trajectory with
    that point (``density_vs_seed.png`` beside the run). Empty if the run left no trajectory."""
    from sim_backends.lammps.slurry import DENSITY_FILE, density_trajectory

    from calib.core.plots import first_crossing, plot_density_trajectory

    if not (Path(slurry_dir) / DENSITY_FILE).is_file():
        return {}
    steps, rho = density_trajectory(slurry_dir)
    cross = first_crossing(steps, rho, SEED["slurry_density_g_cm3"])
    plot = plot_density_trajectory(Path(slurry_dir) / "density_vs_seed.png", steps, rho, 0, 0,
                                   SEED["slurry_density_g_cm3"], None,
                                   f"Table S1 slurry column, {_short_protocol(protocol, 'slurry')} protocol",
                                   target_label="seed's simulated 1.89 g/cm^3")
    return {"passes_seed_value_at_step": cross,
            "passes_seed_value_at_fraction": None if cross is None else cross / float(steps[-1]),
            "plot": str(plot)}


def _short_protocol(label: str | None, kind: str) -> str:
    """A protocol label cut to what fits a table cell."""
    if not label:
        return "n/a"
    if kind == "slurry":
        m = re.search(r"compressed k = (\d+)", label)
        return f"seed, k = {m.group(1)}" if m else ("seed, k = 1" if label.startswith("seed") else "ramp_hold")
    if kind == "drying":
        m = re.search(r"compressed k = ([\d,]+) under the (\w+) law", label)
        if m:  # the public protocol compressed (drying.protocol: public)
            return f"public, k = {m.group(1)} ({m.group(2)})"
        m = re.search(r"\(([\d,]+)x longer", label)  # the stage's settings in fewer steps
        return f"settings, public / {m.group(1)}" if m else "n/a"
    m = re.search(r"plane at ([\d.e+-]+) um/us", label)
    return f"plane {m.group(1)} um/us" if m else "n/a"


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rep: dict) -> list[str]:
    """The side-by-side markdown table a person reads."""
    conv = rep["converged"]

    def c(key: str) -> str:
        v = conv.get(key)
        return "not tested" if v is None else ("yes" if v else "NO")

    def pm(key: str, fmt: str) -> str:
        return plus_minus(rep[key], rep.get("errors", {}).get(key), fmt)

    s = rep["seed"]
    pr = rep.get("protocols", {})
    p_slurry = _short_protocol(pr.get("slurry_density_g_cm3"), "slurry")
    p_dry = _short_protocol(pr.get("dried_porosity"), "drying")
    p_cal = _short_protocol(pr.get("degrees"), "calendering")
    rows = [
        "| observable | calib | seed | converged | protocol |",
        "|---|---|---|---|---|",
        f"| slurry density (g/cm^3) | {pm('slurry_density_g_cm3', '.3f')} | {s['slurry_density_g_cm3']} "
        f"| {c('slurry_density_g_cm3')} | {p_slurry} |",
        f"| dried porosity (CBD 50 % nanoporous) | {pm('dried_porosity', '.3f')} | about {s['dried_porosity']} "
        f"| {c('dried_porosity')} | {p_dry} |",
        f"| thickness change on drying | {_fmt(rep['drying_thickness_change_rel'], '+.1%')} | negative (no value) "
        f"| {c('drying_thickness_change_rel')} | {p_dry} |",
        f"| CBD after drying (wt%) | {_fmt(rep['cbd_wt_pct_dried'], '.2f')} | {s['cbd_wt_pct_dried']} | exact | - |",
        "| beads AM / SE / CBD (total) | {AM} / {SE} / {CBD} ({total}) | total 5089 | exact | - |".format(
            **rep["bead_counts"]),
    ]
    for d in rep["degrees"]:
        relaxed = "not tested" if d.get("relaxed") is None else ("relaxed" if d["relaxed"] else "NO (still relaxing)")
        rows.append(f"| porosity at {d['degree_pct']:g} % calendering (thickness {d['thickness_um']:.1f} um) | "
                    f"{plus_minus(d['porosity'], d.get('porosity_error'), '.3f')} | falls; about 0 at 50 % | {relaxed} "
                    f"| {p_cal} |")
    for d in rep["degrees"]:
        if d.get("conductivity_s_m") is None:
            continue
        def pm(key: str, fmt: str = ".3g") -> str:
            return plus_minus(d[key], d.get(f"{key}_error"), fmt)

        tau = infinite_tau(d) if d["se_tortuosity"] is None else pm("se_tortuosity")
        rows.append(f"| at {d['degree_pct']:g} %: conductivity (S/m), SE tortuosity, SE D_eff/D_0, ratio "
                    f"(normalised) | {pm('conductivity_s_m')}; {tau}; {pm('se_diffusivity_rel')}; "
                    f"{pm('ratio_normalised', '.2f')} | sigma peaks near 30 %; tau falls, D rises; ratio peaks near 40 % "
                    f"| solvers {'yes' if d['conductivity_converged'] and d['se_converged'] else 'NO'} | {p_cal} |")
    return rows
