"""objectives/errors.py and objectives/scalarise.py."""

from __future__ import annotations

import math

import pytest

from objectives.dataset import Provenance, Target
from objectives.errors import TargetError, density_error, target_error
from objectives.scalarise import scalarise, weighted_sum


def _target(uncertainty=None):
    return Target(value=1.90, unit="g/cm^3", uncertainty=uncertainty,
                  provenance=Provenance(source="seed paper", kind="measured"))


def test_density_error_relative_without_uncertainty():
    e = density_error(1.862, _target())
    assert e.name == "slurry_density"
    assert e.simulated == 1.862
    assert e.target == 1.90
    assert e.unit == "g/cm^3"
    assert e.rel_error == pytest.approx(-0.02, abs=1e-12)  # (1.862 - 1.90) / 1.90 = -0.038 / 1.9
    assert e.error == pytest.approx(-0.02, abs=1e-12)
    assert e.normalised_by == "value"


def test_density_error_normalised_by_uncertainty():
    e = density_error(1.862, _target(uncertainty=0.05))
    assert e.error == pytest.approx(-0.038 / 0.05, rel=1e-9)  # -0.76
    assert e.rel_error == pytest.approx(-0.02, abs=1e-12)
    assert e.normalised_by == "uncertainty"


def test_overshoot_is_positive():
    e = density_error(2.09, _target())
    assert e.rel_error == pytest.approx(0.1, rel=1e-9)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_simulated_raises(bad):
    with pytest.raises(ValueError):
        density_error(bad, _target())
    with pytest.raises(ValueError):
        target_error("x", bad, _target(0.05))


def _err(name, value):
    return TargetError(name=name, simulated=math.nan, target=1.0, unit="-", rel_error=value,
                       error=value, normalised_by="value")


def test_weighted_sum_with_weights():
    errors = [_err("a", 0.1), _err("b", -0.2)]
    assert weighted_sum(errors, {"a": 1.0, "b": 2.0}) == pytest.approx(0.01 + 2 * 0.04, rel=1e-12)
    assert scalarise(errors, "weighted_sum", {"a": 1.0, "b": 2.0}) == pytest.approx(0.09, rel=1e-12)


def test_weighted_sum_default_weights_are_one():
    errors = [_err("a", 0.1), _err("b", -0.2)]
    assert weighted_sum(errors) == pytest.approx(0.05, rel=1e-12)
    assert scalarise(errors) == pytest.approx(0.05, rel=1e-12)
    assert weighted_sum([]) == 0.0


def test_unknown_scalarisation_raises():
    with pytest.raises(ValueError, match="chebyshev"):
        scalarise([_err("a", 0.1)], "chebyshev")
