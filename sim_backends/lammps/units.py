"""The one place where LAMMPS ``units micro`` meet SI and the experiments' own units.

LAMMPS ``units micro`` (https://docs.lammps.org/units.html):
mass pg, length um, time us, energy pg um^2 us^-2 = 1e-15 J, force pg um us^-2 = 1 nN,
pressure pg um^-1 us^-2 = 1 kPa, dynamic viscosity pg um^-1 us^-1 = 1 mPa s,
temperature K, Boltzmann constant 1.3806504e-8 pg um^2 us^-2 K^-1.
"""

from __future__ import annotations

BOLTZMANN_MICRO = 1.3806504e-8
"""kB in units micro (pg um^2 us^-2 K^-1), the value LAMMPS's ``units micro`` uses."""

PA_PER_MICRO_PRESSURE = 1.0e3
"""1 pg um^-1 us^-2 = 1e-15 kg / (1e-6 m * 1e-12 s^2) = 1e3 Pa."""

PA_PER_ATM = 101_325.0
"""Standard atmosphere in Pa (exact by definition)."""

G_CM3_PER_MICRO_DENSITY = 1.0
"""1 pg um^-3 = 1e-12 g / 1e-12 cm^3 = 1 g cm^-3."""

PA_S_PER_MICRO_VISCOSITY = 1.0e-3
"""1 pg um^-1 us^-1 = 1e-15 kg / (1e-6 m * 1e-6 s) = 1e-3 Pa s."""

PER_S_PER_MICRO_RATE = 1.0e6
"""1 us^-1 = 1e6 s^-1."""

S_PER_MICRO_TIME = 1.0e-6
"""1 us = 1e-6 s."""


def atm_to_micro_pressure(p_atm: float) -> float:
    """Pressure in atm -> LAMMPS micro pressure (kPa). 1 atm = 101.325."""
    return p_atm * PA_PER_ATM / PA_PER_MICRO_PRESSURE


def micro_pressure_to_pa(p_micro: float) -> float:
    """LAMMPS micro pressure (kPa) -> Pa."""
    return p_micro * PA_PER_MICRO_PRESSURE


def micro_density_to_g_cm3(rho_micro: float) -> float:
    """LAMMPS micro mass density (pg um^-3) -> g cm^-3 (numerically equal)."""
    return rho_micro * G_CM3_PER_MICRO_DENSITY


def g_cm3_to_micro_density(rho_g_cm3: float) -> float:
    """g cm^-3 -> LAMMPS micro mass density (pg um^-3)."""
    return rho_g_cm3 / G_CM3_PER_MICRO_DENSITY


def micro_viscosity_to_pa_s(eta_micro: float) -> float:
    """LAMMPS micro dynamic viscosity (pg um^-1 us^-1) -> Pa s."""
    return eta_micro * PA_S_PER_MICRO_VISCOSITY


def per_s_to_micro_rate(rate_per_s: float) -> float:
    """Shear rate in s^-1 -> LAMMPS micro rate (us^-1)."""
    return rate_per_s / PER_S_PER_MICRO_RATE


def micro_time_to_s(t_us: float) -> float:
    """LAMMPS micro time (us) -> s."""
    return t_us * S_PER_MICRO_TIME
