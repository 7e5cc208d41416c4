"""Pure parts of the viscosity measurement: the early-stopping test on block means, the
shear deck's loop, and the plan of simulated rates and run lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calib.fidelity import Fidelity
from calib.stages import rate_plans
from calib.study import ViscositySettings
from sim_backends.lammps.shear import ShearRunSpec, segment_steady, shear_deck


def test_segment_steady_stops_at_the_first_agreeing_pair():
    w = 4
    # segment means 10, 5, 3.0, 3.0 (exactly): segments 3 and 4 agree first
    series = [10] * w + [5] * w + [2.9, 3.1, 2.9, 3.1] + [3.1, 2.9, 3.1, 2.9]
    ss = segment_steady(series, w, z=2.0)
    assert ss.converged
    assert ss.start_block == 2 * w and ss.n_blocks == 2 * w
    assert ss.mean == pytest.approx(3.0)
    assert ss.sem == pytest.approx(np.std(series[2 * w:], ddof=1) / math.sqrt(2 * w))


def test_segment_steady_flags_a_ramp():
    ramp = np.linspace(0.0, 10.0, 40) + 0.01 * np.random.default_rng(1).standard_normal(40)
    ss = segment_steady(ramp, 8)
    assert not ss.converged
    assert ss.start_block == 24 and ss.n_blocks == 16  # the last two segments
    assert ss.mean == pytest.approx(float(np.mean(ramp[24:])))


def test_segment_steady_respects_min_segments():
    flat = 1.0 + 0.01 * np.random.default_rng(2).standard_normal(32)
    assert segment_steady(flat, 8, min_segments=2).start_block == 0
    ss = segment_steady(flat, 8, min_segments=3)
    assert ss.start_block == 8 and ss.converged
    assert not segment_steady(flat, 8, min_segments=5).converged  # never allowed to stop


def test_segment_steady_too_short():
    assert not segment_steady([1.0, 1.1, 0.9], 4).converged


def _spec(**kw) -> ShearRunSpec:
    base = dict(state_file="../final.restart", pair_lines=("pair_style lj/cut 2.5", "pair_coeff * * 1 1"),
                shear_rate=0.05, temperature=1.0, tdamp=0.5, timestep=0.005, block_steps=100,
                segment_blocks=4, max_segments=5)
    base.update(kw)
    return ShearRunSpec(**base)


def test_deck_loops_over_segments_and_stops_on_the_same_test():
    deck = shear_deck(_spec(min_segments=3, z=2.5))
    assert "variable seg loop 5" in deck
    assert "run 400" in deck and deck.count("run ") == 1
    assert "fix seg_stats all ave/time 100 4 400 v_blk v_blk2" in deck
    assert "v_segments_done >= 3" in deck and "2.5*sqrt(" in deck
    assert 'if "${steady} > 0" then "jump SELF shear_done"' in deck
    assert "read_restart ../final.restart" in deck


def test_fixed_length_deck_has_no_stop():
    deck = shear_deck(_spec(early_stop=False))
    assert "jump SELF shear_done" not in deck and "variable seg loop 5" in deck
    assert _spec().steps == 5 * 4 * 100
    assert _spec().strain == pytest.approx(0.05 * 2000 * 0.005)


@pytest.mark.parametrize("kw", [dict(shear_rate=0.0), dict(segment_blocks=1), dict(block_steps=105),
                                dict(min_segments=1), dict(max_segments=0)])
def test_bad_shear_specs(kw):
    with pytest.raises(ValueError):
        _spec(**kw)


def _fid(**kw) -> Fidelity:
    return Fidelity(n_beads=100, equilibration_steps=1000, averaging_steps=1000, timestep_us=0.001,
                    shear_block_steps=1000, shear_segment_blocks=8, **kw)


def test_rate_plans_identity_and_scaled():
    # identity: 18 1/s = 1.8e-5 1/us; a segment of 8000 steps x 0.001 us reaches strain 1.44e-4
    p = rate_plans([18.0], ViscositySettings(), _fid(shear_max_steps=96_000))[0]
    assert p.rate_sim_per_us == pytest.approx(1.8e-5)
    assert p.max_segments == 12  # capped by shear_max_steps
    assert p.min_segments > p.max_segments  # strain 1 is out of reach: never converges
    # scaled x1000: 0.018 1/us, 0.144 strain per segment
    p = rate_plans([18.0, 125.0], ViscositySettings(rate_scale=1000, min_strain=1.0, max_strain=10.0),
                   _fid(shear_max_steps=960_000))
    assert p[0].rate_sim_per_us == pytest.approx(0.018)
    assert p[0].min_segments == 7 and p[0].max_segments == 70  # ceil(1/0.144), ceil(10/0.144)
    assert p[1].min_segments == 2 and p[1].max_segments == 10  # 1.0 strain per segment
    assert [x.index for x in p] == [0, 1] and p[1].rate_exp_per_s == 125.0


def test_viscosity_settings_validation():
    with pytest.raises(ValueError):
        ViscositySettings(shear_rates_per_s=(10.0, 5.0))
    with pytest.raises(ValueError):
        ViscositySettings(min_strain=5.0, max_strain=1.0)
    with pytest.raises(ValueError):
        ViscositySettings(not_converged="ignore")  # type: ignore[arg-type]
