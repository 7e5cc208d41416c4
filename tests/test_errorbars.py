"""Error bars of the per-degree characterisation values (``calib.stages.errorbars``): pure
functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from calib.stages.errorbars import (combine, combine_degrees, describe_errors, distinct_peak, infinite_tau, monotone,
                             ratio_error, rises_then_falls)


def test_two_placements_give_the_standard_error_of_the_mean_and_the_resolution_error_in_quadrature():
    est = combine([1.0, 1.2], [0.03, 0.05])
    assert est.value == pytest.approx(1.1)
    assert est.placement_se == pytest.approx(math.sqrt(0.02) / math.sqrt(2))  # sd 0.1414, / sqrt(2)
    assert est.resolution == pytest.approx(0.04)
    assert est.error == pytest.approx(math.hypot(0.1, 0.04))
    assert est.n == 2


def test_one_placement_has_only_its_resolution_error_and_none_when_unknown():
    assert combine([2.0], [0.1]).error == pytest.approx(0.1)
    assert combine([2.0], [0.1]).placement_se is None
    assert combine([2.0], [None]).error is None
    assert combine([None, None], [0.1, 0.1]) is None
    assert combine([3.0, None], []).value == 3.0 and combine([3.0, None], []).n == 1


def test_ratio_error_adds_relative_errors_in_quadrature():
    # sigma 2 +- 0.2 (10 %), tau 4 +- 0.4 (10 %): ratio 0.5 +- 0.5 * sqrt(2) * 0.1
    assert ratio_error(2.0, 0.2, 4.0, 0.4) == pytest.approx(0.5 * math.sqrt(2) * 0.1)
    assert ratio_error(2.0, None, 4.0, 0.4) is None
    assert ratio_error(2.0, 0.2, None, 0.4) is None


def test_combine_degrees_averages_each_degree_and_renormalises_the_ratio():
    p1 = [{"degree_pct": 0.0, "conductivity_s_m": 1.0, "se_tortuosity": 2.0, "conductivity_s_m_resolution_error": 0.0,
           "se_tortuosity_resolution_error": 0.1, "ratio_normalised": 1.0, "label": "a"},
          {"degree_pct": 30.0, "conductivity_s_m": 4.0, "se_tortuosity": 2.0, "conductivity_s_m_resolution_error": 0.0,
           "se_tortuosity_resolution_error": 0.1, "ratio_normalised": 1.0, "label": "b"}]
    p2 = [{**p1[0], "conductivity_s_m": 3.0}, {**p1[1], "conductivity_s_m": 4.0}]
    rows = combine_degrees([p1, p2])
    assert [r["degree_pct"] for r in rows] == [0.0, 30.0]
    assert rows[0]["conductivity_s_m"] == pytest.approx(2.0) and rows[0]["placements"] == 2
    assert rows[0]["conductivity_s_m_placement_se"] == pytest.approx(1.0)  # sd sqrt(2), / sqrt(2)
    assert rows[1]["conductivity_s_m_error"] == pytest.approx(0.0)
    assert rows[0]["label"] == "a"
    assert "porosity" not in rows[0] and "porosity_error" not in rows[0]  # a key no row has stays absent
    # ratio: 2/2 = 1 and 4/2 = 2, normalised 0.5 and 1
    assert rows[0]["ratio_normalised"] == pytest.approx(0.5) and rows[1]["ratio_normalised"] == pytest.approx(1.0)
    # 0 %: sigma 2 +- 1 (50 %), tau 2 +- 0.1 (5 %): ratio 1 +- hypot(0.5, 0.05), / 2
    assert rows[0]["ratio_normalised_error"] == pytest.approx(math.hypot(0.5, 0.05) / 2)


def test_a_peak_is_claimed_only_when_it_stands_out_of_the_bars():
    clear = [(0, 1.0, 0.1), (30, 2.0, 0.1), (50, 1.5, 0.1)]
    assert distinct_peak(clear) == (30, True)
    assert rises_then_falls(clear) is True
    blurred = [(0, 1.0, 0.1), (30, 2.0, 0.3), (50, 1.8, 0.1)]
    assert distinct_peak(blurred) == (30, False)
    assert rises_then_falls(blurred) == "unresolved"  # the fall to 50 % is within the bars
    assert rises_then_falls([(0, 1.0, 0.1), (30, 2.0, 0.1), (50, 3.0, 0.1)]) is False  # a rise, no fall
    assert rises_then_falls([(0, 1.0, 0.0), (30, 2.0, 0.0)]) is None
    assert rises_then_falls([(0, 1.0, 0.0), (30, 2.0, 0.0), (50, 3.0, 0.0)]) is False  # largest at the end
    assert rises_then_falls([(0, 1.0, 0.5), (30, 2.0, 0.5), (50, 3.0, 0.5)]) == "unresolved"  # ... but within bars


def test_a_monotone_trend_needs_every_step_beyond_the_two_bars():
    assert monotone([(0, 3.0, 0.1), (10, 2.5, 0.1), (20, 2.0, 0.1)], falling=True) is True
    assert monotone([(0, 3.0, 0.1), (10, 2.9, 0.1), (20, 2.0, 0.1)], falling=True) == "unresolved"
    assert monotone([(0, 3.0, 0.1), (10, 3.5, 0.1), (20, 2.0, 0.1)], falling=True) is False  # a rise beyond the bars
    assert monotone([(0, 1.0, None), (10, 2.0, None)], falling=False) is True
    assert monotone([(0, 1.0, None), (10, None, None)], falling=False) is None


def test_one_placement_where_the_se_does_not_span_makes_the_mean_tortuosity_infinite():
    rows = combine_degrees([[{"degree_pct": 0.0, "se_tortuosity": None, "se_diffusivity_rel": 0.0}],
                            [{"degree_pct": 0.0, "se_tortuosity": 2.7, "se_diffusivity_rel": 0.04}]])
    assert rows[0]["se_tortuosity"] is None and rows[0]["se_tortuosity_finite_placements"] == 1
    assert rows[0]["se_diffusivity_rel"] == pytest.approx(0.02)


def test_merged_records_keep_verdicts_counts_and_errors_apart():
    from calib.stages.errorbars import merge_records

    a = {"porosity": 0.36, "lz_converged": 1.0, "iterations": 600, "equilibrated": True, "label": "x"}
    b = {"porosity": 0.34, "lz_converged": 0.0, "iterations": 900, "equilibrated": True, "label": "y"}
    m = merge_records([a, b], ("porosity",))
    assert m["lz_converged"] is False  # a 0/1 verdict is not averaged to 0.5
    assert m["equilibrated"] is True and m["iterations"] == 900 and m["label"] == "x"
    assert m["porosity"] == pytest.approx(0.35) and m["porosity_error"] == pytest.approx(0.01)
    assert "iterations_error" not in m and m["placements"] == 2
    rows = combine_degrees([[{"degree_pct": 0.0, "se_tortuosity": None, "se_tortuosity_resolution_error": 0.1}],
                            [{"degree_pct": 0.0, "se_tortuosity": 2.7, "se_tortuosity_resolution_error": 0.1}]])
    assert "se_tortuosity_resolution_error" not in rows[0]  # no stale error beside an infinite mean


def test_the_errors_line_says_what_the_bars_hold():
    both = describe_errors(2, "network", "network")
    assert both.startswith("the standard error over 2 placements;") and "resolution" not in both
    assert "the conductivity and the SE D_eff/D_0 and tortuosity are the contact network's" in both
    voxel = describe_errors(3, "voxel", "network")
    assert voxel.startswith("the standard error over 3 placements with the SE's resolution error in quadrature")
    assert "the conductivity is the contact network's" in voxel
    one = describe_errors(1, "network", "voxel")
    assert one.startswith("one placement: the spread is not measured") and "no value has an error bar" in one
    assert "the SE D_eff/D_0 and tortuosity are the contact network's" in one
    assert "the SE's resolution error only" in describe_errors(1, "voxel", "voxel")
    assert "contact network" not in describe_errors(1, "voxel", "voxel")


def test_an_infinite_tortuosity_says_which_route_found_no_path():
    assert infinite_tau({"se_method": "network", "placements": 2, "se_tortuosity_finite_placements": 1}) == \
        "inf (no SE contact path in 1 of 2 placements)"
    assert infinite_tau({"se_method": "voxel", "placements": 1}) == "inf (SE not connected)"
    assert infinite_tau({"placements": 1}) == "inf (SE not connected)"  # rows from before se_method
