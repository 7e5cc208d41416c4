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
    with pytest.raises(ValueError, match="weighted_sum"):
        scalarise([_err("a", 0.1)], "nonsense")


def test_chebyshev_and_augmented_chebyshev_by_hand():
    from objectives.scalarise import augmented_chebyshev, chebyshev, scalarise

    errs = [_err("a", 0.1), _err("b", -0.3)]
    assert chebyshev(errs) == pytest.approx(0.3)
    assert chebyshev(errs, {"a": 5.0, "b": 1.0}) == pytest.approx(0.5)
    assert augmented_chebyshev(errs, {"a": 0.25, "b": 0.75}) == pytest.approx(0.225 + 0.05 * (0.025 + 0.225))
    assert scalarise(errs, "chebyshev") == pytest.approx(0.3)
    with pytest.raises(ValueError):
        scalarise(errs, "parego")


def test_parego_weights_on_simplex_and_reproducible():
    from objectives.scalarise import parego_weights

    w = parego_weights(["a", "b", "c"], seed=1, index=4)
    assert sum(w.values()) == pytest.approx(1.0) and all(v >= 0 for v in w.values())
    assert w == parego_weights(["a", "b", "c"], seed=1, index=4)
    assert w != parego_weights(["a", "b", "c"], seed=1, index=5)


def test_pareto_front_by_hand():
    from objectives.scalarise import pareto_front

    pts = [[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [2.0, 2.0], [1.0, 6.0]]
    # [3,3] is dominated by [2,2]; [1,6] by [1,5]; the two [2,2] do not dominate each other
    assert pareto_front(pts) == [0, 1, 3, 4]
    assert pareto_front([[1.0]]) == [0]


def test_study_scalarisations_on_hand_made_errors():
    """weighted_sum, chebyshev and parego through the study's own dispatcher."""
    from calib.stages.base import scalarised
    from calib.spec.study_file import ObjectiveSpec
    from objectives.scalarise import parego_weights

    class Spec:  # only .objective is read
        def __init__(self, method):
            self.objective = ObjectiveSpec(targets={"slurry_density": 2.0, "viscosity_curve": 1.0},
                                           scalarisation=method)

    errs = {"slurry_density": -0.1, "viscosity_curve": 0.5}
    assert scalarised(errs, Spec("weighted_sum"), 0, 3) == pytest.approx(2 * 0.01 + 0.25)
    assert scalarised(errs, Spec("chebyshev"), 0, 3) == pytest.approx(max(2 * 0.1, 0.5))
    w = parego_weights(["slurry_density", "viscosity_curve"], 0, 3)
    expect = max(w["slurry_density"] * 0.1, w["viscosity_curve"] * 0.5) + 0.05 * (
        w["slurry_density"] * 0.1 + w["viscosity_curve"] * 0.5)
    assert scalarised(errs, Spec("parego"), 0, 3) == pytest.approx(expect)
    assert scalarised(errs, Spec("parego"), 0, 4) != pytest.approx(expect)  # new weights per proposal
    assert scalarised(errs, Spec("parego"), 0, None) == pytest.approx(2 * 0.01 + 0.25)  # ranking


def test_density_residual_and_its_sd_from_the_sem():
    # relative to the value: error (1.995 - 1.90) / 1.90 = 0.05; sd 0.019 / 1.90 = 0.01
    e = density_error(1.995, _target(), sem_g_cm3=0.019)
    assert e.residuals == (pytest.approx(0.05),) and e.residual_sd == (pytest.approx(0.01),)
    # normalised by an uncertainty of 0.038: error 2.5, sd 0.5
    e = density_error(1.995, _target(uncertainty=0.038), sem_g_cm3=0.019)
    assert e.residuals == (pytest.approx(2.5),) and e.residual_sd == (pytest.approx(0.5),)
    assert density_error(1.995, _target()).residual_sd == (None,)  # no SEM measured
