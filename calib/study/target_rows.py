"""The data a study is scored against, as rows: every target it scores with its value,
unit, stated uncertainty and provenance; curves (viscosity, calendering series) one row per
point. MLflow records them as the study's dataset input
(``calib.review.tracking_records.DatasetRecord``); the rows are in the experiment's own units
(SI for the viscosity curve: 1/s and Pa s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calib.study.load import LoadedStudy

COLUMNS = ("objective", "x", "x_unit", "value", "unit", "uncertainty", "provenance_kind", "source")


def target_rows(loaded: "LoadedStudy") -> list[dict]:
    """One row per scored value (see the module docstring); columns ``COLUMNS``."""
    ds = loaded.dataset
    rows: list[dict] = []
    for name in loaded.spec.objective.targets:
        if name in ds.targets:
            t = ds.targets[name]
            rows.append({"objective": name, "x": None, "x_unit": "", "value": t.value, "unit": t.unit,
                         "uncertainty": t.uncertainty, "provenance_kind": t.provenance.kind,
                         "source": t.provenance.source})
        elif name == "viscosity_curve" and loaded.curve is not None:
            c = loaded.curve
            prov = ds.curves.get("viscosity_curve")
            kind = prov.provenance.kind if prov is not None and loaded.curve_source and ": curves." in \
                loaded.curve_source else "measured (rheometer CSV)"
            for i, (rate, eta) in enumerate(zip(c.shear_rate_per_s, c.viscosity_pa_s)):
                rows.append({"objective": name, "x": rate, "x_unit": "1/s", "value": eta, "unit": "Pa s",
                             "uncertainty": c.uncertainty_pa_s[i] if c.uncertainty_pa_s else None,
                             "provenance_kind": kind, "source": loaded.curve_source or ""})
        else:  # a series over calendering degrees (calendered_porosity, _conductivity, _se_tortuosity)
            series = getattr(ds, name, None)
            if series is None:
                continue
            unit = getattr(series, "unit", "1")
            for p in series.points:
                rows.append({"objective": name, "x": p.degree_pct, "x_unit": "%",
                             "value": getattr(p, "porosity", getattr(p, "value", None)), "unit": unit,
                             "uncertainty": p.uncertainty, "provenance_kind": series.provenance.kind,
                             "source": series.provenance.source})
    nan = float("nan")  # numeric columns stay numeric in MLflow's dataset schema
    return [{**r, "x": nan if r["x"] is None else float(r["x"]),
             "uncertainty": nan if r["uncertainty"] is None else float(r["uncertainty"])} for r in rows]
