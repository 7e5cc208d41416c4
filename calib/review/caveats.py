"""What a calibrated value does not say by itself: the caveats every output that shows one
carries (the terminal summary, ``--json``, ``calib report``, the MLflow parent run, the
exported Table S1's header), in one wording.

- **holds for**: the fidelity and protocol it was calibrated at. The slurry density is the
  value of a protocol (docs/model.md#slurry-protocol), run compressed k-fold; another
  protocol or fidelity gives another density.
- **confirmed**: whether the best set was run again at the full protocol (``calib optimize
  --confirm``) and whether its value held there.
- **at a bound**: free keys of the best set within ``BOUND_FRACTION`` of a bound of their
  range (in the key's own scale, log or linear): the optimum may lie outside the range.
- **convergence**: the stage's verdict on the best trial's observables.
- **proposals**: how many trials the model proposed; when none did, the best set is a point
  of the initial design, not a model's answer.

``study_caveats`` reads them from the ledger only (trial attributes and the study's stored
spec), so every output builds the same caveats from the same study.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from calib import ledger
from calib.optimize.confirmation import summary as confirmation_summary

BOUND_FRACTION = 0.01
"""A value within this fraction of its range from a bound is "at the bound" (unit scale:
log10 of the value for a log-scaled key)."""
MODEL_SAMPLERS = ("composite", "scalar", "gp", "tpe", "cmaes", "swarm")
"""Samplers whose later proposals depend on the trials before them (a model or a population)."""


@dataclass(frozen=True)
class AtBound:
    """A free key of the best set at a bound of its range."""

    key: str
    value: float
    side: str
    """``lower`` or ``upper``; ``below`` or ``above`` for a manual value outside the range
    (``calib refine --allow-outside-bounds``)."""
    bound: float

    def text(self) -> str:
        if self.side in ("below", "above"):
            return f"{self.key} = {self.value:.4g} (outside the range: {self.side} its bound {self.bound:g})"
        return f"{self.key} = {self.value:.4g} (its {self.side} bound {self.bound:g})"


@dataclass(frozen=True)
class Caveats:
    """The caveats of a study's best set (see the module docstring)."""

    fidelity: str | None
    protocol: str | None
    """The best trial's protocol in words, as its stage recorded it (None when its stage records none)."""
    compression: int | None
    """The protocol compression k of the best trial (None for stages without one)."""
    confirmed: str
    """``holds``, ``does not hold``, ``failed``, ``not confirmed``, ``full protocol`` (k = 1:
    nothing to confirm) or ``not applicable`` (a stage without a compressed protocol)."""
    confirmation_trial: int | None
    at_bound: tuple[AtBound, ...]
    converged: bool | None
    convergence: str | None
    trials_complete: int
    model_proposals: int
    sampler: str | None
    n_initial: int | None
    proposals: dict[str, int] = field(default_factory=dict)
    """Complete trials by how they were proposed: ``initial design``, ``model``, ``manual``,
    ``other`` (re-proposed, fallback, a sampler without a model)."""
    stage: str | None = None
    lines: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        d = asdict(self)
        d["at_bound"] = [asdict(b) for b in self.at_bound]
        d["lines"] = list(self.lines)
        return d


def at_bounds(t: FrozenTrial, fraction: float = BOUND_FRACTION) -> tuple[AtBound, ...]:
    """The free keys of ``t`` within ``fraction`` of their range from a bound (its
    distributions give the ranges; log-scaled keys are judged in log10)."""
    out = []
    for key, dist in t.distributions.items():
        if not isinstance(dist, (FloatDistribution, IntDistribution)) or key not in t.params:
            continue
        lo, hi, x = float(dist.low), float(dist.high), float(t.params[key])
        if not hi > lo:
            continue
        scale = (lambda v: math.log10(v)) if dist.log else (lambda v: v)
        u = (scale(x) - scale(lo)) / (scale(hi) - scale(lo)) if x > 0 or not dist.log else -1.0
        if x < lo:
            out.append(AtBound(key, x, "below", lo))
        elif x > hi:
            out.append(AtBound(key, x, "above", hi))
        elif u <= fraction:
            out.append(AtBound(key, x, "lower", lo))
        elif u >= 1.0 - fraction:
            out.append(AtBound(key, x, "upper", hi))
    return tuple(out)


def _spec(study: optuna.Study) -> dict:
    """The study's stored spec (``ledger.STUDY_FILE_ATTR``; {} when it has none)."""
    try:
        spec = json.loads(study.user_attrs.get(ledger.STUDY_FILE_ATTR) or "{}")
    except (TypeError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _optimizer(spec: dict) -> tuple[str | None, int | None]:
    """(sampler, n_initial) of a stored spec (the study file's defaults where it names none;
    None without a spec)."""
    if not spec:
        return None, None
    opt = spec.get("optimizer") or {}
    return opt.get("sampler", "composite"), opt.get("n_initial", 6)


def _convergence(best: FrozenTrial) -> tuple[bool | None, str | None]:
    """The stage's verdict on ``best``: its ``equilibrated`` flag and its ``*_convergence`` notes."""
    notes = [str(v) for k, v in sorted(best.user_attrs.items()) if k.endswith("_convergence") and v]
    eq = best.user_attrs.get("equilibrated")
    return (eq if isinstance(eq, bool) else None), ("; ".join(notes) or None)


def _confirmed(study: optuna.Study, best: FrozenTrial, k: int | None) -> tuple[str, int | None]:
    s = confirmation_summary(study, best.number)
    if s is not None:
        if s["state"] != "COMPLETE":
            return "failed", s["trial"]
        holds = [r["holds"] for r in s["values"].values() if "holds" in r]
        if not holds:  # confirmed at k > 1: no verdict on the full protocol
            return "not confirmed", s["trial"]
        return ("holds" if all(holds) else "does not hold"), s["trial"]
    if k is None:
        return "not applicable", None
    return ("full protocol" if k == 1 else "not confirmed"), None


def study_caveats(study: optuna.Study) -> Caveats | None:
    """The caveats of the study's best trial (None when it has none)."""
    best = ledger.best_trial(study)
    return None if best is None else trial_caveats(study, best)


def trial_caveats(study: optuna.Study, best: FrozenTrial) -> Caveats:
    """The caveats of trial ``best`` of ``study`` (an exported trial need not be the best)."""
    trials = [t for t in study.get_trials(deepcopy=False) if not ledger.is_confirmation(t)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    spec = _spec(study)
    sampler, n_initial = _optimizer(spec)
    kinds = [ledger.proposal_kind(t.user_attrs, t.number, sampler or "composite", n_initial or 0) for t in complete]
    model = sum(1 for k in kinds if k == "model") if sampler in MODEL_SAMPLERS else 0
    proposals: dict[str, int] = {}
    for k in kinds:
        family = next((f for f in ("initial design", "model", "manual") if k.startswith(f)), "other")
        proposals[family] = proposals.get(family, 0) + 1
    kk = (best.user_attrs.get("observables") or {}).get("compression")
    k = int(kk) if isinstance(kk, (int, float)) else None
    confirmed, ctrial = _confirmed(study, best, k)
    conv, note = _convergence(best)
    fid = best.user_attrs.get(ledger.FIDELITY_ATTR) or study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR)
    c = Caveats(fidelity=fid, protocol=best.user_attrs.get("density_protocol"), compression=k, confirmed=confirmed,
                confirmation_trial=ctrial, at_bound=at_bounds(best), converged=conv, convergence=note,
                trials_complete=len(complete), model_proposals=model, sampler=sampler, n_initial=n_initial,
                proposals=proposals, stage=spec.get("stage"))
    return Caveats(**{**c.__dict__, "lines": tuple(caveat_lines(c))})


CONFIRMED_WORDS = {
    "holds": "yes, it holds at the full protocol (confirmation trial {t})",
    "does not hold": "NO: it does not hold at the full protocol (confirmation trial {t})",
    "failed": "the confirmation run failed (trial {t})",
    "not confirmed": "no: calibrated at k = {k}, whose error against the full protocol depends on the set; "
                     "rerun with --confirm to run it at k = 1 (hours)",
    "full protocol": "not needed: calibrated at the full protocol (k = 1)",
}


def caveat_lines(c: Caveats) -> list[str]:
    """The caveats in words, one line each (the wording every output uses)."""
    where = f"fidelity {c.fidelity}" if c.fidelity else "the study's fidelity"
    if c.compression is not None:
        where += f" (protocol compressed k = {c.compression})"
    out = [f"holds only at: {where}; another protocol or fidelity gives other values"
           + (" (docs/model.md#slurry-protocol)" if c.protocol else "")]
    if c.confirmed != "not applicable":
        out.append("confirmed at the full protocol: " + CONFIRMED_WORDS[c.confirmed].format(t=c.confirmation_trial,
                                                                                             k=c.compression))
    if c.at_bound:
        out.append("at a bound: " + ", ".join(b.text() for b in c.at_bound)
                   + ": the optimum may lie outside the range; widen it in the study's parameters.free")
    else:
        out.append("at a bound: none")
    if c.converged is not None or c.convergence:
        verdict = "converged" if c.converged else "NOT converged"
        out.append(f"convergence: {c.convergence}" if c.convergence and c.converged
                   else f"convergence: {verdict}" + (f": {c.convergence}" if c.convergence and not c.converged else ""))
    if c.sampler in MODEL_SAMPLERS:
        if c.model_proposals == 0 and c.proposals.get("initial design", c.trials_complete) == c.trials_complete:
            out.append(f"proposals: all {c.trials_complete} complete trials came from the initial design "
                       f"(optimizer.n_initial = {c.n_initial}): the model never proposed a set; run more trials")
        elif c.model_proposals == 0:
            out.append(f"proposals: the model never proposed a set (complete trials: {_kinds(c)}); run more trials")
        else:
            out.append(f"proposals: {c.model_proposals} of {c.trials_complete} complete trials proposed by the "
                       f"{c.sampler} model" + (f" ({_kinds(c)})" if len(c.proposals) > 1 else ""))
    if c.stage == "characterise":
        out.append("transport: the conductivity, diffusivity and tortuosity depend on the voxel size and the contact "
                   "rule they were computed with (docs/stages/characterise.md#resolution-caveat)")
    return out


def _kinds(c: Caveats) -> str:
    return ", ".join(f"{n} {k}" for k, n in c.proposals.items())
