"""pair_lines / ForceFieldParams (sim_backends/lammps/forcefield.py) on the SSB slurry system.

Expected coefficients are written out by hand from seed Table S1 (MODEL_NOTES.md) and the
one LJ diameter per type (the public inputs' convention, the same in every stage): the dry
AM 10 um and SE 2/4/6/8/10 um particles (not their 1.14 x slurry beads) and the solid CBD
bead, 3.0 um (not the 7.5 um slurry bead). Type numbering: 1 = AM, 2..6 = SE, 7 = CBD.
"""

from __future__ import annotations

import math

import pytest
from conftest import SEED_DRIED, SEED_SLURRY, ssb_system

from sim_backends.lammps.forcefield import (
    TABLE_S1_DRIED,
    TABLE_S1_KEYS,
    TABLE_S1_SLURRY,
    ForceFieldParams,
    pair_lines,
)


@pytest.fixture(scope="module")
def system():
    return ssb_system(500)


@pytest.fixture(scope="module")
def lines(system):
    return pair_lines(TABLE_S1_SLURRY, system)


def _coeffs(lines, style="lj/cut"):
    """{(i, j): (eps, sigma, rc)} from the LJ pair_coeff lines (printed to 6 significant digits,
    so values are compared with rel=1e-5)."""
    out = {}
    for ln in lines[1:-1]:
        tok = ln.split()
        assert tok[0] == "pair_coeff" and tok[3] == style, ln
        out[(int(tok[1]), int(tok[2]))] = tuple(float(x) for x in tok[4:7])
        assert len(tok) == 7, ln
    return out


def test_first_line_exact(lines):
    # rc_max: AM-AM and SE(10)-AM/SE(10) pairs, 1.5 * 10 = 15 (CBD is 2.2 * 3 = 6.6)
    assert lines[0] == "pair_style hybrid/overlay lj/cut 15 gran/hertz/history 0.1 0.1378 55 52.745 0.016 1"


def test_first_line_tangential_ratios(lines):
    tok = lines[0].split()
    assert tok[:3] == ["pair_style", "hybrid/overlay", "lj/cut"]
    assert float(tok[3]) == pytest.approx(1.5 * 10.0)
    assert tok[4] == "gran/hertz/history"
    kn, kt, gn, gt, xu, damp = (float(x) for x in tok[5:11])
    assert kn == pytest.approx(0.1)
    assert kt == pytest.approx(1.378 * kn, rel=1e-9)
    assert gn == pytest.approx(55.0)
    assert gt == pytest.approx(0.959 * gn, rel=1e-9)
    assert xu == pytest.approx(0.016)
    assert damp == 1
    assert len(tok) == 11


def test_one_lj_line_per_type_pair(lines, system):
    n_types = len(system.types)
    assert n_types == 7
    c = _coeffs(lines)
    assert len(lines) == 1 + n_types * (n_types + 1) // 2 + 1
    assert len(c) == 28
    assert set(c) == {(i, j) for i in range(1, 8) for j in range(i, 8)}


def test_am_am_line(lines):
    eps, sigma, rc = _coeffs(lines)[(1, 1)]
    assert eps == pytest.approx(1.0 * 10.0, rel=1e-5)
    assert sigma == pytest.approx(0.99 * 10.0, rel=1e-5)
    assert rc == pytest.approx(1.5 * 10.0, rel=1e-5)


def test_cbd_cbd_line(lines):
    eps, sigma, rc = _coeffs(lines)[(7, 7)]
    assert eps == pytest.approx(0.88 * 3.0, rel=1e-5)
    assert sigma == pytest.approx(0.97 * 3.0, rel=1e-5)
    assert rc == pytest.approx(2.2 * 3.0, rel=1e-5)


def test_se_small_am_cross_line_mixing(lines):
    # AM (10 um): eps 10, sigma 9.9, rc 15
    # SE 2 um class: eps 10.5*2 = 21, sigma 0.99*2 = 1.98, rc 1.5*2 = 3
    eps, sigma, rc = _coeffs(lines)[(1, 2)]
    assert eps == pytest.approx(math.sqrt(10.0 * 21.0), rel=1e-5)  # 14.4914...
    assert eps == pytest.approx(14.4914, rel=1e-5)
    assert sigma == pytest.approx((9.9 + 1.98) / 2, rel=1e-5)  # 5.94
    assert rc == pytest.approx((15.0 + 3.0) / 2, rel=1e-5)  # 9


def test_se_se_and_se_cbd_lines(lines):
    c = _coeffs(lines)
    eps, sigma, rc = c[(6, 6)]  # SE 10 um class (11.4 um bead in the slurry)
    assert (eps, sigma, rc) == pytest.approx((10.5 * 10.0, 0.99 * 10.0, 1.5 * 10.0), rel=1e-5)
    eps, sigma, rc = c[(3, 7)]  # SE 4 um with the solid CBD 3 um
    assert eps == pytest.approx(math.sqrt(10.5 * 4.0 * 0.88 * 3.0), rel=1e-5)
    assert sigma == pytest.approx((0.99 * 4.0 + 0.97 * 3.0) / 2, rel=1e-5)
    assert rc == pytest.approx((1.5 * 4.0 + 2.2 * 3.0) / 2, rel=1e-5)


def test_last_line_is_granular_for_all_pairs(lines):
    assert lines[-1] == "pair_coeff * * gran/hertz/history"


def test_lj_smooth_linear_substitutes_style(system, lines):
    smooth = pair_lines(TABLE_S1_SLURRY, system, lj_style="lj/smooth/linear")
    assert smooth[0] == "pair_style hybrid/overlay lj/smooth/linear 15 gran/hertz/history 0.1 0.1378 55 52.745 0.016 1"
    assert smooth[-1] == "pair_coeff * * gran/hertz/history"
    assert _coeffs(smooth, "lj/smooth/linear") == _coeffs(lines, "lj/cut")
    assert [ln.replace("lj/smooth/linear", "lj/cut") for ln in smooth] == lines


@pytest.mark.parametrize("style", ["lj/sf", "lj/cut/coul/cut", ""])
def test_unknown_lj_style_raises(system, style):
    with pytest.raises(ValueError):
        pair_lines(TABLE_S1_SLURRY, system, lj_style=style)


def test_from_mapping_accepts_exact_keys():
    p = ForceFieldParams.from_mapping(dict(SEED_SLURRY))
    assert p.as_dict() == SEED_SLURRY


def test_from_mapping_rejects_unknown_key():
    with pytest.raises(KeyError, match="eps_XX"):
        ForceFieldParams.from_mapping({**SEED_SLURRY, "eps_XX": 1.0})


def test_from_mapping_rejects_missing_key():
    values = dict(SEED_SLURRY)
    del values["xu"]
    with pytest.raises(KeyError, match="xu"):
        ForceFieldParams.from_mapping(values)


def test_table_s1_constants_hold_seed_values():
    assert TABLE_S1_SLURRY.as_dict() == SEED_SLURRY
    assert TABLE_S1_DRIED.as_dict() == SEED_DRIED
    assert set(TABLE_S1_KEYS) == set(SEED_SLURRY)
    assert len(TABLE_S1_KEYS) == 12
