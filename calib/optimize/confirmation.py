"""The transfer confirmation: the study's best set run once more at its target protocol, on
fresh placements, as a trial of the study (``calib optimize --confirm``).

A study calibrates at a fidelity it can afford: for the slurry's seed protocol that is a
compressed run (``Fidelity.compression`` k > 1), whose error against the full protocol
depends on the parameters (docs/model.md, "Compressing a protocol in time"). The
confirmation is the check that the calibrated value holds where the set will be used: the
best set at the target fidelity with ``compression`` (default 1: the full protocol) and
``replicates`` fresh placements (default 2; their spread is the observable's placement
uncertainty). It is recorded as a trial with fidelity ``confirm`` and the attribute
``calib_confirms`` (the number of the trial it confirms); it does not count against the
trial budget, is never the study's best trial (``ledger.at_target``) and the composite
proposer leaves it out of its data (it is not a point of the calibrated objective). Optuna's
own samplers (TPE, GP) would see it as one more observation if the study is extended after
it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from calib.spec.fidelity import Fidelity
from calib.ledger import (CONFIRM_ATTR, CONFIRM_FIDELITY, CONFIRM_SETTINGS_ATTR, FIDELITY_ATTR, OUTSIDE_ATTR, best_trial,
                     lost_numbers)
from calib.stages.slurry_settings import TRANSFERABLE


@dataclass(frozen=True)
class Confirmation:
    """How the best set is confirmed: the protocol compression k (1: the full target
    protocol) and the number of fresh placements."""

    compression: int = 1
    replicates: int = 2
    timeout_s: float | None = None
    """Wall-time limit of each of its runs; None: the study's ``trial_timeout_s`` scaled by
    the runs' length against the study's (``timeout_of``)."""

    def __post_init__(self) -> None:
        if self.compression < 1 or self.replicates < 1:
            raise ValueError(f"confirmation needs compression >= 1 and replicates >= 1, got {self}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"confirmation timeout must be positive, got {self.timeout_s}")

    def timeout_of(self, trial_timeout_s: float | None, target: Fidelity) -> float | None:
        """The limit of the confirmation's runs: ``timeout_s``, else the study's trial limit
        times the target fidelity's compression over the confirmation's (a k = 1 run of a
        k = 200 study runs 200 times as many steps); None when the study has no limit."""
        if self.timeout_s is not None:
            return self.timeout_s
        if trial_timeout_s is None:
            return None
        return trial_timeout_s * max(1.0, target.compression / self.compression)

    def as_attr(self) -> dict[str, Any]:
        return {"compression": self.compression, "replicates": self.replicates, "timeout_s": self.timeout_s}

    def fidelity(self, target: Fidelity) -> Fidelity:
        """The study's target fidelity at this compression and with these replicates (bead
        count and everything else unchanged), without the target's ``transfer`` map: the
        confirmation reports what its own protocol reads."""
        return target.model_copy(update={"compression": self.compression, "replicates": self.replicates,
                                         "transfer": {}})


TOLERANCE_REL = 0.03
"""A confirmed value within this fraction of its target holds at the full protocol (the
goal of the protocol-faithful calibration; about the placement spread of a 200-bead slurry
at k = 1, docs/model.md#confirmation)."""

CONFIRM_SEED_BASE = 2**30
"""Confirmation seeds start here, above every calibration seed (``study_seed * 10_007 +
number + 1 + replicate``) of any practical study."""


def confirm_seed(study_seed: int, number: int) -> int:
    """LAMMPS seed of confirmation trial ``number``: a range no calibration trial uses, 64
    apart per confirmation (room for its replicates), so its placements are fresh."""
    return CONFIRM_SEED_BASE + study_seed * 10_007 + 64 * number


def settings_of(t: FrozenTrial) -> Confirmation:
    """The confirmation settings a confirmation trial was enqueued with."""
    s = t.user_attrs.get(CONFIRM_SETTINGS_ATTR) or {}
    timeout = s.get("timeout_s")
    return Confirmation(int(s.get("compression", 1)), int(s.get("replicates", 2)),
                        float(timeout) if timeout is not None else None)


def same(a: Confirmation, b: Confirmation) -> bool:
    """The same confirmation (compression and replicates; the time limit aside)."""
    return (a.compression, a.replicates) == (b.compression, b.replicates)


def duplicate(study: optuna.Study, t: FrozenTrial | Any) -> bool:
    """Another confirmation of the same trial under the same settings completed or runs
    already (two drivers queued one each): ``t`` is not needed."""
    mine, conf = t.user_attrs.get(CONFIRM_ATTR), settings_of(t)
    return any(o.number != t.number and o.user_attrs.get(CONFIRM_ATTR) == mine and same(settings_of(o), conf)
               and o.state in (TrialState.COMPLETE, TrialState.RUNNING) for o in study.get_trials(deepcopy=False))


def existing(study: optuna.Study, number: int, conf: Confirmation) -> FrozenTrial | None:
    """A confirmation of trial ``number`` under ``conf`` that finished COMPLETE, is waiting
    (enqueued: its attributes are set already) or running, so that a rerun does not repeat
    it; a failed one does not count."""
    for t in study.get_trials(deepcopy=False):
        if (t.user_attrs.get(CONFIRM_ATTR) == number and same(settings_of(t), conf)
                and t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)):
            return t
    return None


def enqueue_attrs(best: FrozenTrial, conf: Confirmation) -> dict[str, Any]:
    attrs = {FIDELITY_ATTR: CONFIRM_FIDELITY, CONFIRM_ATTR: best.number, CONFIRM_SETTINGS_ATTR: conf.as_attr()}
    if best.user_attrs.get(OUTSIDE_ATTR):  # a manual set outside the bounds stays flagged
        attrs[OUTSIDE_ATTR] = best.user_attrs[OUTSIDE_ATTR]
    return attrs


def summary(study: optuna.Study, number: int | None = None) -> dict | None:
    """The latest confirmation of trial ``number`` (default: the study's best trial) next to
    its calibrated values, or None when it has none: per objective, the calibrated and the
    confirmed value, their relative difference, and the confirmation's spread across
    placements; with its trial number, state, protocol, settings and core-seconds."""
    best = best_trial(study) if number is None else study.get_trials(deepcopy=False)[number]
    if best is None:
        return None
    trials = study.get_trials(deepcopy=False)
    lost = lost_numbers(trials)  # interrupted and queued again: not a result
    mine = [t for t in trials if t.user_attrs.get(CONFIRM_ATTR) == best.number and t.number not in lost
            and t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    if not mine:
        return None
    c = mine[-1]
    conf = settings_of(c)
    out: dict[str, Any] = {"trial": c.number, "confirms": best.number, "state": c.state.name,
                           "compression": conf.compression,
                           # what ran: a stage or protocol without replicates runs one placement
                           "replicates": len(c.user_attrs.get("density_replicates_g_cm3") or ()) or 1
                           if c.state == TrialState.COMPLETE else conf.replicates, "core_s": c.user_attrs.get("core_s"),
                           "wall_s": max((c.user_attrs.get("run_wall_s") or {}).values(), default=None),
                           "protocol": c.user_attrs.get("density_protocol"), "objective": c.value,
                           "fail_reason": c.user_attrs.get("fail_reason"), "values": {}}
    calibrated = best.user_attrs.get("errors") or {}
    confirmed = c.user_attrs.get("errors") or {}
    transfer = best.user_attrs.get("density_transfer")  # the rung's density was mapped by this factor
    for name, e in calibrated.items():
        sim = e.get("simulated") if isinstance(e, dict) else None
        got = confirmed.get(name, {}).get("simulated") if isinstance(confirmed.get(name), dict) else None
        if not isinstance(sim, (int, float)):
            continue
        row: dict[str, Any] = {"calibrated": sim, "confirmed": got, "target": e.get("target"), "unit": e.get("unit")}
        factor = float(transfer["factor"]) if name == "slurry_density" and isinstance(transfer, dict) else None
        if factor is not None:
            row.update(transfer_factor=factor, transfer_source=transfer.get("source"), rung=sim / factor)
        if isinstance(got, (int, float)) and sim:
            row["confirmed_vs_calibrated_rel"] = got / sim - 1.0
            rung_k = (best.user_attrs.get("observables") or {}).get("compression") or 1
            if name in TRANSFERABLE and out["compression"] == 1 and rung_k > 1:
                row["measured_transfer_factor"] = got / (sim / (factor or 1.0))  # full protocol / the rung's own
        tgt = e.get("target")
        if isinstance(got, (int, float)) and isinstance(tgt, (int, float)) and tgt:
            row["confirmed_vs_target_rel"] = got / tgt - 1.0
            if out["compression"] == 1:  # a verdict on the full protocol only
                row["holds"] = abs(got / tgt - 1.0) <= TOLERANCE_REL
        out["values"][name] = row
    reps = c.user_attrs.get("density_replicates_g_cm3") or []
    row = out["values"].get("slurry_density")
    if row is not None and len(reps) > 1 and row.get("target"):  # the mean's standard error over placements
        row["confirmed_se_rel"] = statistics.stdev(reps) / math.sqrt(len(reps)) / row["target"]
    paired = c.user_attrs.get("density_paired_rung")
    if row is not None and isinstance(paired, dict):  # the study's rung on the same fresh placements
        row.update(paired_rung_compression=paired["compression"], paired_rung_g_cm3=paired["densities_g_cm3"],
                   paired_factors=paired["factors"], paired_factor_mean=statistics.fmean(paired["factors"]))
    obs = c.user_attrs.get("observables") or {}
    if "density_spread_g_cm3" in obs:
        out["spread_g_cm3"] = obs["density_spread_g_cm3"]
    if c.user_attrs.get("density_replicates_g_cm3"):
        out["replicates_g_cm3"] = c.user_attrs["density_replicates_g_cm3"]
    return out


def lines(s: dict) -> list[str]:
    """The confirmation's lines of the terminal summary."""
    k = f"k = {s['compression']}, " if s.get("protocol") or s["state"] != "COMPLETE" else ""
    head = (f"confirmation (trial {s['trial']}, of trial {s['confirms']}, {k}"
            f"{s['replicates']} fresh placement{'s' if s['replicates'] > 1 else ''}")
    wall = f", {s['wall_s']:.0f} s wall" if isinstance(s.get("wall_s"), (int, float)) else ""
    if s["state"] != "COMPLETE":
        return [head + f"{wall}): FAILED: {s.get('fail_reason') or 'unknown'}"]
    out = [head + f"{wall}):"]
    for name, r in s["values"].items():
        got = r.get("confirmed")
        if not isinstance(got, (int, float)):
            out.append(f"  {name}: no confirmed value")
            continue
        unit = f" {r['unit']}" if r.get("unit") else ""
        se = f" +- {r['confirmed_se_rel']:.1%} (placements)" if "confirmed_se_rel" in r else ""
        vs_t = (f", {r['confirmed_vs_target_rel']:+.1%}{se} vs the target {r['target']:g}"
                if "confirmed_vs_target_rel" in r else "")
        verdict = "" if "holds" not in r else ("; holds" if r["holds"] else f"; does NOT hold (tolerance "
                                                                               f"{TOLERANCE_REL:.0%})")
        out.append(f"  {name}: {got:.4g}{unit} confirmed vs {r['calibrated']:.4g} calibrated "
                   f"({r.get('confirmed_vs_calibrated_rel', float('nan')):+.1%}){vs_t}{verdict}")
        if "transfer_factor" in r:
            out.append(f"    calibrated = the rung's {r['rung']:.4g} x transfer factor {r['transfer_factor']:.4g}")
        if "paired_factors" in r:
            out.append(f"    the same placements at k = {r['paired_rung_compression']}: "
                       + ", ".join(f"{x:.4g}" for x in r["paired_rung_g_cm3"])
                       + f" (k = {s['compression']} over k = {r['paired_rung_compression']}: "
                       + ", ".join(f"{x:.3f}" for x in r["paired_factors"]) + ")")
        if "measured_transfer_factor" in r and not r.get("holds", True):
            out.append(f"    measured factor from the rung to the full protocol at this set: "
                       f"{r['measured_transfer_factor']:.4g}; it holds only near it (it varies across sets of equal "
                       "rung value): a new study may use it with bounds narrowed around this set, as the fidelity's "
                       f"transfer: {{{name}: {{factor: {r['measured_transfer_factor']:.4g}, source: ...}}}}, "
                       "and confirm again (docs/model.md#transfer)")
    if s.get("replicates_g_cm3"):
        out.append("  placements: " + ", ".join(f"{x:.4g}" for x in s["replicates_g_cm3"]) + " g/cm^3"
                   + (f" (sd {s['spread_g_cm3']:.2g})" if isinstance(s.get("spread_g_cm3"), (int, float)) else ""))
    if s.get("protocol"):
        p = s["protocol"]
        out.append(f"  protocol: {p.get('label', p) if isinstance(p, dict) else p}")
    return out


def one_line(s: dict) -> str:
    """The confirmation in one line (an exported file's header)."""
    if s["state"] != "COMPLETE":
        return f"trial {s['trial']} at k = {s['compression']}: FAILED ({s.get('fail_reason') or 'unknown'})"
    parts = [f"{name} {r['confirmed']:.4g} vs {r['calibrated']:.4g} calibrated "
             f"({r.get('confirmed_vs_calibrated_rel', float('nan')):+.1%})"
             for name, r in s["values"].items() if isinstance(r.get("confirmed"), (int, float))]
    return (f"trial {s['trial']} at k = {s['compression']}, {s['replicates']} fresh placement"
            f"{'s' if s['replicates'] > 1 else ''}: " + "; ".join(parts))
