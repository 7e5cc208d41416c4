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


class Surrogate:
    """GPs of a study's outputs (module docstring); ``fit`` needs at least 2 COMPLETE
    trials at the target fidelity."""

    def __init__(self, space: ParameterSpace, outputs: list[Output], model, x: np.ndarray, n_trials: int) -> None:
        self.space, self.outputs, self._model, self.x, self.n_trials = space, outputs, model, x, n_trials

    @classmethod
    def fit(cls, study, space: ParameterSpace) -> "Surrogate":
        from calib.optimize.gp_models import gp

        done = [t for t in ledger.at_target(study) if all(k in t.params for k in space.keys)]
        if len(done) < 2:
            raise InputError("--study", "study", f"study {study.study_name!r} has {len(done)} complete trial"
                                                 f"{'s' if len(done) != 1 else ''} at its target fidelity; the "
                                                 "model needs at least 2")
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
        """Predictions at parameter sets (free keys; values in the study's units)."""
        u = np.array([self.space.to_unit(dict(p)) for p in params])
        mean, sd = self.predict_unit(u)
        out = []
        for i in range(len(u)):
            row = {}
            for j, o in enumerate(self.outputs):
                m, s = float(mean[i, j]), float(sd[i, j])
                row[o.name] = Prediction(o, o.back(m), o.back(m - s), o.back(m + s), s)
            out.append(row)
        return out
