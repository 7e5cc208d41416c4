"""Richardson extrapolation (``sim_backends.resolution``) on synthetic sequences with a known
limit, and the verdicts for sequences that do not converge."""

from __future__ import annotations

import math

import pytest

from sim_backends.resolution import extrapolate, observed_order


@pytest.mark.parametrize("p", [1.0, 2.0, 0.7])
@pytest.mark.parametrize("h", [(0.5, 0.25, 0.125), (0.5, 0.35, 0.25, 0.177), (1.0, 0.6, 0.3)])
def test_a_power_law_sequence_extrapolates_to_its_limit(p, h):
    limit, c = 6.3e-3, 2.0e-3
    v = [limit + c * x ** p for x in h]
    e = extrapolate(h, v)
    assert e.verdict == "converging"
    assert e.order == pytest.approx(p, rel=1e-6)
    assert e.value == pytest.approx(limit, rel=1e-9)
    assert e.finest == v[-1]
    assert e.error == pytest.approx(1.25 * abs(limit - v[-1]), rel=1e-6)


def test_a_higher_order_term_leaves_a_small_error_the_estimate_covers():
    limit = 1.0
    h = (0.5, 0.25, 0.125, 0.0625)
    v = [limit + 0.3 * x + 0.2 * x ** 2 for x in h]
    e = extrapolate(h, v)
    assert e.verdict == "converging"
    assert abs(e.value - limit) <= e.error
    assert abs(e.value - limit) < abs(v[-1] - limit) / 5  # much closer than the finest grid


def test_uneven_ratios_extrapolate_too():
    """Voxel sizes 0.5, 0.4, 0.1: the finer step is much larger than the coarser one."""
    e = extrapolate((0.5, 0.4, 0.1), (1.5, 1.4, 1.1))
    assert e.verdict == "converging" and e.value == pytest.approx(1.0) and e.order == pytest.approx(1.0)


def test_the_order_is_not_the_input_order_of_the_grids():
    h, v = (0.125, 0.5, 0.25), (1.0 + 0.125, 1.5, 1.25)
    assert extrapolate(h, v).value == pytest.approx(1.0)


def test_the_no_limit_sequence_of_the_issue_is_not_converging():
    """The 30 % dev film of issue 27's report: 5.14e-4, 3.72e-4, 2.19e-4 S/m at 0.5, 0.25,
    0.125 um (x0.72 then x0.59 per halving)."""
    e = extrapolate((0.5, 0.25, 0.125), (5.14e-4, 3.72e-4, 2.19e-4))
    assert e.verdict == "not converging" and "no order" in e.reason
    assert e.value == 2.19e-4 and e.error == pytest.approx(5.14e-4 - 2.19e-4)


def test_alternating_differences_and_out_of_range_orders_are_not_converging():
    assert "alternate" in extrapolate((0.5, 0.25, 0.125), (6.5e-3, 6.1e-3, 6.32e-3)).reason
    # the power-rule conductivity of docs/stages/characterise.md#overlaps: 0.7 % apart at the end
    settled = extrapolate((0.5, 0.25, 0.125), (6.506e-3, 6.272e-3, 6.315e-3))
    assert settled.verdict == "converged" and settled.value == 6.315e-3
    assert settled.error == pytest.approx(0.043e-3)
    slow = extrapolate((0.5, 0.25, 0.125), (2.0, 1.5, 1.01))  # order ~0.03: no limit in sight
    assert slow.verdict == "not converging"


def test_four_grids_whose_coarse_triplet_disagrees_are_not_in_the_asymptotic_range():
    h = (1.0, 0.5, 0.25, 0.125)
    v = [1.28, 1.0 + 0.5 ** 3, 1.0 + 0.25 ** 3, 1.0 + 0.125 ** 3]  # order 3 at the fine end, about 0.5 at the coarse
    e = extrapolate(h, v)
    assert e.verdict == "not converging" and "asymptotic" in e.reason
    assert extrapolate(h[1:], v[1:]).verdict == "converging"


def test_two_equal_finest_values_are_converged():
    e = extrapolate((0.5, 0.25, 0.125), (1.2, 1.0, 1.0))
    assert e.verdict == "converged" and e.value == 1.0 and e.error == 0.0


def test_observed_order_and_bad_input():
    assert observed_order((0.4, 0.2, 0.1), (1 + 0.4 ** 2, 1 + 0.2 ** 2, 1 + 0.1 ** 2)) == pytest.approx(2.0)
    assert observed_order((0.4, 0.2, 0.1), (1.0, 2.0, 1.5)) is None
    for h, v in (((0.5, 0.25), (1.0, 2.0)), ((0.5, 0.5, 0.25), (1, 2, 3)), ((0.5, 0.25, 0.0), (1, 2, 3)),
                 ((0.5, 0.25, 0.1), (1, math.nan, 3))):
        with pytest.raises(ValueError):
            extrapolate(h, v)


def test_a_value_proportional_to_the_voxel_has_no_limit():
    """A pore size measured in voxels (the dev film's median pore: 4.06, 2.79, 2.00 um at 1.01,
    0.70, 0.50 um voxels) extrapolates to about 0 with an error as large as that."""
    e = extrapolate((1.014, 0.6972, 0.4995), (4.056, 2.789, 1.998))
    assert e.verdict == "not converging" and "scales with the voxel" in e.reason
    assert e.value == 1.998  # the finest grid's, as for every sequence that does not converge
