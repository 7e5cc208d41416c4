"""Render a force-field parameter set as the seed paper's Table S1 (markdown, csv, json, LaTeX, LAMMPS).

Source: seed paper Table S1 (slurry and dried-electrode columns) and MODEL_NOTES.md,
"Force field". LJ keys (eps_X, sigma_X, rc_X) are multipliers of the bead diameter d (um)
of each type of phase X; the resolved value is multiplier x d: eps in pg um^2 us^-2,
sigma and rc in um. kn (pg um^-1 us^-2), gamma_n (um^-1 us^-1) and xu (dimensionless)
are plain values shared by all pairs. kt = 1.378 kn and gamma_t = 0.959 gamma_n [seed].
The LAMMPS format delegates entirely to ``forcefield.pair_lines`` (no re-implemented mixing).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from sim_backends.lammps import forcefield as ff
from sim_backends.lammps.beads import PHASES, BeadSystem
from sim_backends.lammps.forcefield import ForceFieldParams

FORMATS = ("markdown", "csv", "json", "latex", "lammps")

TABLE_S1_ORDER: tuple[str, ...] = (
    "eps_CBD", "sigma_CBD", "rc_CBD",
    "eps_AM", "sigma_AM", "rc_AM",
    "eps_SE", "sigma_SE", "rc_SE",
    "kn", "gamma_n", "xu",
)
"""Row order of Table S1 as printed in the seed."""

UNITS: dict[str, str] = {
    "eps": "pg um^2 us^-2", "sigma": "um", "rc": "um",
    "kn": "pg um^-1 us^-2", "gamma_n": "um^-1 us^-1", "xu": "",
}
"""Units of the resolved values (LAMMPS micro units: pg, um, us)."""


@dataclass(frozen=True)
class ExportContext:
    """How to render: the bead system (per-type phase and stage diameter_um), LJ pair style,
    column title (e.g. "slurry", "dried electrode") and an optional title."""

    system: BeadSystem
    lj_style: str = "lj/cut"
    column: str = "slurry"
    title: str | None = None


@dataclass(frozen=True)
class TableRow:
    """One Table S1 row. ``multiplier`` is the stored value (x d for LJ keys, the value
    itself for kn/gamma_n/xu); ``resolved`` holds (label, value) pairs, one per distinct
    bead diameter of the phase (or one entry for the scalar keys); ``diameters_um`` is
    parallel to ``resolved`` (None for the scalar keys)."""

    key: str
    unit: str
    multiplier: float
    expression: str
    resolved: tuple[tuple[str, float], ...]
    diameters_um: tuple[float | None, ...] = ()


def _short(x: float) -> str:
    """Six significant digits (the tables; csv and json keep full precision)."""
    return f"{x:.6g}"


def _row(key: str, params: ForceFieldParams, system: BeadSystem) -> TableRow:
    """Build one row; LJ keys resolve against every distinct diameter of their phase."""
    value = getattr(params, key)
    quantity, _, phase = key.rpartition("_")
    if phase not in PHASES:
        quantity, phase = key, ""
    if not phase:
        return TableRow(key, UNITS[key], value, _short(value), ((key, value),), (None,))
    diameters: list[float] = []
    for t in system.types_of(phase):
        if t.lj_diameter_um not in diameters:
            diameters.append(t.lj_diameter_um)
    resolved = tuple((f"{phase} d={_short(d)} um", value * d) for d in diameters)
    return TableRow(key, UNITS[quantity], value, f"{_short(value)} x d_{phase}", resolved, tuple(diameters))


def table_rows(params: ForceFieldParams, system: BeadSystem) -> list[TableRow]:
    """Rows of Table S1 (seed order) for ``params`` resolved against ``system``."""
    return [_row(k, params, system) for k in TABLE_S1_ORDER]


def _notes(params: ForceFieldParams, lj_style: str) -> list[str]:
    """Footnotes: sigma_CBD interpretation, tangential ratios, LJ style."""
    return [
        ff.SIGMA_CBD_NOTE,
        f"kt = {ff.KT_OVER_KN} kn = {_short(ff.KT_OVER_KN * params.kn)} pg um^-1 us^-2; "
        f"gamma_t = {ff.GAMMAT_OVER_GAMMAN} gamma_n = {_short(ff.GAMMAT_OVER_GAMMAN * params.gamma_n)} "
        "um^-1 us^-1 [seed].",
        f"LJ pair style: {lj_style}, overlaid with gran/hertz/history (pair_style hybrid/overlay).",
    ]


def _resolved_text(row: TableRow) -> str:
    """``label: value`` entries of a row, joined with '; '."""
    return "; ".join(f"{label}: {_short(v)}" for label, v in row.resolved)


def _markdown(params: ForceFieldParams, ctx: ExportContext) -> str:
    rows = table_rows(params, ctx.system)
    out = [f"**Table S1: {ctx.title}**", ""] if ctx.title else []
    out += [f"| parameter | unit | {ctx.column} (multiplier) | resolved per type |", "|---|---|---|---|"]
    for r in rows:
        mark = " [1]" if r.key == "sigma_CBD" else ""
        out.append(f"| {r.key} | {r.unit} | {r.expression}{mark} | {_resolved_text(r)} |")
    out.append("")
    out += [f"[{i}] {n}" for i, n in enumerate(_notes(params, ctx.lj_style), start=1)]
    return "\n".join(out) + "\n"


def _csv(params: ForceFieldParams, ctx: ExportContext) -> str:
    """One line per (key, resolved entry); a key with no bead type of its phase gets one
    line with empty type/diameter/value so its multiplier is not lost."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "unit", "multiplier", "type", "diameter_um", "resolved_value"])
    for r in table_rows(params, ctx.system):
        if not r.resolved:
            w.writerow([r.key, r.unit, repr(float(r.multiplier)), "", "", ""])
        for (label, v), d in zip(r.resolved, r.diameters_um):
            w.writerow([r.key, r.unit, repr(float(r.multiplier)), label, "" if d is None else repr(d), repr(v)])
    return buf.getvalue()


def _json(params: ForceFieldParams, ctx: ExportContext) -> str:
    rows = table_rows(params, ctx.system)
    doc = {
        "title": ctx.title,
        "column": ctx.column,
        "lj_style": ctx.lj_style,
        "params": {r.key: r.multiplier for r in rows},
        "rows": [
            {"key": r.key, "unit": r.unit, "multiplier": r.multiplier, "expression": r.expression,
             "resolved": [{"label": lab, "diameter_um": d, "value": v}
                          for (lab, v), d in zip(r.resolved, r.diameters_um)]}
            for r in rows
        ],
        "notes": _notes(params, ctx.lj_style),
        "kt": ff.KT_OVER_KN * params.kn,
        "gamma_t": ff.GAMMAT_OVER_GAMMAN * params.gamma_n,
    }
    return json.dumps(doc, indent=2)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    """Escape LaTeX special characters (underscores, carets, ...)."""
    return "".join(_TEX.get(c, c) for c in s)


def _latex(params: ForceFieldParams, ctx: ExportContext) -> str:
    out = [f"% Table S1: {ctx.title}"] if ctx.title else []
    out += [r"\begin{tabular}{llll}", r"\toprule",
            f"parameter & unit & {_tex(ctx.column)} (multiplier) & resolved per type \\\\", r"\midrule"]
    for r in table_rows(params, ctx.system):
        mark = r"$^{1}$" if r.key == "sigma_CBD" else ""
        out.append(f"{_tex(r.key)} & {_tex(r.unit)} & {_tex(r.expression)}{mark} & {_tex(_resolved_text(r))} \\\\")
    out.append(r"\midrule")
    for i, n in enumerate(_notes(params, ctx.lj_style), start=1):
        out.append(f"\\multicolumn{{4}}{{p{{0.9\\linewidth}}}}{{\\footnotesize $^{{{i}}}$ {_tex(n)}}} \\\\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def _lammps(params: ForceFieldParams, ctx: ExportContext) -> str:
    """``#`` comments (title, Table S1 multipliers, sigma_CBD note), then exactly
    ``forcefield.pair_lines(params, system, lj_style)``."""
    head = [f"# {ctx.title}" if ctx.title else "# force field", f"# Table S1 ({ctx.column}) multipliers:"]
    head += [f"#   {k}={repr(float(getattr(params, k)))}" for k in TABLE_S1_ORDER]
    head.append(f"# {ff.SIGMA_CBD_NOTE}")
    return "\n".join(head + ff.pair_lines(params, ctx.system, ctx.lj_style)) + "\n"


_RENDERERS = {"markdown": _markdown, "csv": _csv, "json": _json, "latex": _latex, "lammps": _lammps}


def render(params: ForceFieldParams, ctx: ExportContext, fmt: str) -> str:
    """Render ``params`` as Table S1 in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; allowed formats: {', '.join(FORMATS)}")
    return _RENDERERS[fmt](params, ctx)
