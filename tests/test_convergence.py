"""The plateau test on synthetic trajectories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sim_backends.lammps.convergence import blocking_sem, half_change, plateau_test


def test_relaxing_exponential_converges_once_relaxed():
    t = np.arange(200.0)
    rho = 1.9 - 0.5 * np.exp(-t / 20.0)  # relaxation time 20 blocks
    res = plateau_test(rho, window=20, tolerance_rel=0.005)
    assert res.converged
    # the halves of a window ending at block e differ by about 0.5 e^{-e/20} (e^{0.5}-1) x ... :
    # solve it exactly and compare with the first pass
    expected = next(e for e in range(20, 200) if abs(half_change(rho[e - 20:e])[0]) <= 0.005 * rho[e - 20:e].mean())
    assert res.first_pass == expected - 1
    assert 40 < res.first_pass < 120  # neither at once nor never
    early = plateau_test(rho[:40], window=20, tolerance_rel=0.005)
    assert not early.converged and early.first_pass is None


def test_plateau_with_noise_converges_at_once():
    rng = np.random.default_rng(7)
    rho = 1.9 + 0.002 * rng.standard_normal(100)
    res = plateau_test(rho, window=20, tolerance_rel=0.005)
    assert res.converged and res.first_pass == 19
    assert abs(res.change_rel) < 0.005 and res.window_mean == pytest.approx(1.9, rel=0.002)


def test_linear_drift_never_converges():
    rho = 1.5 + 0.002 * np.arange(300.0)  # +0.1 % of 2 g/cm^3 per block
    res = plateau_test(rho, window=20, tolerance_rel=0.005)
    assert not res.converged and res.first_pass is None
    assert res.change_rel == pytest.approx(20 * 0.002 / 2 / rho[-20:].mean())
    # a wider tolerance than the drift over half a window lets it pass: the test sees drift, not noise
    assert plateau_test(rho, window=20, tolerance_rel=0.05).converged


def test_windows_do_not_reach_back_into_the_ramp():
    rho = np.concatenate([np.linspace(0.5, 1.9, 10), np.full(10, 1.9)])
    assert plateau_test(rho, window=10, tolerance_rel=1e-6, start=10).first_pass == 19
    assert not plateau_test(rho[:15], window=10, tolerance_rel=1e-6, start=10).converged


@pytest.mark.parametrize("window", [3, 5, 2])
def test_window_must_be_even_and_at_least_four(window):
    with pytest.raises(ValueError):
        plateau_test(np.ones(10), window=window, tolerance_rel=0.01)


def test_blocking_sem_of_white_noise_is_the_naive_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1024)
    assert blocking_sem(x) == pytest.approx(x.std(ddof=1) / 32, rel=0.35)
