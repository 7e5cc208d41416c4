"""The posterior of the free keys (``calib.optimize.posterior``) on analytic problems whose answer is
known: a single target leaves a ridge the data cannot separate, a second target pins it,
and the hidden set lies inside its intervals. Real BoTorch GPs and emcee; the 'simulations'
are analytic functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib.optimize import posterior
from calib.optimize.gp_models import gp
from calib.study.space import Axis, ParameterSpace
from calib.optimize.surrogate import Output, Surrogate

SPACE = ParameterSpace((Axis("eps_AM", 1.0, 100.0, True), Axis("sigma_AM", 0.9, 1.1, False)), {})
HIDDEN = {"eps_AM": 10.0, "sigma_AM": 1.0}  # the unit cube's centre on both axes


def _observables(u: np.ndarray) -> np.ndarray:
    """Two observables of the unit-cube point: their sum (a ridge along a - b) and a
    difference (which breaks it)."""
    return np.stack([2.0 + u[:, 0] + u[:, 1], 1.0 + 0.5 * (u[:, 0] - u[:, 1])], axis=1)


def _surrogate(n_out: int, n: int = 40, seed: int = 0) -> tuple[Surrogate, dict]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    y = _observables(x)[:, :n_out] + 0.002 * rng.normal(size=(n, n_out))
    truth = _observables(np.array([[0.5, 0.5]]))[0]
    outputs = [Output(f"obs{j}", "1", float(truth[j])) for j in range(n_out)]
    torch.manual_seed(0)
    model = gp(torch.as_tensor(x), torch.as_tensor(y), None)
    return Surrogate(SPACE, outputs, model, x, n), {f"obs{j}": None for j in range(n_out)}


def test_one_target_leaves_the_ridge_it_cannot_separate():
    sur, targets = _surrogate(1)
    post = posterior.sample_posterior(sur, targets, samples=2000, seed=1, assumed_rel_uncertainty=0.01)
    assert all(posterior.covers(post, HIDDEN).values())
    pinned, ridge = post.directions
    # the sum is pinned (target 3.0 +- 0.03 against a range of 2), the difference is free
    assert pinned.shrink < 0.1 and ridge.shrink > posterior.RIDGE_SHRINK
    assert abs(abs(ridge.weights["eps_AM"]) - abs(ridge.weights["sigma_AM"])) < 0.1
    assert ridge.weights["eps_AM"] * ridge.weights["sigma_AM"] < 0  # a - b: one up, the other down
    assert [d.label() for d in post.ridges] == [ridge.label()]
    assert post.targets[0].source == "assumed" and post.targets[0].sd == pytest.approx(0.03)
    # each key alone is barely narrowed: the ridge spans most of the square
    assert min(i.shrink for i in post.intervals) > 0.5


def test_a_second_target_pins_both_keys_around_the_hidden_set():
    sur, targets = _surrogate(2)
    post = posterior.sample_posterior(sur, targets, samples=2000, seed=1, assumed_rel_uncertainty=0.01)
    assert all(posterior.covers(post, HIDDEN).values())
    assert not post.ridges
    for i in post.intervals:
        assert i.shrink < 0.15
    eps = next(i for i in post.intervals if i.key == "eps_AM")
    assert 5.0 < eps.low < 10.0 < eps.high < 20.0  # log key: the interval in the study's units
    assert "not separated by the data: none" in post.lines()[-1]


def test_the_dataset_uncertainty_is_used_where_given():
    sur, _ = _surrogate(1)

    class T:
        uncertainty = 0.3

    uses = posterior.target_uses(sur, {"obs0": T()}, 0.01)
    assert [(u.sd, u.source) for _, u in uses] == [(0.3, "dataset")]
    wide = posterior.sample_posterior(sur, {"obs0": T()}, samples=1000, seed=1, assumed_rel_uncertainty=0.01)
    narrow = posterior.sample_posterior(sur, {"obs0": None}, samples=1000, seed=1, assumed_rel_uncertainty=0.01)
    assert wide.directions[0].shrink > 3 * narrow.directions[0].shrink


def test_same_seed_same_posterior():
    sur, targets = _surrogate(1)
    a = posterior.sample_posterior(sur, targets, samples=500, seed=3, assumed_rel_uncertainty=0.01)
    b = posterior.sample_posterior(sur, targets, samples=500, seed=3, assumed_rel_uncertainty=0.01)
    assert a.as_dict() == b.as_dict()


def test_the_highest_density_interval_reaches_a_bound_where_the_draws_pile_up():
    rng = np.random.default_rng(0)
    piled = rng.exponential(0.1, 20_000)  # mass against 0, as at a study's lower bound
    lo, hi = posterior.hdi(piled, 0.9)
    assert lo < 1e-3 and abs(hi - 0.1 * math.log(10)) < 0.01  # [0, -ln(0.1) x scale]: 0.230
    c_lo, _ = np.quantile(piled, [0.05, 0.95])
    assert c_lo > 0.004  # the equal-tailed interval leaves the bound out
    normal = rng.normal(0.5, 0.1, 20_000)
    lo, hi = posterior.hdi(normal, 0.9)
    assert abs(lo - (0.5 - 0.1645)) < 0.01 and abs(hi - (0.5 + 0.1645)) < 0.01  # symmetric: the central one
    assert np.mean((normal >= lo) & (normal <= hi)) >= 0.9
