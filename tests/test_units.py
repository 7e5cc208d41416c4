"""Unit conversions between LAMMPS ``units micro`` and SI (sim_backends/lammps/units.py).

Expectations are derived here from SI base conversions, not from the module's constants:
1 pg = 1e-15 kg, 1 um = 1e-6 m, 1 us = 1e-6 s, 1 atm = 101325 Pa (exact).
"""

from __future__ import annotations

import pytest

from sim_backends.lammps import units

KG_PER_PG = 1e-15
M_PER_UM = 1e-6
S_PER_US = 1e-6
PA_PER_ATM = 101_325.0

# derived SI values of one micro unit
PA_PER_MICRO_P = KG_PER_PG / (M_PER_UM * S_PER_US**2)  # pg um^-1 us^-2 -> Pa (= 1e3)
PA_S_PER_MICRO_ETA = KG_PER_PG / (M_PER_UM * S_PER_US)  # pg um^-1 us^-1 -> Pa s (= 1e-3)
G_CM3_PER_MICRO_RHO = (KG_PER_PG * 1e3) / ((M_PER_UM * 1e2) ** 3)  # pg um^-3 -> g cm^-3 (= 1)


def test_derived_si_factors_are_what_the_notes_say():
    # sanity of the first-principles derivation itself (MODEL_NOTES: 1 kPa, 1 mPa s, 1 g/cm^3)
    assert PA_PER_MICRO_P == pytest.approx(1e3, rel=1e-12)
    assert PA_S_PER_MICRO_ETA == pytest.approx(1e-3, rel=1e-12)
    assert G_CM3_PER_MICRO_RHO == pytest.approx(1.0, rel=1e-12)


def test_one_atm_is_101_325_micro_pressure_units():
    assert units.atm_to_micro_pressure(1.0) == pytest.approx(101.325, rel=1e-12)
    assert units.atm_to_micro_pressure(1.0) == pytest.approx(PA_PER_ATM / PA_PER_MICRO_P, rel=1e-12)
    assert units.atm_to_micro_pressure(2.5) == pytest.approx(2.5 * 101.325, rel=1e-12)
    assert units.atm_to_micro_pressure(0.0) == 0.0


def test_micro_pressure_to_pa():
    assert units.micro_pressure_to_pa(1.0) == pytest.approx(PA_PER_MICRO_P, rel=1e-12)
    assert units.micro_pressure_to_pa(101.325) == pytest.approx(101_325.0, rel=1e-12)
    assert units.micro_pressure_to_pa(-3.0) == pytest.approx(-3000.0, rel=1e-12)


@pytest.mark.parametrize("rho", [0.9, 1.64, 1.90, 4.75])
def test_density_g_cm3_and_pg_um3_are_numerically_identical(rho):
    assert units.micro_density_to_g_cm3(rho) == pytest.approx(rho * G_CM3_PER_MICRO_RHO, rel=1e-12)
    assert units.g_cm3_to_micro_density(rho) == pytest.approx(rho / G_CM3_PER_MICRO_RHO, rel=1e-12)
    assert units.micro_density_to_g_cm3(units.g_cm3_to_micro_density(rho)) == pytest.approx(rho, rel=1e-12)


def test_viscosity_one_micro_unit_is_one_mpa_s():
    assert units.micro_viscosity_to_pa_s(1.0) == pytest.approx(PA_S_PER_MICRO_ETA, rel=1e-12)
    assert units.micro_viscosity_to_pa_s(1.0) == pytest.approx(1e-3, rel=1e-12)
    # 7.48 Pa s (Li-ion target) is 7480 micro units
    assert units.micro_viscosity_to_pa_s(7480.0) == pytest.approx(7.48, rel=1e-12)


def test_shear_rate_18_per_s_is_1_8e_minus_5_per_us():
    assert units.per_s_to_micro_rate(18.0) == pytest.approx(18.0 * S_PER_US, rel=1e-12)
    assert units.per_s_to_micro_rate(18.0) == pytest.approx(1.8e-5, rel=1e-12)
    assert units.per_s_to_micro_rate(125.0) == pytest.approx(1.25e-4, rel=1e-12)


def test_micro_time_to_s():
    assert units.micro_time_to_s(1.0) == pytest.approx(S_PER_US, rel=1e-12)
    # the seed's viscosity runs: 7e7 steps of 0.001 us = 7e4 us = 0.07 s
    assert units.micro_time_to_s(7e7 * 0.001) == pytest.approx(0.07, rel=1e-12)
