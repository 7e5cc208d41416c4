"""What a calibration leaves uncertain: the posterior of the free keys given the targets.

    p(theta | targets)  ~  prior(theta) x prod_j N(y_j; mu_j(theta), s_j(theta)^2 + n_j^2 + u_j^2)

- prior: uniform over the study's bounds (a log key uniform in its log), i.e. uniform on the
  proposer's unit cube (``calib.study.space``);
- mu_j, s_j: the study's Gaussian process of each targeted output (``calib.optimize.surrogate``, the
  model ``calib predict`` and ``calib report`` use: one GP per observable on the COMPLETE
  trials at the study's target fidelity; viscosities in log10 Pa s), its mean and the
  standard deviation of its latent function;
- n_j: the GP's learned noise, the scatter of a fresh run at the same parameters (at 200
  beads mostly the bead placement);
- y_j, u_j: the target and its 1-sigma uncertainty from the dataset; where the dataset gives
  none (the seed's density and porosity), ``assumed_rel_uncertainty`` x |target|
  (``PosteriorSpec``), which the output names.

It is sampled with emcee's affine-invariant ensemble sampler (Goodman and Weare, CAMCoS 5
(2010) 65; Foreman-Mackey et al., PASP 125 (2013) 306) on the unit cube. From the samples:
each key's median and equal-tailed 90 % interval (in the study's units) and how much the data narrowed
it (posterior sd over the prior's), and the principal directions of the samples' covariance
(log keys in their log) with how much each was narrowed: a direction the data leave near
its prior width is a ridge the targets cannot separate (one density cannot separate eps from
sigma). The posterior is that of the *model*: it is only as good as the GP where the study
did not look, and it says nothing about the protocol or fidelity it was calibrated at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from calib.study.space import ParameterSpace
from calib.optimize.surrogate import OBJECTIVE, Surrogate

LEVEL = 0.90
"""The credible level of the per-key intervals."""
INTERVALS = ("central", "hdi")
"""``central``: equal-tailed, the default. ``hdi``: the shortest interval holding ``LEVEL`` of
the draws (unit cube, log keys in their log), which reaches a bound where the draws pile up
against it. On the twin of ``bench/posterior.py`` (both from the same draws, 2026-12-07) the
two cover 43 and 44 of 50 hidden values, but all five keys at once in 7 and 5 of 10 seeds:
no reason to change the default (docs/optimizer.md#posterior). ``hdi`` is computed here
rather than with ArviZ's: five lines, without a dependency of its size."""
RIDGE_SHRINK = 0.5
"""A direction whose posterior sd is above this fraction of its prior sd counts as one the
data do not separate."""
PRIOR_SD = 1.0 / math.sqrt(12.0)
"""The sd of a uniform prior on [0, 1]."""
WALKERS = 32
BURN_STEPS = 500


@dataclass(frozen=True)
class KeyInterval:
    """One free key's posterior: median and the ``LEVEL`` interval in the study's units;
    ``shrink``: posterior sd over prior sd on the unit cube (1: the data say nothing)."""

    key: str
    median: float
    low: float
    high: float
    shrink: float


@dataclass(frozen=True)
class Direction:
    """A principal direction of the posterior on the unit cube (log keys in their log):
    ``weights`` (key -> component, unit length), ``shrink``: posterior sd along it over the
    prior's."""

    weights: dict[str, float]
    shrink: float

    def label(self, cut: float = 0.25) -> str:
        """``+0.71 eps_SE -0.70 sigma_SE``: the components above ``cut``, largest first."""
        parts = sorted(((v, k) for k, v in self.weights.items() if abs(v) >= cut), key=lambda p: -abs(p[0]))
        sign = 1.0 if parts and parts[0][0] > 0 else -1.0  # first component positive
        return " ".join(f"{sign * v:+.2f} {k}" for v, k in parts)


@dataclass(frozen=True)
class TargetUse:
    """How one target entered the likelihood: its value and 1-sigma uncertainty (modelled
    scale: the output's unit, or log10 for viscosities) and where the uncertainty came from."""

    name: str
    target: float
    sd: float
    source: str  # "dataset" or "assumed"


@dataclass(frozen=True)
class Posterior:
    """The posterior of a study's free keys (module docstring)."""

    intervals: tuple[KeyInterval, ...]
    directions: tuple[Direction, ...]
    targets: tuple[TargetUse, ...]
    n_trials: int
    n_samples: int
    acceptance: float
    level: float = LEVEL
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)
    """(n_samples, d) unit-cube samples (not serialised)."""
    interval: str = "central"
    """How the per-key intervals are cut (``INTERVALS``)."""

    @property
    def ridges(self) -> tuple[Direction, ...]:
        """Directions the data leave wider than ``RIDGE_SHRINK`` of the prior."""
        return tuple(d for d in self.directions if d.shrink > RIDGE_SHRINK)

    def as_dict(self) -> dict:
        return {
            "level": self.level, "interval": self.interval, "n_trials": self.n_trials, "n_samples": self.n_samples,
            "acceptance": self.acceptance,
            "intervals": {i.key: {"median": i.median, "low": i.low, "high": i.high, "shrink": i.shrink}
                          for i in self.intervals},
            "directions": [{"weights": d.weights, "shrink": d.shrink, "label": d.label()} for d in self.directions],
            "ridges": [d.label() for d in self.ridges],
            "targets": {t.name: {"target": t.target, "sd": t.sd, "source": t.source} for t in self.targets},
            "lines": self.lines(),
            "model": "GP of each targeted output (calib.optimize.surrogate) at the target fidelity, its noise, "
                     "uniform prior on the bounds; emcee",
        }

    def lines(self) -> list[str]:
        """The terminal/report text: one line per key, then the ridges."""
        pct = round(100 * self.level)
        kind = "highest-density" if self.interval == "hdi" else "equal-tailed"
        out = [f"posterior of the free keys ({pct} % {kind} intervals, from the model of {self.n_trials} trials; "
               f"targets: " + ", ".join(f"{t.name} {t.target:.4g} +- {t.sd:.2g}"
                                       f"{' (assumed)' if t.source == 'assumed' else ''}" for t in self.targets) + ")"]
        for i in self.intervals:
            out.append(f"  {i.key}: {i.median:.4g} [{i.low:.4g} .. {i.high:.4g}]  "
                       f"(sd {100 * i.shrink:.0f} % of the prior's)")
        n = len(self.directions)
        ridges = sorted(self.ridges, key=lambda d: -d.shrink)  # the least separated first
        shown = "; ".join(d.label() for d in ridges[:3]) + (f"; {len(ridges) - 3} more" if len(ridges) > 3 else "")
        out.append(f"  the targets pin {n - len(ridges)} of {n} directions where the trials ran (sd under "
                   f"{100 * RIDGE_SHRINK:.0f} % of the prior's; unexplored regions cannot count); not separated by "
                   f"the data: {shown or 'none'}")
        return out


def target_uses(surrogate: Surrogate, dataset_targets: dict, assumed_rel: float) -> list[tuple[int, TargetUse]]:
    """(output column, ``TargetUse``) of every modelled output that has a target (not the
    objective): the dataset's uncertainty where it gives one, else ``assumed_rel`` x
    |target| (log10 outputs: ``assumed_rel`` / ln 10)."""
    out = []
    for j, o in enumerate(surrogate.outputs):
        if o.name == OBJECTIVE or o.target is None:
            continue
        given = getattr(dataset_targets.get(o.name), "uncertainty", None)
        if o.log == "log10":
            z = math.log10(o.target)
            sd = (given / (o.target * math.log(10))) if given else assumed_rel / math.log(10)
            out.append((j, TargetUse(o.name, z, sd, "dataset" if given else "assumed")))
        else:
            sd = float(given) if given else assumed_rel * abs(o.target)
            out.append((j, TargetUse(o.name, o.target, sd, "dataset" if given else "assumed")))
    return out


def _log_likelihood(surrogate: Surrogate, cols: list[int], y: np.ndarray, sd: np.ndarray):
    """log p(targets | u) for unit-cube points u (n, d), with the GP's latent variance and
    learned noise added to the targets' variance; -inf outside the cube."""
    import torch

    model = surrogate._model

    def f(u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        inside = np.all((u >= 0) & (u <= 1), axis=1)
        out = np.full(len(u), -np.inf)
        if inside.any():
            with torch.no_grad():
                post = model.posterior(torch.as_tensor(u[inside], dtype=torch.float64), observation_noise=True)
                mean = post.mean.numpy()[:, cols]
                var = post.variance.clamp_min(0.0).numpy()[:, cols] + sd ** 2
            out[inside] = -0.5 * np.sum((mean - y) ** 2 / var + np.log(2 * np.pi * var), axis=1)
        return out

    return f


def sample_posterior(surrogate: Surrogate, dataset_targets: dict, samples: int, seed: int,
                     assumed_rel_uncertainty: float) -> Posterior:
    """The posterior (module docstring) from ``samples`` draws (after ``BURN_STEPS`` steps of
    ``WALKERS`` walkers started at the trials with the highest likelihood). ``ValueError``
    when no output has a target."""
    import emcee

    from calib.optimize.acquisition import proposing

    uses = target_uses(surrogate, dataset_targets, assumed_rel_uncertainty)
    if not uses:
        raise ValueError("no modelled output has a target")
    cols = [j for j, _ in uses]
    y = np.array([t.target for _, t in uses])
    sd = np.array([t.sd for _, t in uses])
    logp = _log_likelihood(surrogate, cols, y, sd)
    space: ParameterSpace = surrogate.space
    d = space.dim
    rng = np.random.default_rng(seed)
    with proposing(seed):  # seeded, one thread (the cores belong to LAMMPS), BoTorch's warnings quiet
        # start: a small ball around the trials the model likes best (inside the cube)
        x = np.clip(surrogate.x, 0.0, 1.0)
        best = x[np.argsort(-logp(x))[:WALKERS]]
        start = np.clip(best[rng.integers(len(best), size=WALKERS)] + 0.01 * rng.normal(size=(WALKERS, d)),
                        1e-6, 1 - 1e-6)
        sampler = emcee.EnsembleSampler(WALKERS, d, logp, vectorize=True)
        sampler.random_state = np.random.RandomState(seed).get_state()  # emcee's documented seeding
        steps = BURN_STEPS + max(1, math.ceil(samples / WALKERS))
        sampler.run_mcmc(start, steps, progress=False)
        chain = sampler.get_chain(discard=BURN_STEPS, flat=True)[-samples:]
        acceptance = float(np.mean(sampler.acceptance_fraction))
    return summarise(space, chain, [t for _, t in uses], len(surrogate.x), acceptance)


def hdi(x: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The shortest interval holding ``level`` of the draws ``x`` (1-d)."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    m = min(n, max(1, math.ceil(level * n)))
    widths = x[m - 1:] - x[: n - m + 1]
    j = int(np.argmin(widths))
    return float(x[j]), float(x[j + m - 1])


def summarise(space: ParameterSpace, chain: np.ndarray, targets: list[TargetUse], n_trials: int,
              acceptance: float, level: float = LEVEL, interval: str = "central") -> Posterior:
    """Intervals (``INTERVALS``) and directions of unit-cube samples ``chain`` (n, d)."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}")
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    intervals = []
    for i, key in enumerate(space.keys):
        med = float(np.median(chain[:, i]))
        lo, hi = hdi(chain[:, i], level) if interval == "hdi" else tuple(np.quantile(chain[:, i], [lo_q, hi_q]))
        phys = [space.from_unit(_at(space.dim, i, q))[key] for q in (lo, med, hi)]
        intervals.append(KeyInterval(key, phys[1], phys[0], phys[2], float(np.std(chain[:, i]) / PRIOR_SD)))
    cov = np.atleast_2d(np.cov(chain.T)) if len(chain) > 1 else np.zeros((space.dim, space.dim))
    val, vec = np.linalg.eigh(cov)
    directions = []
    for k in np.argsort(val):  # best pinned first
        v = vec[:, k]
        directions.append(Direction({key: float(v[i]) for i, key in enumerate(space.keys)},
                                    float(math.sqrt(max(val[k], 0.0)) / PRIOR_SD)))
    return Posterior(tuple(intervals), tuple(directions), tuple(targets), n_trials, len(chain), acceptance, level,
                     chain, interval)


def _at(d: int, i: int, value: float) -> list[float]:
    u = [0.5] * d
    u[i] = float(value)
    return u


def covers(post: Posterior, hidden: dict[str, float]) -> dict[str, bool]:
    """Whether each hidden key's value lies inside its interval (twin checks)."""
    return {i.key: bool(i.low <= hidden[i.key] <= i.high) for i in post.intervals}


def min_trials(dim: int) -> int:
    """The fewest complete target trials a posterior is computed from: the GP of one
    observable over ``dim`` keys says little with fewer than ``dim + 2``."""
    return dim + 2


def of_study(study, space: ParameterSpace, loaded) -> Posterior:
    """``study_posterior`` with the settings of the study's ``LoadedStudy``
    (``optimizer.posterior``, the dataset's targets, the study seed): what ``calib optimize``
    logs when a study ends and ``calib report`` draws."""
    ps = loaded.spec.optimizer.posterior
    return study_posterior(study, space, loaded.dataset.targets, ps.samples, ps.assumed_rel_uncertainty,
                           seed=loaded.spec.seed)


def study_posterior(study, space: ParameterSpace, dataset_targets: dict, samples: int,
                    assumed_rel_uncertainty: float, seed: int = 0) -> Posterior:
    """The posterior of a stored study (its COMPLETE trials at the target fidelity).
    ``ValueError`` (its message says why) when there are too few trials or no target."""
    from calib import ledger

    done = [t for t in ledger.at_target(study) if all(k in t.params for k in space.keys)]
    need = min_trials(space.dim)
    if len(done) < need:
        raise ValueError(f"{len(done)} complete trial{'s' if len(done) != 1 else ''} at the target fidelity; "
                         f"a posterior over {space.dim} keys needs at least {need}")
    surrogate = Surrogate.fit(study, space)
    return sample_posterior(surrogate, dataset_targets, samples, seed, assumed_rel_uncertainty)
