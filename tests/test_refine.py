"""``calib.optimize.manual_sets``: parsing and checking the sets a user asks to run (pure functions)."""

from __future__ import annotations

import math

import pytest

from calib.core.errors import InputError
from calib.optimize.manual_sets import build_sets, parse_assignments, parse_scan, read_sets_file
from calib.study.space import Axis, ParameterSpace

SPACE = ParameterSpace((Axis("eps_AM", 1.0, 3000.0, True), Axis("sigma_AM", 0.9, 1.1, False),
                        Axis("eps_CBD", 0.1, 1000.0, True)), {"kn": 0.1, "xu": 0.016})
BEST = {"eps_AM": 10.0, "sigma_AM": 1.0, "eps_CBD": 5.0}


def _err(fn, *args, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args, **kw)
    return info.value


def test_set_fills_unnamed_keys_from_the_best_trial():
    (s,) = build_sets(SPACE, "st", BEST, parse_assignments(["eps_CBD=0.2"]))
    assert s.params == {"eps_AM": 10.0, "sigma_AM": 1.0, "eps_CBD": 0.2}
    assert s.origin == "--set eps_CBD=0.2" and s.outside == ()
    assert s.user_attrs() == {"calib_manual": "--set eps_CBD=0.2", "calib_outside_bounds": []}


def test_scan_is_evenly_spaced_on_the_keys_own_scale_through_the_set():
    lin = build_sets(SPACE, "st", BEST, parse_assignments(["eps_CBD=2"]), scans=[parse_scan("sigma_AM=0.9:1.1:3")])
    assert [s.params["sigma_AM"] for s in lin] == pytest.approx([0.9, 1.0, 1.1])
    assert all(s.params["eps_CBD"] == 2.0 and s.params["eps_AM"] == 10.0 for s in lin)
    log = build_sets(SPACE, "st", BEST, {}, scans=[parse_scan("eps_CBD=0.1:10:3")])
    assert [s.params["eps_CBD"] for s in log] == pytest.approx([0.1, 1.0, 10.0])


def test_file_sets(tmp_path):
    f = tmp_path / "sets.yaml"
    f.write_text("sets:\n  - {eps_CBD: 0.5}\n  - {eps_CBD: 50, sigma_AM: 0.95}\n")
    sets = build_sets(SPACE, "st", BEST, {}, read_sets_file(f), str(f))
    assert [s.params["eps_CBD"] for s in sets] == [0.5, 50.0] and sets[1].params["sigma_AM"] == 0.95
    assert sets[0].origin == f"--file {f}"
    f.write_text("- {eps_CBD: 0.5}\n")  # a bare list works too
    assert len(read_sets_file(f)) == 1


def test_outside_bounds_refused_unless_allowed_and_then_flagged():
    e = _err(build_sets, SPACE, "st", BEST, parse_assignments(["eps_CBD=2000"]))
    assert (e.where, e.field) == ("--set", "eps_CBD") and "outside the study's bounds [0.1, 1000]" in e.message
    (s,) = build_sets(SPACE, "st", BEST, parse_assignments(["eps_CBD=2000"]), allow_outside=True)
    assert s.outside == ("eps_CBD",) and s.params["eps_CBD"] == 2000.0
    scan = build_sets(SPACE, "st", BEST, {}, scans=[parse_scan("sigma_AM=1.0:1.2:3")], allow_outside=True)
    assert [s.outside for s in scan] == [(), (), ("sigma_AM",)]


@pytest.mark.parametrize("items, where, field, words", [
    (["eps_XX=1"], "--set", "eps_XX", "not a Table S1 key"),
    (["kn=0.2"], "--set", "kn", "fixed at 0.1"),
    (["eps_AM=abc"], "--set", "eps_AM", "not a number"),
    (["eps_AM=nan"], "--set", "eps_AM", "not a finite number"),
    (["eps_AM=-1"], "--set", "eps_AM", "must be positive"),
])
def test_bad_set_values(items, where, field, words):
    e = _err(build_sets, SPACE, "st", BEST, parse_assignments(items), allow_outside=True)
    assert (e.where, e.field) == (where, field) and words in e.message


@pytest.mark.parametrize("items, words", [(["eps_AM"], "expected KEY=VALUE"), (["=3"], "expected KEY=VALUE"),
                                          (["eps_AM=1", "eps_AM=2"], "given twice")])
def test_malformed_assignments(items, words):
    assert words in _err(parse_assignments, items).message


@pytest.mark.parametrize("text, words", [
    ("eps_AM=1:2", "expected KEY=LOW:HIGH:N"), ("eps_AM", "expected KEY=LOW:HIGH:N"),
    ("eps_AM=1:2:x", "whole number"), ("eps_AM=1:2:1", "N must be 2 to"), ("eps_AM=2:1:3", "LOW must be below"),
    ("eps_AM=a:2:3", "not a number"), ("eps_AM=1:inf:3", "not a finite number"),
])
def test_malformed_scans(text, words):
    e = _err(parse_scan, text)
    assert e.where == "--scan" and words in e.message


def test_nothing_to_run_and_no_best_to_complete_from():
    assert "nothing to run" in _err(build_sets, SPACE, "st", BEST, {}).message
    e = _err(build_sets, SPACE, "st", None, parse_assignments(["eps_AM=2"]))
    assert "no completed trial to take sigma_AM, eps_CBD from" in e.message
    (s,) = build_sets(SPACE, "st", None, parse_assignments(["eps_AM=2", "sigma_AM=1", "eps_CBD=3"]))
    assert all(math.isfinite(v) for v in s.params.values())


@pytest.mark.parametrize("text, field", [("", "(top level)"), ("a: 1\n", "(top level)"), ("- 3\n", "sets[0]"),
                                         ("[1, {\n", "(file)"), ("- {eps_AM: 1}\n- {}\n", "sets[1]")])
def test_bad_sets_files(tmp_path, text, field):
    f = tmp_path / "sets.yaml"
    f.write_text(text)
    e = _err(read_sets_file, f)
    assert (e.where, e.field) == (str(f), field)
    assert _err(read_sets_file, tmp_path / "missing.yaml").message == "sets file not found"


@pytest.mark.parametrize("data, field, words", [
    (b"- {eps_AM: 1, eps_AM: 2}\n", "[0].eps_AM", "given twice"),
    (b"sets:\n  - eps_AM: 1\n    sigma_AM: 1.0\n    eps_AM: 2\n", "sets[0].eps_AM", "given twice"),
    (b"- {eps_AM: 1}\n# \xb5m\n", "(file)", "not UTF-8"),
])
def test_sets_file_with_a_key_twice_or_not_utf8(tmp_path, data, field, words):
    """The one YAML reader of the CLI (``objectives.yamlfile``): a repeated key is refused, not
    silently the last; a file that is not UTF-8 is one error, not a traceback."""
    f = tmp_path / "sets.yaml"
    f.write_bytes(data)
    e = _err(read_sets_file, f)
    assert (e.where, e.field) == (str(f), field) and words in e.message


def test_file_values_are_checked_with_their_position(tmp_path):
    f = tmp_path / "sets.yaml"
    f.write_text("- {eps_CBD: 0.5}\n- {eps_CBD: 5000}\n")
    e = _err(build_sets, SPACE, "st", BEST, {}, read_sets_file(f), str(f))
    assert (e.where, e.field) == (str(f), "sets[1].eps_CBD")
