"""The caveats' pure parts: which keys are at a bound, and their wording."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
from optuna.distributions import FloatDistribution

from calib.review.caveats import AtBound, Caveats, at_bounds, caveat_lines, trial_caveats


def frozen(params: dict[str, float], dists: dict[str, FloatDistribution], **attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(params=params, distributions=dists, value=0.1, user_attrs=attrs)


def test_at_bounds_judges_log_keys_in_log_scale():
    d = {"eps": FloatDistribution(0.1, 1000.0, log=True), "sigma": FloatDistribution(0.9, 1.1)}
    # 0.105 is 0.5 % of the log range above 0.1 (at the bound); in linear scale it would be 0.0005 %
    assert at_bounds(frozen({"eps": 0.105, "sigma": 1.0}, d)) == (AtBound("eps", 0.105, "lower", 0.1),)
    # 0.2 is 7.5 % of the log range up: inside, though 0.01 % of the linear range
    assert at_bounds(frozen({"eps": 0.2, "sigma": 1.0}, d)) == ()
    assert at_bounds(frozen({"eps": 10.0, "sigma": 1.0985}, d)) == (AtBound("sigma", 1.0985, "upper", 1.1),)
    assert at_bounds(frozen({"eps": 10.0, "sigma": 1.097}, d)) == ()  # 1.5 % from the top
    # a manual value outside the range (calib refine --allow-outside-bounds) is outside, not at a bound
    out = at_bounds(SimpleNamespace(params={"eps": 0.05, "sigma": 1.0}, distributions=d))  # optuna refuses to build it
    assert out == (AtBound("eps", 0.05, "below", 0.1),)
    assert out[0].text() == "eps = 0.05 (outside the range: below its bound 0.1)"


def caveats(**kw) -> Caveats:
    base = dict(fidelity="dev", protocol="seed: ...", compression=200, confirmed="not confirmed",
                confirmation_trial=None, at_bound=(), converged=True, convergence="the seed protocol's value",
                trials_complete=8, model_proposals=2, sampler="composite", n_initial=6)
    return Caveats(**{**base, **kw})


def test_the_wording_of_each_caveat():
    lines = caveat_lines(caveats())
    assert lines == [
        "holds only at: fidelity dev (protocol compressed k = 200); another protocol or fidelity gives other values "
        "(docs/model.md#slurry-protocol)",
        "confirmed at the full protocol: no: calibrated at k = 200, whose error against the full protocol depends on "
        "the set; rerun with --confirm to run it at k = 1 (hours)",
        "at a bound: none",
        "convergence: the seed protocol's value",
        "proposals: 2 of 8 complete trials proposed by the composite model"]
    held = caveat_lines(caveats(confirmed="does not hold", confirmation_trial=9, converged=False,
                                convergence="the film was still relaxing",
                                at_bound=(AtBound("eps_AM", 1.0, "lower", 1.0),), model_proposals=0))
    assert held[1] == "confirmed at the full protocol: NO: it does not hold at the full protocol (confirmation trial 9)"
    assert held[2].startswith("at a bound: eps_AM = 1 (its lower bound 1): the optimum may lie outside the range")
    assert held[3] == "convergence: NOT converged: the film was still relaxing"
    assert held[4].startswith("proposals: all 8 complete trials came from the initial design "
                              "(optimizer.n_initial = 6): the model never proposed")
    # a stage without a compressed protocol: no confirmation line, no density reference
    other = caveat_lines(caveats(protocol=None, compression=None, confirmed="not applicable", sampler="sobol"))
    assert other[0] == "holds only at: fidelity dev; another protocol or fidelity gives other values"
    assert not any(x.startswith(("confirmed", "proposals", "transport")) for x in other)
    # manual trials are not the initial design; a characterisation names its resolution caveat
    mixed = caveat_lines(caveats(model_proposals=0, trials_complete=4, proposals={"initial design": 3, "manual": 1},
                                 stage="characterise"))
    assert "proposals: the model never proposed a set (complete trials: 3 initial design, 1 manual); run more " \
           "trials" in mixed
    assert mixed[-1].startswith("transport: the conductivity, diffusivity and tortuosity depend on the voxel size")


def test_trial_caveats_counts_the_model_s_proposals():
    study = optuna.create_study()
    study.set_user_attr("calib_study_spec", '{"optimizer": {"sampler": "composite", "n_initial": 2}}')
    d = {"x": FloatDistribution(0.0, 1.0)}
    for i in range(4):
        study.add_trial(frozen({"x": 0.5}, d, equilibrated=True))
    c = trial_caveats(study, study.trials[3])
    assert (c.trials_complete, c.model_proposals, c.sampler, c.n_initial) == (4, 2, "composite", 2)
    assert c.confirmed == "not applicable" and c.converged is True
