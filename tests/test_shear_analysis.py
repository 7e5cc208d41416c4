"""Pure parts of the viscosity measurement: the early-stopping test on block means, the
shear deck's loop, and the plan of simulated rates and run lengths."""

from __future__ import annotations

import numpy as np
import pytest

from calib.spec.fidelity import Fidelity
from calib.stages.slurry_runs import rate_plans
from calib.stages.slurry_settings import ViscositySettings
from sim_backends.lammps.shear import (ShearRunSpec, batch_mean, blocking_sem, segment_steady, shear_deck,
                                      window_test)


def test_window_test_by_hand():
    ok, mean, sem = window_test([1.0, 1.02, 0.98, 1.0], z=2.0, precision=0.05)
    assert ok and mean == pytest.approx(1.0)
    assert sem == pytest.approx(np.std([1.0, 1.02, 0.98, 1.0], ddof=1) / 2)
    # halves 1.0 and 2.0 apart by far more than z standard errors
    assert not window_test([1.0, 1.01, 2.0, 2.01])[0]
    # flat halves but too noisy for 5 % precision
    assert not window_test([1.0, 0.5, 0.5, 1.0], precision=0.05)[0]
    assert window_test([1.0, 0.5, 0.5, 1.0], precision=0.5)[0]


def test_segment_steady_stops_at_the_first_passing_window():
    w = 2
    series = [10, 10, 5, 5] + [3.0, 3.02, 2.98, 3.0, 3.01, 2.99, 3.0, 3.0] + [3.0, 3.0] * 3
    ss = segment_steady(series, w, window=4, precision=0.05)
    assert ss.converged
    assert ss.start_block == 4 and ss.n_blocks == 8  # segments 3-6: the first window after the transient
    assert ss.mean == pytest.approx(float(np.mean(series[4:12])))
    means = np.asarray(series[4:12]).reshape(4, 2).mean(1)
    assert ss.sem == pytest.approx(means.std(ddof=1) / 2)


def test_segment_steady_flags_a_ramp():
    ramp = np.linspace(0.0, 10.0, 40) + 0.01 * np.random.default_rng(1).standard_normal(40)
    ss = segment_steady(ramp, 4, window=4)
    assert not ss.converged
    assert ss.start_block == 24 and ss.n_blocks == 16  # the last window
    assert ss.mean == pytest.approx(float(np.mean(ramp[24:])))


def test_segment_steady_respects_min_segments():
    flat = 1.0 + 0.01 * np.random.default_rng(2).standard_normal(64)
    assert segment_steady(flat, 8, window=4).start_block == 0
    ss = segment_steady(flat, 8, window=4, min_segments=6)
    assert ss.start_block == 16 and ss.converged
    assert not segment_steady(flat, 8, window=4, min_segments=9).converged  # never allowed to stop


def test_batch_mean_skips_the_transient():
    v = [9.0] * 4 + [1.0, 1.2] * 8
    bm = batch_mean(v, 2, skip_segments=2)
    assert bm.mean == pytest.approx(1.1) and bm.n_blocks == 16 and bm.sem == pytest.approx(0.0)


def test_segment_steady_too_short():
    assert not segment_steady([1.0, 1.1, 0.9], 4).converged


def _spec(**kw) -> ShearRunSpec:
    base = dict(state_file="../final.restart", pair_lines=("pair_style lj/cut 2.5", "pair_coeff * * 1 1"),
                shear_rate=0.05, temperature=1.0, tdamp=0.5, timestep=0.005, block_steps=100,
                segment_blocks=4, max_segments=10, min_segments=6, window=4)
    base.update(kw)
    return ShearRunSpec(**base)


def test_deck_loops_over_segments_and_stops_on_the_window_test():
    deck = shear_deck(_spec(z=2.5, precision=0.04))
    assert "variable seg loop 10" in deck
    assert "run 400" in deck and deck.count("\nrun ") == 1
    assert "fix seg_stats all ave/time 100 4 400 v_blk" in deck
    assert "v_segments_done >= 6" in deck and "2.5*sqrt(1)*v_half_sd" in deck
    assert "v_win_sd/sqrt(4) <= 0.040000000000000001*abs(v_win_mean)" in deck
    assert "variable w4 equal $(f_seg_stats:%.17g)" in deck and "variable w1 equal ${w2}" in deck
    assert 'if "${steady} > 0" then "variable stopped equal 1" "jump SELF shear_done"' in deck
    assert "read_restart ../final.restart" in deck
    assert 'format " %.15g"' in deck


def test_fixed_length_deck_has_no_stop():
    deck = shear_deck(_spec(early_stop=False))
    assert "jump SELF shear_done" not in deck and "variable seg loop 10" in deck
    assert _spec().steps == 10 * 4 * 100
    assert _spec().strain == pytest.approx(0.05 * 4000 * 0.005)


@pytest.mark.parametrize("kw", [dict(shear_rate=0.0), dict(segment_blocks=0), dict(block_steps=105),
                                dict(block_steps=10), dict(window=3), dict(window=2), dict(min_segments=3),
                                dict(max_segments=0), dict(precision=0.0)])
def test_bad_shear_specs(kw):
    with pytest.raises(ValueError):
        _spec(**kw)


def _fid(**kw) -> Fidelity:
    return Fidelity(n_beads=100, equilibration_steps=1000, averaging_steps=4000, timestep_us=0.001,
                    shear_block_steps=1000, shear_segment_blocks=4, **kw)


def test_rate_plans_identity_and_scaled():
    # identity: 18 1/s = 1.8e-5 1/us: a block of 1000 steps x 0.001 us is strain 1.8e-5, so a
    # segment of strain 0.5 would need 27,778 blocks: capped by shear_max_steps to one segment
    p = rate_plans([18.0], ViscositySettings(), _fid(shear_max_steps=96_000))[0]
    assert p.rate_sim_per_us == pytest.approx(1.8e-5)
    assert p.segment_blocks == 96 and p.max_segments == 1  # one segment, all of shear_max_steps
    assert p.min_segments > p.max_segments  # never converges: the window is out of reach
    # scaled x1000: 0.018 1/us, 0.018 strain per block -> 28 blocks (0.504) per segment
    s = ViscositySettings(rate_scale=1000, min_strain=1.0, max_strain=10.0, segment_strain=0.5, window_segments=6)
    p = rate_plans([18.0, 125.0], s, _fid(shear_max_steps=10_000_000))
    assert p[0].rate_sim_per_us == pytest.approx(0.018)
    assert p[0].segment_blocks == 28
    assert p[0].strain_per_segment(_fid()) == pytest.approx(0.504)
    assert p[0].min_segments == 2 + 6 and p[0].max_segments == 20  # ceil(1/0.504) + window, ceil(10/0.504)
    # 0.125 strain per block: 4 blocks (the fidelity's minimum) = 0.5 per segment
    assert p[1].segment_blocks == 4 and p[1].min_segments == 8 and p[1].max_segments == 20
    assert [x.index for x in p] == [0, 1] and p[1].rate_exp_per_s == 125.0
    capped = rate_plans([18.0], s, _fid(shear_max_steps=200_000))[0]
    assert capped.max_segments == 200_000 // 28_000


def test_rate_plans_leave_room_for_one_window_past_max_strain():
    """A fast rate whose segments the block floor makes long (strain 2 each): max_strain 10
    would allow 5 segments, fewer than min_strain + window needs; the plan runs to the end of
    the first possible window instead (steps allowing)."""
    s = ViscositySettings(rate_scale=1000, min_strain=1.0, max_strain=10.0, segment_strain=0.5, window_segments=6)
    fid = Fidelity(n_beads=100, equilibration_steps=1000, averaging_steps=4000, timestep_us=0.001,
                   shear_block_steps=10_000, shear_segment_blocks=4, shear_max_steps=70_000_000)
    p = rate_plans([50.0], s, fid)[0]
    assert p.strain_per_segment(fid) == pytest.approx(2.0)
    assert p.min_segments == 1 + 6 and p.max_segments == 7


def test_viscosity_settings_validation():
    with pytest.raises(ValueError):
        ViscositySettings(shear_rates_per_s=(10.0, 5.0))
    with pytest.raises(ValueError):
        ViscositySettings(min_strain=5.0, max_strain=1.0)
    with pytest.raises(ValueError):
        ViscositySettings(not_converged="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ViscositySettings(window_segments=5)
    with pytest.raises(ValueError):
        _fid(shear_max_steps=500)  # less than one block


def test_blocking_sem_sees_correlation():
    rng = np.random.default_rng(3)
    white = rng.standard_normal(4096)
    naive = white.std(ddof=1) / 64
    assert blocking_sem(white) == pytest.approx(naive, rel=0.35)
    # each value repeated 16 times: 16x fewer independent samples, SE 4x the naive one
    sticky = np.repeat(rng.standard_normal(256), 16)
    assert blocking_sem(sticky) == pytest.approx(4 * sticky.std(ddof=1) / 64, rel=0.35)
    assert blocking_sem(sticky) > 3 * sticky.std(ddof=1) / 64
