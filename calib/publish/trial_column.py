"""A stored trial as a Table S1 column (``calib.publish.table_s1.Column``): its set, the
bead system it acts on, what it was scored on (``observables``) and its provenance.
"""

from __future__ import annotations

import math

from optuna.trial import FrozenTrial

from sim_backends.lammps.forcefield import ForceFieldParams

from calib import ledger
from calib.core.errors import InputError
from calib.publish.provenance import provenance
from calib.publish.source import Source
from calib.publish.table_s1 import Column, Observable
from calib.stages.bead_systems import column_system


def observables(t: FrozenTrial) -> tuple[Observable, ...]:
    """What the trial was scored on (its ``errors`` attribute): simulated vs target and
    relative error for a target; simulated vs measured per calendering degree and the error
    for a degree series; the error alone for a curve scored as a whole."""
    out = []
    for name, e in sorted((t.user_attrs.get("errors") or {}).items()):
        sim, target = e.get("simulated"), e.get("target")
        unit = "" if e.get("unit") in (None, "1") else str(e["unit"])
        if isinstance(sim, (int, float)) and isinstance(target, (int, float)):
            out.append(Observable(name, unit, float(sim), float(target), e.get("rel_error"), e.get("error")))
        elif isinstance(sim, list) and isinstance(e.get("measured"), list) and isinstance(e.get("degree_pct"), list):
            points = tuple((f"{d:g} %", float(a), float(b)) for d, a, b in zip(e["degree_pct"], sim, e["measured"]))
            out.append(Observable(name, unit, error=e.get("error"), points=points))
        else:
            out.append(Observable(name, unit, error=e.get("error")))
    return tuple(out)


def column(src: Source, t: FrozenTrial, title: str, why: str) -> Column:
    """The Table S1 column of trial ``t`` of ``src``."""
    fid = t.user_attrs.get(ledger.FIDELITY_ATTR, src.spec.fidelity)
    try:
        n_beads = src.spec.fidelity_spec(fid).n_beads
    except KeyError:
        n_beads = src.spec.fidelity_spec().n_beads
    system = column_system(src.dataset, n_beads, src.stage.column)
    try:
        params = ForceFieldParams.from_mapping(t.user_attrs["table_s1"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("--study", "table_s1", f"trial {t.number} of study {src.name!r} records no complete Table "
                                                f"S1 set ({exc}): not made by calib?") from exc
    bad = [k for k, v in params.as_dict().items() if not math.isfinite(v)]
    if bad:
        raise InputError("--study", "table_s1", f"trial {t.number} of study {src.name!r} has non-finite "
                                                f"{', '.join(bad)}")
    return Column(title=title, params=params, system=system, lj_style=src.spec.lj_style, stage=src.spec.stage,
                  study=src.name, trial=t.number, objective=t.value, observables=observables(t),
                  provenance=provenance(src, t, why))
