"""The study's model of its observables: what ``calib predict`` answers and ``calib report``
draws its one-dimensional profiles with.

One Gaussian process per output, fitted to the COMPLETE trials at the study's target
fidelity on the proposer's unit cube (``calib.study.space``; a manual trial outside the bounds
lies outside [0, 1]) with the proposer's GP (``calib.optimize.gp_models.gp``: BoTorch's
``SingleTaskGP``, its default kernel and priors, standardised outcomes, inferred noise).
The outputs are what the study is scored on, in the experiment's units:

- each scalar target (``slurry_density`` in g/cm^3, porosities as fractions, ...): the
  simulated value;
- each point of a curve objective: the viscosity at each measured shear rate (modelled as
  log10 Pa s, reported in Pa s), the porosity at each calendering degree;
- the objective itself (modelled as log(objective + 1e-6), as the scalar proposer does).

These are the same quantities the composite proposer models as residuals (an affine map
of them, or of their logs) without its measured-noise floor. The uncertainty is the
posterior standard deviation of the latent function (not of a new noisy run); log-modelled
outputs are reported as the median with its 68 % interval.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from optuna.trial import FrozenTrial

from calib import ledger
from calib.core.errors import InputError
from calib.study.space import ParameterSpace

OBJECTIVE = "objective"
OBJECTIVE_FLOOR = 1e-6


@dataclass(frozen=True)
class Output:
    """One modelled output: its name, unit, target (None: none), whether it is modelled in
    log space (``log10`` for viscosities, ``ln`` with a floor for the objective)."""

    name: str
    unit: str
    target: float | None = None
    log: str | None = None  # None, "log10" or "ln+floor"

    def forward(self, v: float) -> float:
        if self.log == "log10":
            return math.log10(v)
        if self.log == "ln+floor":
            return math.log(v + OBJECTIVE_FLOOR)
        return v

    def back(self, z: float) -> float:
        if self.log == "log10":
            return 10.0 ** z
        if self.log == "ln+floor":
            return max(0.0, math.exp(z) - OBJECTIVE_FLOOR)
        return z


@dataclass(frozen=True)
class Prediction:
    """The model at one point for one output: ``value`` (mean; median for log-modelled
    outputs), ``low`` .. ``high`` (one standard deviation either side, mapped back through
    the log for log-modelled outputs), ``sd`` (posterior standard deviation in the modelled
    scale: units of the output, or of its log)."""

    output: Output
    value: float
    low: float
    high: float
    sd: float


def trial_outputs(t: FrozenTrial) -> dict[str, tuple[Output, float]]:
    """A COMPLETE trial's modelled outputs (see the module docstring) by name."""
    out: dict[str, tuple[Output, float]] = {}
    for name, e in (t.user_attrs.get("errors") or {}).items():
        if not isinstance(e, dict):
            continue
        sim = e.get("simulated")
        if isinstance(sim, (int, float)) and not isinstance(sim, bool):
            out[name] = (Output(name, str(e.get("unit", "")), _num(e.get("target"))), float(sim))
        elif isinstance(sim, list) and isinstance(e.get("degree_pct"), list):  # a porosity curve
            for d, s, m in zip(e["degree_pct"], sim, e.get("measured") or [None] * len(sim)):
                key = f"{name}@{float(d):g}%"
                out[key] = (Output(key, "1", _num(m)), float(s))
        if isinstance(e.get("simulated_pa_s"), list):  # a viscosity curve
            for r, s, m in zip(e.get("shear_rate_per_s") or [], e["simulated_pa_s"], e.get("measured_pa_s") or []):
                key = f"{name}@{float(r):g}/s"
                if s is not None and s > 0:
                    out[key] = (Output(key, "Pa s", _num(m), "log10"), float(s))
    if t.value is not None:
        out[OBJECTIVE] = (Output(OBJECTIVE, "1", 0.0, "ln+floor"), float(t.value))
    return {k: v for k, v in out.items() if math.isfinite(v[1])}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


HELD_OUT = 8
"""``Surrogate.fit(..., calibrate=True)`` predicts each of the study's last ``HELD_OUT``
trials from the trials before it (at least ``HELD_OUT_MIN_FIT`` of them)."""
HELD_OUT_MIN_FIT = 4
HELD_OUT_MIN = 3
"""Fewer held-out predictions than this: no calibration (the intervals are the model's own)."""


@dataclass(frozen=True)
class HeldOut:
    """How the model's intervals did on trials it had not seen, per output: the
    standardised errors z = (value - predicted) / sd of each held-out trial (modelled scale,
    the sd before calibration) and the factor the sd is widened by (``scale``: the root mean
    square of z, at least 1)."""

    z: dict[str, tuple[float, ...]]
    scale: dict[str, float]

    def within(self, name: str, k: float, scaled: bool = False) -> float | None:
        """Fraction of held-out values within +- k sd (after calibration if ``scaled``)."""
        z = self.z.get(name) or ()
        s = self.scale.get(name, 1.0) if scaled else 1.0
        return sum(abs(x) <= k * s for x in z) / len(z) if z else None


def sd_scale(z: Sequence[float]) -> float:
    """The factor held-out standardised errors ``z`` ask the sd to be widened by: their root
    mean square, at least 1 (a model is never made more confident than it says)."""
    return max(1.0, math.sqrt(sum(x * x for x in z) / len(z)))


def held_out_z(done: Sequence[FrozenTrial], space: ParameterSpace, n: int) -> dict[str, float]:
    """Trial ``done[n]`` predicted by the model of ``done[:n]``: its standardised error
    (value - mean) / sd per output, in the modelled scale, before any calibration."""
    m = Surrogate._fit(list(done[:n]), space)
    mean, sd = m.predict_unit(np.array([space.to_unit(done[n].params)]))
    truth = trial_outputs(done[n])
    return {o.name: (o.forward(truth[o.name][1]) - float(mean[0, j])) / float(sd[0, j])
            for j, o in enumerate(m.outputs) if o.name in truth and sd[0, j] > 0}


class Surrogate:
    """GPs of a study's outputs (module docstring); ``fit`` needs at least 2 COMPLETE
    trials at the target fidelity."""

    def __init__(self, space: ParameterSpace, outputs: list[Output], model, x: np.ndarray, n_trials: int,
                 held_out: HeldOut | None = None) -> None:
        self.space, self.outputs, self._model, self.x, self.n_trials = space, outputs, model, x, n_trials
        self.held_out = held_out

    @classmethod
    def fit(cls, study, space: ParameterSpace, calibrate: bool = False) -> "Surrogate":
        """The model of the study's complete trials at its target fidelity. ``calibrate``: also
        predict each of the last ``HELD_OUT`` trials from the trials before it and widen every
        output's sd by the root mean square of those predictions' standardised errors when it
        exceeds 1 (``HeldOut``): a GP fitted to few trials is overconfident about sets unlike
        them (measured: docs/optimizer.md#predict)."""
        done = [t for t in ledger.at_target(study) if all(k in t.params for k in space.keys)]
        if len(done) < 2:
            raise InputError("--study", "study", f"study {study.study_name!r} has {len(done)} complete trial"
                                                 f"{'s' if len(done) != 1 else ''} at its target fidelity; the "
                                                 "model needs at least 2")
        done.sort(key=lambda t: t.number)
        model = cls._fit(done, space)
        if calibrate:
            model.held_out = cls._held_out(done, space)
        return model

    @classmethod
    def _held_out(cls, done: list[FrozenTrial], space: ParameterSpace) -> HeldOut | None:
        first = max(HELD_OUT_MIN_FIT, len(done) - HELD_OUT)
        if len(done) - first < HELD_OUT_MIN:
            return None
        z: dict[str, list[float]] = {}
        for n in range(first, len(done)):
            for name, zn in held_out_z(done, space, n).items():
                z.setdefault(name, []).append(zn)
        zz = {k: tuple(v) for k, v in z.items() if len(v) >= HELD_OUT_MIN}
        return HeldOut(zz, {k: sd_scale(v) for k, v in zz.items()})

    @classmethod
    def _fit(cls, done: list[FrozenTrial], space: ParameterSpace) -> "Surrogate":
        from calib.optimize.gp_models import gp

        per = [trial_outputs(t) for t in done]
        names = [n for n in per[-1] if all(n in p for p in per)]  # outputs every trial has, in the latest order
        outputs = [per[-1][n][0] for n in names]
        x = np.array([space.to_unit(t.params) for t in done])
        y = np.array([[o.forward(p[o.name][1]) for o in outputs] for p in per])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            model = gp(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64), None)
        return cls(space, outputs, model, x, len(done))

    def predict_unit(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (modelled scale) at unit-cube points
        ``u`` (n, d): two (n, outputs) arrays."""
        with torch.no_grad():
            post = self._model.posterior(torch.as_tensor(np.atleast_2d(u), dtype=torch.float64))
            mean = post.mean.detach().numpy()
            sd = post.variance.clamp_min(0.0).sqrt().detach().numpy()
        return mean, sd

    def predict(self, params: Sequence[Mapping[str, float]]) -> list[dict[str, Prediction]]:
        """Predictions at parameter sets (free keys; values in the study's units); the sd
        widened by the held-out calibration when ``fit`` made one."""
        u = np.array([self.space.to_unit(dict(p)) for p in params])
        mean, sd = self.predict_unit(u)
        scale = self.held_out.scale if self.held_out is not None else {}
        out = []
        for i in range(len(u)):
            row = {}
            for j, o in enumerate(self.outputs):
                m, s = float(mean[i, j]), float(sd[i, j]) * scale.get(o.name, 1.0)
                row[o.name] = Prediction(o, o.back(m), o.back(m - s), o.back(m + s), s)
            out.append(row)
        return out


def few_trials(n_keys: int) -> int:
    """Below this many complete trials ``calib predict`` warns that the model is a rough
    guess: 2 per free key, at least 10 (a stated rule, as for the report's importances)."""
    return max(10, 2 * n_keys)


def reliability_lines(model: Surrogate, n_keys: int) -> list[str]:
    """What a user must know before trusting the predictions: too few trials, and how the
    model did on held-out trials (``HeldOut``) or that it could not be checked."""
    out = []
    if model.n_trials < few_trials(n_keys):
        out.append(f"warning: fitted on only {model.n_trials} trials for {n_keys} free keys (fewer than "
                   f"{few_trials(n_keys)}): values are a rough guess and can be several sd off")
    held = model.held_out
    if held is None or not held.z:
        out.append(f"warning: too few trials to check the intervals on held-out trials (needs "
                   f"{HELD_OUT_MIN_FIT + HELD_OUT_MIN}); they are the model's own and likely too narrow")
        return out
    for name, z in held.z.items():
        out.append(f"{name}: the last {len(z)} trials predicted from the ones before each: "
                   f"{held.within(name, 1):.0%} within +-1 sd, {held.within(name, 2):.0%} within +-2 sd"
                   + (f"; sd widened x {held.scale[name]:.2g} to match" if held.scale[name] > 1 else ""))
    return out
