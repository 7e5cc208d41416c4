"""The renderers of a Table S1 (``calib.publish.table_s1``): markdown, tidy csv, json,
booktabs LaTeX and the LAMMPS include file (``FORMATS``, ``render``). The LAMMPS rendering is
``lammps_include`` per column, which delegates the pair lines entirely to
``forcefield.pair_lines`` (no re-implemented mixing).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata

from sim_backends.jsonsafe import json_safe
from sim_backends.lammps import forcefield as ff

from calib.publish.table_s1 import (TABLE_S1_ORDER, Column, Observable, Resolved, Table, _phase, expression, resolved,
                                   short, unit_of)

FORMATS = ("markdown", "csv", "json", "latex", "lammps")

SUFFIX = {"markdown": "md", "csv": "csv", "json": "json", "latex": "tex", "lammps": "in"}
"""File suffix of each format (``calib export --out``)."""


def _resolved_rows(table: Table) -> list[tuple[str, str, list[Resolved | None]]]:
    """(key, label, entry per column) over the union of the columns' bead labels."""
    rows = []
    for key in TABLE_S1_ORDER:
        per_col = [{r.label: r for r in resolved(key, c.params, c.system)} for c in table.columns]
        labels: list[str] = []
        for m in per_col:
            labels += [lab for lab in m if lab not in labels]
        rows += [(key, lab, [m.get(lab) for m in per_col]) for lab in labels]
    return rows


def _observable_names(table: Table) -> list[str]:
    names: list[str] = []
    for c in table.columns:
        names += [o.name for o in c.observables if o.name not in names]
    return names


def _observable(c: Column, name: str) -> Observable | None:
    return next((o for o in c.observables if o.name == name), None)


def notes(table: Table) -> list[str]:
    """Footnotes: the sigma_CBD reading, the tangential ratios, the LJ style(s), then the
    table's own notes."""
    styles = sorted({c.lj_style for c in table.columns})
    return [
        "LJ entries (eps, sigma, rc) are multipliers of the bead diameter d of each type; the resolved "
        "values are multiplier x d in LAMMPS micro units.",
        ff.SIGMA_CBD_NOTE,
        f"kt = {ff.KT_OVER_KN} kn and gamma_t = {ff.GAMMAT_OVER_GAMMAN} gamma_n [seed].",
        f"LJ pair style: {', '.join(styles)}, overlaid with gran/hertz/history (pair_style hybrid/overlay); "
        "cross terms: eps_ij = sqrt(eps_i eps_j), sigma_ij and rc_ij arithmetic means.",
        *table.notes,
    ]


# ------------------------------------------------------------------ markdown


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def _markdown(table: Table) -> str:
    cols = table.columns
    out = [f"**Table S1: {table.title}**", ""] if table.title else []
    head = "| parameter | unit | " + " | ".join(_md_cell(c.title) for c in cols) + " |"
    rule = "|---|---|" + "---|" * len(cols)
    out += [head, rule]
    for key in TABLE_S1_ORDER:
        cells = [expression(key, getattr(c.params, key)) for c in cols]
        out.append(f"| {key} | {unit_of(key)} | " + " | ".join(cells) + " |")
    out += ["", "Resolved per bead type (multiplier x d; LAMMPS micro units):", "",
            "| parameter | bead type | unit | " + " | ".join(_md_cell(c.title) for c in cols) + " |",
            "|---|---|---|" + "---|" * len(cols)]
    for key, label, entries in _resolved_rows(table):
        cells = ["-" if e is None else short(e.value) for e in entries]
        out.append(f"| {key} | {label} | {unit_of(key)} | " + " | ".join(cells) + " |")
    names = _observable_names(table)
    if names or any(c.objective is not None for c in cols):
        out += ["", "Scored against the data (simulated vs target, relative error):", "",
                "| observable | unit | " + " | ".join(_md_cell(c.title) for c in cols) + " |",
                "|---|---|" + "---|" * len(cols)]
        for name in names:
            obs = [_observable(c, name) for c in cols]
            unit = next((o.unit for o in obs if o is not None), "")
            out.append(f"| {name} | {unit} | " + " | ".join("-" if o is None else _md_cell(o.text()) for o in obs)
                       + " |")
        out.append("| objective | | " + " | ".join("-" if c.objective is None else short(c.objective)
                                                   for c in cols) + " |")
    out += ["", "Sources:", ""]
    for c in cols:
        out.append(f"- **{_md_cell(c.title)}**")
        out += [f"    - {k}: {_md_cell(v)}" for k, v in c.provenance] or ["    - (no provenance)"]
    out += ["", "Notes:", ""]
    out += [f"{i}. {n}" for i, n in enumerate(notes(table), start=1)]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ csv

CSV_FIELDS = ("column", "stage", "study", "trial", "section", "key", "unit", "bead_type", "diameter_um",
              "value", "target", "rel_error", "error")
"""The csv format is tidy (one value per line): ``section`` is ``multiplier`` (the Table S1
entry), ``resolved`` (multiplier x d for one bead type), ``observable`` (simulated value,
target, relative error and the objective's error term; a degree series one line per degree
and one for its error) or ``objective``."""


def _csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for c in table.columns:
        base = {"column": c.title, "stage": c.stage, "study": c.study, "trial": "" if c.trial is None else c.trial}
        for key in TABLE_S1_ORDER:
            w.writerow({**base, "section": "multiplier", "key": key, "value": repr(float(getattr(c.params, key)))})
        for key in TABLE_S1_ORDER:
            for r in resolved(key, c.params, c.system):
                w.writerow({**base, "section": "resolved", "key": key, "unit": unit_of(key), "bead_type": r.label,
                            "diameter_um": "" if r.diameter_um is None else repr(r.diameter_um),
                            "value": repr(r.value)})
        for o in c.observables:
            for where, sim, measured in o.points:
                w.writerow({**base, "section": "observable", "key": f"{o.name} at {where}", "unit": o.unit,
                            "value": repr(sim), "target": repr(measured)})
            w.writerow({**base, "section": "observable", "key": o.name, "unit": o.unit,
                        "value": "" if o.simulated is None else repr(o.simulated),
                        "target": "" if o.target is None else repr(o.target),
                        "rel_error": "" if o.rel_error is None else repr(o.rel_error),
                        "error": "" if o.error is None else repr(o.error)})
        if c.objective is not None:
            w.writerow({**base, "section": "objective", "key": "objective", "value": repr(c.objective)})
    return buf.getvalue()


# ------------------------------------------------------------------ json


def provenance_dict(pairs) -> dict:
    """A column's provenance pairs as a JSON object; a label given several times (``caveat``)
    becomes a list of its texts, in order."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = [v] if k == "caveat" else v
    return out


def _json(table: Table) -> str:
    doc = {
        "title": table.title,
        "columns": [{
            "title": c.title, "stage": c.stage, "study": c.study, "trial": c.trial, "lj_style": c.lj_style,
            "params": c.params.as_dict(),
            "resolved": [{"key": r.key, "unit": unit_of(r.key), "bead_type": r.label, "diameter_um": r.diameter_um,
                          "value": r.value} for key in TABLE_S1_ORDER for r in resolved(key, c.params, c.system)],
            "kt": ff.KT_OVER_KN * c.params.kn,
            "gamma_t": ff.GAMMAT_OVER_GAMMAN * c.params.gamma_n,
            "objective": c.objective,
            "observables": [{"name": o.name, "unit": o.unit, "simulated": o.simulated, "target": o.target,
                             "rel_error": o.rel_error, "error": o.error,
                             "points": [{"at": w, "simulated": a, "target": b} for w, a, b in o.points]}
                            for o in c.observables],
            "provenance": provenance_dict(c.provenance),
        } for c in table.columns],
        "notes": notes(table),
    }
    return json.dumps(json_safe(doc), indent=2, allow_nan=False)


# ------------------------------------------------------------------ LaTeX

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(s: str) -> str:
    """Escape LaTeX special characters (underscores, carets, ...); characters outside ASCII
    (a path or study name in a title) become their ASCII form, or ``?``, so that any
    pdflatex compiles the table."""
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = s.encode("ascii", "replace").decode("ascii")
    out = "".join(_TEX.get(c, c) for c in s.replace("->", "\x00"))
    return out.replace("\x00", r"$\rightarrow$").replace("<", r"\textless{}").replace(">", r"\textgreater{}")


_TEX_SYMBOL = {"eps": r"$\varepsilon_\mathrm{%s}$", "sigma": r"$\sigma_\mathrm{%s}$", "rc": r"$r_{c,\mathrm{%s}}$"}
_TEX_CONTACT = {"kn": r"$k_n$", "gamma_n": r"$\gamma_n$", "xu": r"$\mu$ (xu)"}


def tex_unit(unit: str) -> str:
    """``pg um^2 us^-2`` -> ``pg\\,$\\mu$m$^{2}$\\,$\\mu$s$^{-2}$``."""
    parts = []
    for word in unit.split():
        base, _, power = word.partition("^")
        base = {"um": r"$\mu$m", "us": r"$\mu$s"}.get(base, tex(base))
        parts.append(base + (f"$^{{{power}}}$" if power else ""))
    return r"\,".join(parts)


def _tex_key(key: str) -> str:
    phase = _phase(key)
    return _TEX_SYMBOL[key.rpartition("_")[0]] % phase if phase else _TEX_CONTACT[key]


def _tex_number(x: float) -> str:
    """A number for a table cell: ``1.2\\times10^{-3}`` style in math mode for large/small."""
    s = short(x)
    m = re.fullmatch(r"(-?[\d.]+)e([+-])0*(\d+)", s)
    if m:
        sign = "-" if m.group(2) == "-" else ""
        return f"${m.group(1)}\\times10^{{{sign}{m.group(3)}}}$"
    return s


def _latex(table: Table) -> str:
    """A ``table`` float holding a ``booktabs`` tabular (needs ``\\usepackage{booktabs}``)."""
    cols = table.columns
    n = 2 + len(cols)
    caption = "Calibrated force-field parameters (Table S1)" + (f": {table.title}" if table.title else "")
    out = [r"% Table S1 written by calib export; needs \usepackage{booktabs}",
           r"\begin{table}", r"\centering", f"\\caption{{{tex(caption)}}}", r"\label{tab:table-s1}",
           r"\begin{tabular}{ll" + "r" * len(cols) + "}", r"\toprule",
           "Parameter & Unit & " + " & ".join(tex(c.title) for c in cols) + r" \\", r"\midrule"]
    for key in TABLE_S1_ORDER:
        unit = r"$\times d$" if _phase(key) else tex_unit(unit_of(key))
        cells = [_tex_number(getattr(c.params, key)) for c in cols]
        out.append(f"{_tex_key(key)} & {unit} & " + " & ".join(cells) + r" \\")
    names = _observable_names(table)
    if names or any(c.objective is not None for c in cols):
        out += [r"\midrule", f"\\multicolumn{{{n}}}{{l}}{{\\emph{{Scored against the data (simulated vs target)}}}} \\\\"]
        for name in names:
            obs = [_observable(c, name) for c in cols]
            unit = next((o.unit for o in obs if o is not None), "")
            out.append(f"{tex(name)} & {tex_unit(unit)} & "
                       + " & ".join("--" if o is None else tex(o.text()) for o in obs) + r" \\")
        out.append("objective & & " + " & ".join("--" if c.objective is None else _tex_number(c.objective)
                                                 for c in cols) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "", r"\smallskip", r"{\footnotesize\raggedright"]
    out += [f"{i}. {tex(x)}\\par" for i, x in enumerate(notes(table), start=1)]
    out += [f"{tex(c.title)}: study {tex(c.study)}, trial {c.trial}.\\par" for c in cols if c.study]
    out += ["}", r"\end{table}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ LAMMPS


def lammps_include(c: Column) -> str:
    """A LAMMPS include file for column ``c``: a ``#`` header with its provenance and
    Table S1 multipliers, then ``comm_modify vel yes`` (the granular law needs ghost
    velocities), ``forcefield.pair_lines`` (every type pair, mixing applied, LJ overlaid
    with the Hertzian law) and one ``set type`` diameter and mass per bead type. Use it
    after ``read_data`` of an ``atom_style sphere``, ``units micro`` system with the same
    atom types."""
    head = [f"# calib force field: Table S1, {c.title} column",
            *(f"# {k}: {v}" for k, v in c.provenance),
            "# Table S1 values (LJ entries are multipliers of each type's diameter d):",
            *(f"#   {k} = {getattr(c.params, k)!r}" for k in TABLE_S1_ORDER),
            f"# {ff.SIGMA_CBD_NOTE}",
            f"# Use after read_data of a units micro, atom_style sphere system with {len(c.system.types)} atom types "
            "(pg, um, us).",
            "# calib's own decks also set newton off (before read_data) and neigh_modify delay 0 every 1 check yes.",
            "", "comm_modify vel yes"]
    body = ff.pair_lines(c.params, c.system, c.lj_style)
    beads = [""]
    for t in c.system.types:
        beads += [f"# type {t.type_id}: {t.phase}, {short(t.diameter_um)} um ({short(t.dry_diameter_um)} um dry), "
                  f"{short(t.mass_pg)} pg per bead",
                  f"set type {t.type_id} diameter {t.diameter_um!r}",
                  f"set type {t.type_id} mass {t.mass_pg!r}"]
    return "\n".join(head + body + beads) + "\n"


def _lammps(table: Table) -> str:
    """The include file of a one-column table (one LAMMPS input takes one force field;
    ``calib export --out`` writes one file per column)."""
    if len(table.columns) != 1:
        raise ValueError(f"the lammps format holds one column; this table has {len(table.columns)}")
    return lammps_include(table.columns[0])


_RENDERERS = {"markdown": _markdown, "csv": _csv, "json": _json, "latex": _latex, "lammps": _lammps}


def render(table: Table, fmt: str) -> str:
    """Render ``table`` in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; allowed formats: {', '.join(FORMATS)}")
    if not table.columns:
        raise ValueError("a Table S1 needs at least one column")
    for c in table.columns:
        bad = [k for k, v in c.params.as_dict().items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"column {c.title!r}: {', '.join(bad)} not finite")
    return _RENDERERS[fmt](table)
