"""The Table S1 model: force-field parameter sets as the seed paper's Table S1, one column
per set (``Table``, ``Column``, ``Observable``) and the resolution of its LJ entries against
each bead type (``resolved``). The renderers (markdown, csv, json, LaTeX, LAMMPS) are
``calib.publish.table_s1_render``.

Source: seed paper Table S1 (a slurry column and a dried-electrode column) and
MODEL_NOTES.md, "Force field". LJ keys (eps_X, sigma_X, rc_X) are multipliers of the bead
diameter d (um) of each type of phase X; the resolved value is multiplier x d: eps in
pg um^2 us^-2, sigma and rc in um. kn (pg um^-1 us^-2), gamma_n (um^-1 us^-1) and xu
(dimensionless) are plain values shared by all pairs. kt = 1.378 kn and
gamma_t = 0.959 gamma_n [seed].

A ``Table`` holds ``Column``s: the stages of one lineage (slurry, dried electrode, ...) or
the candidate sets of one study (``--top K``, ``--pareto``), each with the observables it
was scored on and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim_backends.lammps.beads import PHASES, BeadSystem
from sim_backends.lammps.forcefield import ForceFieldParams

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
class Observable:
    """One scored quantity of a column's trial: its name, unit, simulated value, target and
    relative error (a target comparison), or only ``error`` (a curve's rms error)."""

    name: str
    unit: str = ""
    simulated: float | None = None
    target: float | None = None
    rel_error: float | None = None
    error: float | None = None
    points: tuple[tuple[str, float, float], ...] = ()
    """A curve scored point by point: (where, simulated, measured), e.g. ("30 %", 0.41, 0.4)."""

    def text(self) -> str:
        """``1.9 vs 1.95 (-2.56 %)``; ``0 %: 0.5 vs 0.52; 30 %: 0.41 vs 0.4 (error 0.8)`` for
        a curve scored point by point; ``error 0.12`` for a curve scored as a whole."""
        if self.points:
            pts = "; ".join(f"{w}: {short(a)} vs {short(b)}" for w, a, b in self.points)
            return pts + ("" if self.error is None else f" (error {short(self.error)})")
        if self.simulated is not None and self.target is not None:
            rel = "" if self.rel_error is None else f" ({100 * self.rel_error:+.2f} %)"
            return f"{short(self.simulated)} vs {short(self.target)}{rel}"
        if self.simulated is not None:
            return short(self.simulated)
        return "n/a" if self.error is None else f"error {short(self.error)}"


@dataclass(frozen=True)
class Column:
    """One parameter set: its title (``slurry``, ``dried electrode``, ``trial 7``), the
    Table S1 values, the bead system they act on (per-type phase and diameters), the LJ pair
    style, the stage and trial it came from, its objective value, what it was scored on and
    its provenance (ordered ``(label, text)`` pairs, the include file's header)."""

    title: str
    params: ForceFieldParams
    system: BeadSystem
    lj_style: str = "lj/cut"
    stage: str = ""
    study: str = ""
    trial: int | None = None
    objective: float | None = None
    observables: tuple[Observable, ...] = ()
    provenance: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Table:
    """A Table S1: a title and one or more columns."""

    columns: tuple[Column, ...]
    title: str | None = None
    notes: tuple[str, ...] = field(default=())
    """Extra notes (how the columns were chosen), printed after the standard ones."""


@dataclass(frozen=True)
class Resolved:
    """One resolved LJ entry: key, bead-type label, the diameter d (um) and multiplier x d."""

    key: str
    label: str
    diameter_um: float | None
    value: float


def short(x: float) -> str:
    """Six significant digits (the tables; csv and json keep full precision)."""
    return f"{x:.6g}"


def _phase(key: str) -> str:
    """The phase of an LJ key (``eps_AM`` -> ``AM``), ``""`` for the contact keys."""
    phase = key.rpartition("_")[2]
    return phase if phase in PHASES else ""


def unit_of(key: str) -> str:
    """The unit of a Table S1 key's resolved value."""
    return UNITS[key.rpartition("_")[0]] if _phase(key) else UNITS[key]


def expression(key: str, value: float) -> str:
    """How a Table S1 entry reads: ``0.99 x d_AM`` for LJ keys, the value otherwise."""
    phase = _phase(key)
    return f"{short(value)} x d_{phase}" if phase else short(value)


def resolved(key: str, params: ForceFieldParams, system: BeadSystem) -> list[Resolved]:
    """The entries of ``key`` resolved against every distinct LJ diameter of its phase in
    ``system`` (one entry, the value itself, for the contact keys)."""
    value = getattr(params, key)
    phase = _phase(key)
    if not phase:
        return [Resolved(key, key, None, value)]
    out: list[Resolved] = []
    for t in system.types_of(phase):
        d = t.lj_diameter_um
        if all(r.diameter_um != d for r in out):
            out.append(Resolved(key, f"{phase} d={short(d)} um", d, value * d))
    return out

