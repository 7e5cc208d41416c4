"""calib/study/space.py ParameterSpace and calib/study/load.py Bound/ParametersSpec validation."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from calib.study.space import ParameterSpace
from calib.spec.study_file import Bound, ParametersSpec

# Seed Table S1, slurry column (MODEL_NOTES.md), written out by hand
SEED_SLURRY = {
    "eps_CBD": 0.88, "sigma_CBD": 0.97, "rc_CBD": 2.2,
    "eps_AM": 1.0, "sigma_AM": 0.99, "rc_AM": 1.5,
    "eps_SE": 10.5, "sigma_SE": 0.99, "rc_SE": 1.5,
    "kn": 0.1, "gamma_n": 55.0, "xu": 0.016,
}


def _spec(**kw) -> ParametersSpec:
    # free keys given in reverse order on purpose: axes must not follow dict order
    free = {"sigma_AM": Bound(low=0.9, high=1.1), "eps_AM": Bound(low=0.3, high=30, log=True)}
    return ParametersSpec(base="table-s1-slurry", free=free, **kw)


@pytest.fixture
def space() -> ParameterSpace:
    return ParameterSpace.from_spec(_spec())


def test_axes_in_table_order(space):
    assert space.keys == ("eps_AM", "sigma_AM")
    assert space.dim == 2
    eps, sigma = space.axes
    assert (eps.low, eps.high, eps.log) == (0.3, 30.0, True)
    assert (sigma.low, sigma.high, sigma.log) == (0.9, 1.1, False)


def test_axes_order_across_phases_and_contact_keys():
    # project convention (forcefield.TABLE_S1_KEYS): AM, SE, CBD LJ keys, then kn, gamma_n, xu
    spec = ParametersSpec(free={"xu": Bound(low=0.01, high=1.0), "eps_CBD": Bound(low=0.1, high=10.0),
                                "kn": Bound(low=0.01, high=1.0, log=True), "rc_SE": Bound(low=1.1, high=2.5),
                                "eps_AM": Bound(low=0.3, high=30.0)})
    assert ParameterSpace.from_spec(spec).keys == ("eps_AM", "rc_SE", "eps_CBD", "kn", "xu")


def test_log_axis_midpoint_is_geometric_mean(space):
    # sqrt(0.3 * 30) = 3 sits halfway in log space
    assert math.sqrt(0.3 * 30) == pytest.approx(3.0)
    u = space.to_unit({"eps_AM": 3.0, "sigma_AM": 1.0})
    assert u[0] == pytest.approx(0.5, abs=1e-12)
    assert u[1] == pytest.approx(0.5, abs=1e-12)  # (1.0 - 0.9) / 0.2


def test_unit_cube_corners(space):
    assert space.to_unit({"eps_AM": 0.3, "sigma_AM": 0.9}) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert space.to_unit({"eps_AM": 30.0, "sigma_AM": 1.1}) == pytest.approx([1.0, 1.0], abs=1e-12)
    # log axis: 0.3 * 10 = 3 is one decade of two -> 0.5; 0.3 * 10**0.5 -> 0.25
    assert space.to_unit({"eps_AM": 0.3 * 10**0.5, "sigma_AM": 0.95})[0] == pytest.approx(0.25, abs=1e-12)
    assert space.from_unit([0.5, 0.25]) == pytest.approx({"eps_AM": 3.0, "sigma_AM": 0.95}, rel=1e-12)


@pytest.mark.parametrize("u", [[0.0, 0.0], [0.1, 0.9], [0.5, 0.5], [0.73, 0.21], [1.0, 1.0]])
def test_round_trip(space, u):
    params = space.from_unit(u)
    assert space.to_unit(params) == pytest.approx(u, abs=1e-12)
    assert space.from_unit(space.to_unit(params)) == pytest.approx(params, rel=1e-12)


@pytest.mark.parametrize("u", [[0.0, 0.0], [0.1, 0.9], [0.5, 0.5], [0.73, 0.21]])
def test_from_unit_interior_points_stay_in_bounds(space, u):
    params = space.from_unit(u)
    assert 0.3 <= params["eps_AM"] <= 30.0
    assert 0.9 <= params["sigma_AM"] <= 1.1


def test_from_unit_upper_corner_stays_in_bounds(space):
    params = space.from_unit([1.0, 1.0])
    assert params["eps_AM"] <= 30.0
    assert params["sigma_AM"] <= 1.1
    dists = space.distributions()
    assert all(dists[k]._contains(v) for k, v in params.items())


def test_from_unit_clips_to_cube(space):
    assert space.from_unit([-0.5, 1.5]) == pytest.approx({"eps_AM": 0.3, "sigma_AM": 1.1}, rel=1e-12)


def test_full_params_fills_the_other_ten_from_slurry_column(space):
    p = space.full_params({"eps_AM": 2.0, "sigma_AM": 1.05}).as_dict()
    expected = {**SEED_SLURRY, "eps_AM": 2.0, "sigma_AM": 1.05}
    assert p == pytest.approx(expected, rel=1e-12)
    assert set(space.fixed) == set(SEED_SLURRY) - {"eps_AM", "sigma_AM"}
    assert len(space.fixed) == 10
    for k, v in space.fixed.items():
        assert v == SEED_SLURRY[k]


def test_fixed_overrides_apply():
    space = ParameterSpace.from_spec(_spec(fixed={"kn": 0.5, "xu": 0.2}))
    p = space.full_params({"eps_AM": 1.0, "sigma_AM": 1.0}).as_dict()
    assert p["kn"] == 0.5
    assert p["xu"] == 0.2
    assert p["gamma_n"] == 55.0
    assert p["eps_SE"] == 10.5


def test_dried_base():
    spec = ParametersSpec(base="table-s1-dried", free={"kn": Bound(low=10, high=1000, log=True)})
    space = ParameterSpace.from_spec(spec)
    assert space.fixed["eps_CBD"] == 400.0
    assert space.fixed["gamma_n"] == 10.0
    assert space.to_unit({"kn": 100.0}) == pytest.approx([0.5], abs=1e-12)


def test_bound_low_above_high_raises():
    with pytest.raises(ValidationError):
        Bound(low=2, high=1)
    with pytest.raises(ValidationError):
        Bound(low=1, high=1)


@pytest.mark.parametrize("low", [0.0, -1.0])
def test_log_bound_needs_positive_low(low):
    with pytest.raises(ValidationError):
        Bound(low=low, high=10, log=True)
    assert Bound(low=low, high=10).low == low  # fine on a linear axis


def test_unknown_free_key_raises():
    with pytest.raises(ValidationError, match="eps_XX"):
        ParametersSpec(free={"eps_XX": Bound(low=0.1, high=1.0)})


def test_unknown_base_and_empty_free_raise():
    with pytest.raises(ValidationError):
        ParametersSpec(base="table-s2", free={"eps_AM": Bound(low=0.1, high=1.0)})
    with pytest.raises(ValidationError):
        ParametersSpec(free={})
    with pytest.raises(ValidationError):
        ParametersSpec(free={"kn": Bound(low=0.1, high=1.0)}, fixed={"kn": 0.2})


def test_non_positive_lower_bounds_and_fixed_values_are_refused():
    import pytest
    from pydantic import ValidationError

    from calib.spec.study_file import ParametersSpec

    with pytest.raises(ValidationError, match="free.sigma_AM"):
        ParametersSpec(free={"sigma_AM": {"low": 0.0, "high": 1.0}})
    with pytest.raises(ValidationError, match="fixed.kn"):
        ParametersSpec(free={"eps_AM": {"low": 0.5, "high": 1.0}}, fixed={"kn": -1.0})
    ParametersSpec(free={"xu": {"low": 0.0, "high": 1.0}})  # zero friction is allowed
