"""calib/optimize/botorch_sampler.py: scrambled Sobol points and the GP + qLogNEI proposal (kept small)."""

from __future__ import annotations

import numpy as np
import pytest

from calib.optimize.botorch_sampler import propose_gp, sobol_point


def test_sobol_point_deterministic():
    assert sobol_point(3, 5, seed=7) == sobol_point(3, 5, seed=7)
    assert sobol_point(1, 0, seed=0) == sobol_point(1, 0, seed=0)


def test_sobol_point_differs_across_seeds_and_indices():
    assert sobol_point(3, 5, seed=7) != sobol_point(3, 5, seed=8)
    assert sobol_point(3, 5, seed=7) != sobol_point(3, 6, seed=7)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_sobol_points_in_unit_cube(dim):
    pts = [sobol_point(dim, i, seed=3) for i in range(16)]
    for p in pts:
        assert len(p) == dim
        assert all(0.0 <= v <= 1.0 for v in p)
    # distinct points, and a low-discrepancy set: each half of axis 0 gets 8 of the 16 points
    assert len({tuple(p) for p in pts}) == 16
    assert sum(p[0] < 0.5 for p in pts) == 8


def _problem():
    x = np.array([sobol_point(2, i, seed=11) for i in range(8)])
    y = -((x[:, 0] - 0.3) ** 2 + (x[:, 1] - 0.7) ** 2)
    return x, y


@pytest.fixture(scope="module")
def first():
    x, y = _problem()
    return propose_gp(x, y, None, seed=5, num_restarts=2, raw_samples=64)


def test_propose_gp_in_unit_square(first):
    assert len(first) == 2
    assert all(0.0 <= v <= 1.0 for v in first)


def test_propose_gp_same_seed_same_point(first):
    x, y = _problem()
    again = propose_gp(x, y, None, seed=5, num_restarts=2, raw_samples=64)
    assert again == first


def test_propose_gp_pending_point_moves_proposal(first):
    x, y = _problem()
    nxt = propose_gp(x, y, np.array([first]), seed=5, num_restarts=2, raw_samples=64)
    assert len(nxt) == 2
    assert all(0.0 <= v <= 1.0 for v in nxt)
    assert nxt != first
    assert np.linalg.norm(np.array(nxt) - np.array(first)) > 1e-3


def test_sampler_proposal_on_upper_bound_reaches_trial(monkeypatch):
    import optuna

    import calib.optimize.botorch_sampler as proposer
    from calib.study.space import ParameterSpace
    from calib.spec.study_file import Bound, ParametersSpec

    space = ParameterSpace.from_spec(ParametersSpec(free={
        "eps_AM": Bound(low=0.3, high=30, log=True), "sigma_AM": Bound(low=0.9, high=1.1)}))
    # the initial design point is forced to the cube's upper eps_AM face, as a GP proposal can be
    monkeypatch.setattr(proposer, "sobol_point", lambda dim, index, seed: [1.0, 0.5])
    study = optuna.create_study(sampler=proposer.BoTorchSampler(space, seed=0))
    trial = study.ask(space.distributions())
    assert trial.params["sigma_AM"] == pytest.approx(1.0)
    assert trial.params["eps_AM"] == pytest.approx(30.0)


def _finished(state: str, penalty: float | None = None):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    attrs = {} if penalty is None else {"penalty": penalty}
    if state == "FAIL":
        return create_trial(state=TrialState.FAIL, params={"x": 0.5},
                            distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs)
    return create_trial(value=1.0, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs)


def test_feasibility_labels_judge_penalties_against_the_least_one():
    from calib.optimize.botorch_sampler import feasibility_labels

    # a penalty every completed trial carries (unconverged density at smoke) is no signal:
    # the completed trials are feasible and the failure is not
    same = [_finished("COMPLETE", 1.0), _finished("COMPLETE", 1.0), _finished("FAIL")]
    assert feasibility_labels(same).tolist() == [True, True, False]
    # more penalty than the least (an unconverged viscosity on top) is infeasible
    more = [_finished("COMPLETE", 1.25), _finished("COMPLETE", 1.5), _finished("COMPLETE")]
    assert feasibility_labels(more).tolist() == [False, False, True]
    assert feasibility_labels([_finished("FAIL"), _finished("FAIL")]).tolist() == [False, False]
    assert feasibility_labels([]).tolist() == []


def test_a_model_that_cannot_propose_falls_back_to_sobol_and_says_so(monkeypatch):
    """Fault injected: the GP proposal raises (as gpytorch's ``NotPSDError`` does on a
    degenerate history). The trial gets the Sobol point of its number, the reason is on the
    trial, the study goes on, and the next batch asks the model again."""
    import optuna
    from linear_operator.utils.errors import NotPSDError

    import calib.optimize.botorch_sampler as proposer
    from calib.ledger import FALLBACK_ATTR, proposal_kind
    from calib.study.space import ParameterSpace
    from calib.spec.study_file import Bound, ParametersSpec

    space = ParameterSpace.from_spec(ParametersSpec(free={
        "eps_AM": Bound(low=0.3, high=30, log=True), "sigma_AM": Bound(low=0.9, high=1.1)}))
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise NotPSDError("Matrix not positive definite after repeatedly adding jitter")
        return [[0.25, 0.75]]

    monkeypatch.setattr(proposer, "propose_gp_batch", broken)
    sampler = proposer.BoTorchSampler(space, seed=3, n_initial=2)
    study = optuna.create_study(sampler=sampler)
    for _ in range(2):
        t = study.ask(space.distributions())
        study.tell(t, (t.params["sigma_AM"] - 1.0) ** 2 + 0.1)
    t = study.ask(space.distributions())  # the model fails: Sobol point 2
    assert space.to_unit(t.params) == pytest.approx(proposer.sobol_point(2, 2, 3), abs=1e-9)
    frozen = study._storage.get_trial(t._trial_id)
    assert "NotPSDError" in frozen.user_attrs[FALLBACK_ATTR]
    assert proposal_kind(frozen.user_attrs, t.number, "composite", 2) == "quasi-random fallback (model failed)"
    study.tell(t, 0.5)
    t = study.ask(space.distributions())  # the model works again
    assert space.to_unit(t.params) == pytest.approx([0.25, 0.75], abs=1e-9)
    assert FALLBACK_ATTR not in study._storage.get_trial(t._trial_id).user_attrs
    assert len(calls) == 2
