"""Rheometer CSV import, log-log interpolation and the curve error (objectives/rheology.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from objectives.rheology import CurveError, ViscosityCurve, curve_error, load_rheometer_csv, loglog_interpolate


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rheo.csv"
    p.write_text(text)
    return p


def test_header_units_are_converted_to_si(tmp_path):
    c = load_rheometer_csv(_write(tmp_path, "shear_rate [1/s],viscosity [mPa s]\n1,7480\n10,2860\n"))
    assert c.shear_rate_per_s == (1.0, 10.0)
    assert c.viscosity_pa_s == pytest.approx((7.48, 2.86))
    assert c.uncertainty_pa_s is None


def test_units_from_caller_and_uncertainty_column(tmp_path):
    c = load_rheometer_csv(_write(tmp_path, "rate,eta,sigma\n18,7.48,0.2\n125,2.86,0.1\n"),
                           shear_rate_unit="1/s", viscosity_unit="Pa s")
    assert c.viscosity_pa_s == (7.48, 2.86) and c.uncertainty_pa_s == (0.2, 0.1)


@pytest.mark.parametrize("text, row, words", [
    ("", 0, "empty"),
    ("shear_rate [1/s],viscosity [Pa s]\n", 0, "no data rows"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n0,1\n", 3, "positive"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n2,-1\n", 3, "positive"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2\n1,1\n", 3, "increase"),
    ("shear_rate [1/s],viscosity [Pa s]\n2,2\n1,1\n", 3, "increase"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,nan\n", 2, "NaN"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,abc\n", 2, "not a number"),
    ("shear_rate [rpm],viscosity [Pa s]\n1,2\n", 1, "unknown shear-rate unit"),
    ("shear_rate [1/s],viscosity [poise-ish]\n1,2\n", 1, "unknown viscosity unit"),
    ("shear_rate,viscosity\n1,2\n", 1, "no shear-rate unit"),
    ("shear_rate [1/s],viscosity [Pa s]\n1,2,3\n", 2, "expected 2 values"),
])
def test_bad_csv_names_file_and_row(tmp_path, text, row, words):
    p = _write(tmp_path, text)
    with pytest.raises(CurveError) as exc:
        load_rheometer_csv(p)
    assert exc.value.row == row and words in exc.value.message
    assert str(p) in str(exc.value)


def test_mismatched_units_refused(tmp_path):
    with pytest.raises(CurveError, match="does not match"):
        load_rheometer_csv(_write(tmp_path, "shear_rate [1/s],viscosity [mPa s]\n1,2\n"), viscosity_unit="Pa s")


def test_loglog_interpolation_of_a_power_law_is_exact():
    # eta = 10 * rate^-0.5 is a straight line in log-log
    x, y = [1.0, 100.0], [10.0, 1.0]
    assert loglog_interpolate(x, y, [10.0]) == pytest.approx([10.0 * 10.0**-0.5])
    assert loglog_interpolate(x, y, [1e4]) == pytest.approx([0.1])  # extended end segment
    assert loglog_interpolate([5.0], [3.0], [1.0, 50.0]) == [3.0, 3.0]


def test_curve_error_in_log_viscosity_weighted_by_uncertainty():
    measured = ViscosityCurve((18.0, 125.0), (7.48, 2.86), (0.748, 0.286))  # 10 % uncertainty
    res = curve_error([18.0, 125.0], [7.48 * math.e**0.1, 2.86], measured)
    assert res.log_errors == pytest.approx((1.0, 0.0))  # 0.1 in ln / 0.1 relative sigma
    assert res.rms == pytest.approx(math.sqrt(0.5))
    plain = curve_error([10.0, 1000.0], [10.0, 1.0], ViscosityCurve((100.0,), (2.0,)))
    # slope -1/2 through (10, 10): eta(100) = 10 * (100/10)^-0.5 = sqrt(10)
    assert plain.simulated_pa_s == pytest.approx((math.sqrt(10.0),))
    assert plain.log_errors == pytest.approx((math.log(math.sqrt(10.0) / 2.0),))
    with pytest.raises(ValueError):
        curve_error([1.0], [0.0], measured)


def test_curve_from_points_validates_like_the_csv():
    from objectives.rheology import curve_from_points

    c = curve_from_points([(18, 7480, None), (125, 2860, None)], "1/s", "mPa s", where="x")
    assert c.viscosity_pa_s == pytest.approx((7.48, 2.86)) and c.uncertainty_pa_s is None
    with pytest.raises(CurveError, match="row 2.*increase"):
        curve_from_points([(18, 1, None), (10, 1, None)], "1/s", "Pa s", where="x")
    with pytest.raises(CurveError, match="every point or for none"):
        curve_from_points([(18, 1, 0.1), (20, 1, None)], "1/s", "Pa s", where="x")
    with pytest.raises(CurveError, match="no points"):
        curve_from_points([], "1/s", "Pa s", where="x")


def test_curve_error_is_one_named_objective():
    res = curve_error([18.0, 125.0], [7.48 * math.e, 2.86], ViscosityCurve((18.0, 125.0), (7.48, 2.86)))
    assert res.name == "viscosity_curve"
    assert res.log_errors == pytest.approx((1.0, 0.0))
    assert res.error == res.rms == pytest.approx(math.sqrt(0.5))


def test_windows_1252_export_with_a_middle_dot(tmp_path):
    """Rheometer software often writes cp1252: 'mPa·s' must read, not crash."""
    p = tmp_path / "rheo.csv"
    p.write_bytes("shear_rate [1/s];x\n".replace(";x", ",viscosity [mPa\xb7s]").encode("cp1252") + b"1,2000\n")
    c = load_rheometer_csv(p)
    assert c.viscosity_pa_s == pytest.approx((2.0,))


def test_utf8_bom_header(tmp_path):
    p = tmp_path / "rheo.csv"
    p.write_bytes("\ufeffshear_rate [1/s],viscosity [Pa s]\n1,2\n".encode("utf-8"))
    assert load_rheometer_csv(p).shear_rate_per_s == (1.0,)


def test_curve_residuals_carry_the_log_sd_of_the_simulated_sem():
    # 10 % measured uncertainty; simulated SEM 5 % of eta at both rates: sd of each
    # normalised log error = 0.05 / 0.10 = 0.5
    measured = ViscosityCurve((18.0, 125.0), (7.48, 2.86), (0.748, 0.286))
    res = curve_error([18.0, 125.0], [7.48 * math.e, 2.86], measured, [0.05 * 7.48 * math.e, 0.05 * 2.86])
    assert res.residuals == pytest.approx((10.0, 0.0))  # ln(e) / 0.1 and 0
    assert res.residual_sd == pytest.approx((0.5, 0.5))
    assert curve_error([18.0, 125.0], [7.48, 2.86], measured).residual_sd == (None, None)
