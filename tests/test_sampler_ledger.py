"""BoTorchSampler over a real Optuna SQLite storage with a cheap analytic objective:
the same seed gives the same proposals, another seed others, and the GP phase improves on
the quasi-random start."""

from __future__ import annotations

from pathlib import Path

import optuna

from calib.optimize.botorch_sampler import BoTorchSampler
from calib.study.space import ParameterSpace
from calib.spec.study_file import Bound, ParametersSpec


def _space() -> ParameterSpace:
    return ParameterSpace.from_spec(ParametersSpec(
        base="table-s1-slurry",
        free={"eps_AM": Bound(low=0.3, high=30.0, log=True), "sigma_AM": Bound(low=0.9, high=1.1)}))


def _objective(p: dict[str, float]) -> float:
    # minimum at eps_AM = 3, sigma_AM = 1.0
    import math
    return (math.log(p["eps_AM"] / 3.0)) ** 2 + ((p["sigma_AM"] - 1.0) / 0.1) ** 2


def _run(tmp_path: Path, name: str, seed: int, n: int = 9) -> list[dict[str, float]]:
    space = _space()
    sampler = BoTorchSampler(space, seed=seed, n_initial=4, num_restarts=2, raw_samples=64)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'ledger.db'}",
                                sampler=sampler, direction="minimize")
    out = []
    for _ in range(n):
        t = study.ask(space.distributions())
        study.tell(t, _objective(t.params))
        out.append(dict(t.params))
    return out


def test_same_seed_same_proposals_other_seed_others(tmp_path: Path):
    a = _run(tmp_path, "a", seed=7)
    b = _run(tmp_path, "b", seed=7)
    c = _run(tmp_path, "c", seed=8)
    assert a == b
    assert a[0] != c[0] and a[-1] != c[-1]


def test_gp_phase_beats_quasi_random_start(tmp_path: Path):
    params = _run(tmp_path, "d", seed=3, n=12)
    values = [_objective(p) for p in params]
    assert min(values[4:]) < min(values[:4])


def test_running_trials_are_pending_points(tmp_path: Path, monkeypatch):
    import numpy as np

    import calib.optimize.botorch_sampler as proposer

    seen = []
    real = proposer.propose_gp_batch

    def spy(x, y, x_pending, seed, **kw):
        seen.append(None if x_pending is None else np.array(x_pending))
        return real(x, y, x_pending, seed, **kw)

    monkeypatch.setattr(proposer, "propose_gp_batch", spy)
    space = _space()
    # two trials at once (lag 2): the trial just before is a pending point, not data
    sampler = BoTorchSampler(space, seed=1, n_initial=3, num_restarts=2, raw_samples=64, lag=2)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}", sampler=sampler, direction="minimize")
    for _ in range(5):
        t = study.ask(space.distributions())
        study.tell(t, _objective(t.params))
    first = study.ask(space.distributions())  # left RUNNING
    seen.clear()
    second = study.ask(space.distributions())
    assert len(seen) == 1 and seen[0] is not None
    assert np.allclose(seen[0], [space.to_unit(first.params)])
    assert first.params != second.params


def test_lagged_history_ignores_completion_order(tmp_path: Path, monkeypatch):
    """With lag 2 the proposal for trial n sees trial n-1 as pending even if it finished."""

    import calib.optimize.botorch_sampler as proposer

    seen = []
    real = proposer.propose_gp_batch

    def spy(x, y, x_pending, seed, **kw):
        seen.append((len(x), None if x_pending is None else len(x_pending)))
        return real(x, y, x_pending, seed, **kw)

    monkeypatch.setattr(proposer, "propose_gp_batch", spy)
    space = _space()
    sampler = BoTorchSampler(space, seed=1, n_initial=3, num_restarts=2, raw_samples=64, lag=2)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}", sampler=sampler, direction="minimize")
    for _ in range(6):
        t = study.ask(space.distributions())
        study.tell(t, _objective(t.params))
    seen.clear()
    study.ask(space.distributions())  # trial 6: data = trials 0..4, pending = trial 5 (complete)
    assert seen == [(5, 1)]
