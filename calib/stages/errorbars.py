"""Error bars of the characterisation's per-degree values (issue 27, point 5).

Each transport value of a calendered film carries two uncertainties:

- **resolution**: the voxel image's error, estimated per film by the characterisation job
  where the SE is solved on voxels (``se_method: voxel``;
  ``sim_backends.characterise.se_resolution_error``: the SE solve again on a coarser grid);
  the contact networks' values (the conductivity, and the SE by default) have none (no
  voxels; their model errors against converged voxel solves are measured in
  ``bench/overlap_rules.py`` and ``bench/se_network.py``, docs/stages/characterise.md);
- **placement**: the spread of the same parameters run from different random placements
  (``calib pipeline --placements N``): the standard error of the mean over the N films.

The error of the mean is sqrt(placement_se^2 + resolution^2), resolution the mean of the
films' resolution errors (they are not independent across placements: the same grid makes
the same kind of error, so they are not averaged down). With one placement the placement
part is unknown and the error is the resolution error alone, said so (``placements: 1``).

Pure functions; plain unit tests in ``tests/test_errorbars.py``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

ERROR_KEYS: tuple[str, ...] = ("conductivity_s_m", "se_diffusivity_rel", "se_tortuosity", "porosity",
                               "se_connected_fraction", "ratio_normalised")
"""The per-degree values that get error bars (the rows of ``calib.stages.characterise`` and
the calendering's porosity)."""


@dataclass(frozen=True)
class Estimate:
    """A value over placements: the mean, its error (same units), the placement standard
    error (None with one placement), the resolution error (None: not estimated) and the
    number of placements."""

    value: float
    error: float | None
    placement_se: float | None
    resolution: float | None
    n: int


def combine(values: Sequence[float | None], resolution_errors: Sequence[float | None] = ()) -> Estimate | None:
    """The estimate of one quantity from its value on each placement (None: not measured
    there, e.g. an infinite tortuosity) and each film's resolution error. None when no
    placement measured it; a quantity missing on some placements is the mean of the rest."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    n = len(xs)
    se = statistics.stdev(xs) / math.sqrt(n) if n >= 2 else None
    res_known = [float(e) for e in resolution_errors if e is not None and math.isfinite(e)]
    res = statistics.fmean(res_known) if res_known else None
    parts = [p for p in (se, res) if p is not None]
    err = math.sqrt(sum(p * p for p in parts)) if parts else None
    return Estimate(statistics.fmean(xs), err, se, res, n)


def ratio_error(sigma: float, sigma_err: float | None, tau: float | None, tau_err: float | None) -> float | None:
    """Error of sigma / tau from the two relative errors in quadrature (None if either is
    unknown or tau is not finite)."""
    if sigma_err is None or tau_err is None or not tau or not math.isfinite(tau):
        return None
    ratio = sigma / tau
    rel = math.hypot(sigma_err / sigma if sigma else 0.0, tau_err / tau)
    return abs(ratio) * rel


INFINITE_WHEN_NONE: tuple[str, ...] = ("se_tortuosity",)
"""Keys whose None means infinite (the SE does not join the faces): one such placement
makes the mean infinite too, and the row says on how many placements it was finite."""

UNRESOLVED = "unresolved"
"""A trend verdict when the values move within their error bars (neither confirmed nor
contradicted)."""


def combine_degrees(placements: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict]:
    """One row per degree over the placements' per-degree rows (each a list of dicts with
    ``degree_pct``): every key of the first placement's row, numbers replaced by their mean
    over the placements that measured that degree, verdicts (booleans) ``all_of`` them; for each key of ``ERROR_KEYS``,
    ``<key>_error``, ``<key>_placement_se`` and ``<key>_resolution_error``; ``placements``:
    how many films each row averages. The normalised ratio is recomputed from the means and
    its error propagated from those of the conductivity and the tortuosity."""
    by_degree: dict[float, list[Mapping[str, Any]]] = {}
    for rows in placements:
        for row in rows:
            by_degree.setdefault(float(row["degree_pct"]), []).append(row)
    out = []
    for deg in sorted(by_degree):
        rows = by_degree[deg]
        merged = merge_records(rows, ())
        merged["degree_pct"] = deg
        for key in ERROR_KEYS:
            if key in INFINITE_WHEN_NONE and any(key in r and r[key] is None for r in rows):
                merged[key], merged[f"{key}_error"] = None, None
                merged.pop(f"{key}_placement_se", None)
                merged.pop(f"{key}_resolution_error", None)
                merged[f"{key}_finite_placements"] = sum(r.get(key) is not None for r in rows)
                continue
            est = combine([r.get(key) for r in rows], [r.get(f"{key}_resolution_error") for r in rows])
            if est is None:  # not measured (a key no row has stays absent)
                if any(key in r for r in rows):
                    merged[key] = None
                continue
            merged[key] = est.value
            merged[f"{key}_error"] = est.error
            merged[f"{key}_placement_se"] = est.placement_se
            merged[f"{key}_resolution_error"] = est.resolution
        merged["placements"] = len(rows)
        out.append(merged)
    _renormalise(out)
    return out


def is_verdict(key: str) -> bool:
    """A record's pass/fail flag, whatever its type (drying stores ``lz_converged`` as 0/1)."""
    return key.endswith("converged") or key in ("equilibrated", "relaxed", "percolating")


def merge_records(records: Sequence[Mapping[str, Any]], error_keys: Sequence[str]) -> dict:
    """One record from the same record of several placements: every key of the first;
    verdicts (``is_verdict`` or booleans) ``all_of`` them; integers (counts, iterations) the
    largest; other numbers the mean over the placements that have them; for each of
    ``error_keys`` also ``<key>_error``, the standard error of that mean (None with one
    placement); ``placements``: how many records were merged."""
    merged: dict[str, Any] = dict(records[0])
    for key, v in records[0].items():
        vals = [r.get(key) for r in records]
        if isinstance(v, bool) or (is_verdict(key) and isinstance(v, (int, float))):
            merged[key] = all_of([None if x is None else bool(x) for x in vals])
        elif isinstance(v, int):
            merged[key] = max(x for x in vals if isinstance(x, (int, float)))
        elif isinstance(v, float):
            known = [x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
            merged[key] = statistics.fmean(known) if known else v
    for key in error_keys:
        est = combine([r.get(key) for r in records])
        if est is not None:
            merged[key], merged[f"{key}_error"] = est.value, est.error
    merged["placements"] = len(records)
    return merged


def all_of(verdicts: Sequence[bool | None]) -> bool | None:
    """True when every verdict holds, False when one fails, None when one is unknown and none fails."""
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def _renormalise(rows: list[dict]) -> None:
    """conductivity / tortuosity of the means, normalised by its largest, with its error."""
    if not rows or "conductivity_s_m" not in rows[0]:
        return
    ratios = []
    for r in rows:
        tau, sig = r.get("se_tortuosity"), r.get("conductivity_s_m")
        ratio = sig / tau if sig is not None and tau else 0.0
        ratios.append((ratio, ratio_error(sig or 0.0, r.get("conductivity_s_m_error"), tau,
                                          r.get("se_tortuosity_error")) if ratio else None))
    top = max((x for x, _ in ratios), default=0.0)
    for r, (x, e) in zip(rows, ratios):
        r["conductivity_over_tortuosity_s_m"] = x
        r["ratio_normalised"] = x / top if top > 0 else 0.0
        r["ratio_normalised_error"] = None if e is None or top <= 0 else e / top
        r.pop("ratio_normalised_placement_se", None)
        r.pop("ratio_normalised_resolution_error", None)


def distinct_peak(points: Sequence[tuple[float, float | None, float | None]]) -> tuple[float | None, bool]:
    """(degree of the largest value, whether it stands out of the bars): its value minus its
    error exceeds every other degree's value plus its error. Points are (degree, value,
    error); a value None is left out; an unknown error counts as 0."""
    pts = [(d, v, e or 0.0) for d, v, e in points if v is not None]
    if len(pts) < 2:
        return None, False
    d_max, v_max, e_max = max(pts, key=lambda p: p[1])
    return d_max, all(v_max - e_max > v + e for d, v, e in pts if d != d_max)


def rises_then_falls(points: Sequence[tuple[float, float | None, float | None]]) -> bool | str | None:
    """True: the largest value lies strictly inside the degree range and stands out of the
    bars of the first and the last degree (a rise and a fall larger than the errors). False:
    the largest value is at the first or the last degree and stands out of every other bar
    (no fall, or no rise). ``UNRESOLVED``: neither, the values move within their bars. None:
    fewer than three known values."""
    pts = sorted((d, v, e or 0.0) for d, v, e in points if v is not None)
    if len(pts) < 3:
        return None
    d_max, v_max, e_max = max(pts, key=lambda p: p[1])
    (d0, v0, e0), (d1, v1, e1) = pts[0], pts[-1]
    if d0 < d_max < d1 and v_max - e_max > v0 + e0 and v_max - e_max > v1 + e1:
        return True
    peak, distinct = distinct_peak(pts)
    return False if distinct and peak in (d0, d1) else UNRESOLVED


def monotone(points: Sequence[tuple[float, float | None, float | None]], falling: bool) -> bool | str | None:
    """True: every consecutive step falls (or rises) by more than the two points' errors
    together. False: some step goes the other way by more than that. ``UNRESOLVED``:
    neither. None: fewer than two values known, or one missing."""
    pts = sorted(points)
    if len(pts) < 2 or any(v is None for _, v, _ in pts):
        return None
    steps = [((a - b) if falling else (b - a), (ea or 0.0) + (eb or 0.0))
             for (_, a, ea), (_, b, eb) in zip(pts, pts[1:])]
    if all(step > bar for step, bar in steps):
        return True
    if any(-step > bar for step, bar in steps):
        return False
    return UNRESOLVED


def infinite_tau(row: Mapping[str, Any]) -> str:
    """How a row's infinite SE tortuosity reads: on how many placements the SE did not span
    (for the contact network: no path of SE beads in contact joins the collector to the top,
    whatever the voxel image's connected fraction says)."""
    n, k = row.get("placements", 1), row.get("se_tortuosity_finite_placements")
    what = "no SE contact path" if row.get("se_method") == "network" else "SE not connected"
    return f"inf ({what}" + ("" if k is None or n <= 1 else f" in {n - k} of {n} placements") + ")"


def plus_minus(value: float | None, error: float | None, fmt: str = ".3g") -> str:
    """'value +- error' (or the value alone when its error is unknown; 'n/a' for None)."""
    if value is None:
        return "n/a"
    return f"{value:{fmt}}" + ("" if error is None else f" +- {error:{fmt}}")


def describe_errors(placements: int, se_method: str | None = "network",
                    conductivity_method: str | None = "network") -> str:
    """What the printed error bars hold, in one line (``calib pipeline``, ``calib reproduce``):
    the placements' standard error, the voxel SE's resolution error where the SE is solved on
    voxels, and which values are the contact network's (no grid; its model error is measured
    in the bench and not added)."""
    voxel_se = se_method == "voxel"
    if placements > 1:
        text = f"the standard error over {placements} placements" + (
            " with the SE's resolution error in quadrature" if voxel_se else "")
    else:
        text = ("one placement: the spread is not measured (--placements 2 measures it), so "
                + ("the SE's resolution error only" if voxel_se else "no value has an error bar")
                + " and the trends are read without bars")
    nets = [what for what, method in (("conductivity", conductivity_method), ("SE D_eff/D_0 and tortuosity", se_method))
            if method == "network"]
    if nets:
        plural = len(nets) > 1 or " and " in nets[0]
        text += ("; the " + " and the ".join(nets) + (" are" if plural else " is") + " the contact network's (no voxels; "
                 + ("their model errors, measured in the bench, are" if plural
                    else "its model error, measured in the bench, is") + " not added)")
    return text
