"""build_slurry_system (sim_backends/lammps/beads.py) on the seed's SSB formulation.

Expected counts are computed here independently: with mean particle mass <m_p> of each
phase (number-weighted over its size classes, rho * pi/6 * d^3), the total mass M that gives
n beads solves sum_p w_p * M / <m_p> = n, and N_p = w_p * M / <m_p>.
"""

from __future__ import annotations

import math

import pytest

from sim_backends.lammps.beads import Formulation, Phase, SizeClass, build_slurry_system

# formulation of the seed paper (MODEL_NOTES + experiments_data/ssb_nmc622_lpscl)
AM = dict(w=0.69, rho=4.75, classes=[(10.0, 1.0)], factor=1.14)
SE = dict(w=0.276, rho=1.64, classes=[(2.0, 0.35), (4.0, 0.30), (6.0, 0.18), (8.0, 0.11), (10.0, 0.06)],
          factor=1.14)
CBD = dict(w=0.034, rho=0.9, classes=[(7.5, 1.0)], factor=1.0)
SPEC = {"AM": AM, "SE": SE, "CBD": CBD}


def _formulation() -> Formulation:
    return Formulation(phases=tuple(
        Phase(name=name, weight_fraction=s["w"], density_g_cm3=s["rho"],
              size_classes=tuple(SizeClass(d, f) for d, f in s["classes"]),
              slurry_diameter_factor=s["factor"])
        for name, s in SPEC.items()
    ))


def _sphere_mass(rho: float, d: float) -> float:
    return rho * math.pi / 6.0 * d**3


def _expected_exact_counts(n: int) -> list[tuple[str, float, float]]:
    """(phase, dry diameter, exact count) in AM, SE, CBD order, ascending diameter."""
    mean_mass = {p: sum(f * _sphere_mass(s["rho"], d) for d, f in s["classes"]) for p, s in SPEC.items()}
    total_mass = n / sum(SPEC[p]["w"] / mean_mass[p] for p in SPEC)
    out = []
    for p in ("AM", "SE", "CBD"):
        n_phase = SPEC[p]["w"] * total_mass / mean_mass[p]
        for d, f in sorted(SPEC[p]["classes"]):
            out.append((p, d, n_phase * f))
    return out


def test_expected_counts_helper_matches_hand_numbers():
    # hand check of the helper at paper scale: AM particle 4.75*pi/6*1000 = 2487.09 pg,
    # SE mean 1.64*pi/6*(0.35*8+0.30*64+0.18*216+0.11*512+0.06*1000) = 1.64*pi/6*177.2
    assert _sphere_mass(4.75, 10.0) == pytest.approx(2487.094, rel=1e-5)
    exact = _expected_exact_counts(5089)
    assert sum(c for _, _, c in exact) == pytest.approx(5089, rel=1e-12)
    am = exact[0][2]
    se = sum(c for p, _, c in exact if p == "SE")
    cbd = exact[-1][2]
    m_am = 4.75 * math.pi / 6 * 1000
    m_se = 1.64 * math.pi / 6 * 177.2
    m_cbd = 0.9 * math.pi / 6 * 7.5**3
    assert am * m_am / (am * m_am + se * m_se + cbd * m_cbd) == pytest.approx(0.69, rel=1e-9)


@pytest.mark.parametrize("n", [200, 500, 5089])
def test_counts_sum_and_each_type_within_one_bead(n):
    system = build_slurry_system(_formulation(), n)
    assert system.n_beads == n
    assert sum(t.count for t in system.types) == n
    expected = _expected_exact_counts(n)
    assert len(system.types) == len(expected) == 7
    for t, (phase, d, exact) in zip(system.types, expected):
        assert t.phase == phase
        assert t.dry_diameter_um == pytest.approx(d)
        assert abs(t.count - exact) < 1.0, (t, exact)
        assert t.count >= 0
    assert [t.type_id for t in system.types] == list(range(1, 8))


def _rounding_bound(n: int) -> float:
    """Worst-case mass-fraction error when every type is off by less than one bead:
    (sum of one bead of each type) / (exact total mass), times 2 for the changed denominator."""
    exact = _expected_exact_counts(n)
    masses = [_sphere_mass(SPEC[p]["rho"], d) for p, d, _ in exact]
    total = sum(c * m for (_, _, c), m in zip(exact, masses))
    return 2 * sum(masses) / total


@pytest.mark.parametrize("n", [200, 500, 5089])
def test_mass_fractions_approach_formulation(n):
    tol = 0.005 if n == 5089 else _rounding_bound(n)
    assert tol < 0.12
    system = build_slurry_system(_formulation(), n)
    for phase, s in SPEC.items():
        m = sum(t.count * _sphere_mass(s["rho"], t.dry_diameter_um) for t in system.types if t.phase == phase)
        total = sum(t.count * _sphere_mass(SPEC[t.phase]["rho"], t.dry_diameter_um) for t in system.types)
        assert abs(m / total - s["w"]) <= tol, (phase, m / total)
        assert system.phase_mass_fraction(phase) == pytest.approx(m / total, rel=1e-12)


def test_paper_scale_phase_counts():
    # exact counts at 5089 beads (hand-computed from the formula above): AM ~ 625, CBD ~ 385
    system = build_slurry_system(_formulation(), 5089)
    exact = _expected_exact_counts(5089)
    assert abs(system.phase_count("AM") - exact[0][2]) < 1
    assert abs(system.phase_count("CBD") - exact[-1][2]) < 1
    assert 620 <= system.phase_count("AM") <= 630
    assert 380 <= system.phase_count("CBD") <= 390


@pytest.mark.parametrize("n", [200, 500, 5089])
def test_slurry_diameters_and_bead_masses(n):
    system = build_slurry_system(_formulation(), n)
    expected_slurry_d = {("AM", 10.0): 11.4, ("SE", 2.0): 2.28, ("SE", 4.0): 4.56, ("SE", 6.0): 6.84,
                         ("SE", 8.0): 9.12, ("SE", 10.0): 11.4, ("CBD", 7.5): 7.5}
    seen = set()
    for t in system.types:
        key = (t.phase, t.dry_diameter_um)
        seen.add(key)
        assert t.diameter_um == pytest.approx(expected_slurry_d[key], rel=1e-12)
        dry_mass = SPEC[t.phase]["rho"] * math.pi / 6.0 * t.dry_diameter_um**3
        assert t.mass_pg == pytest.approx(dry_mass, rel=1e-12)
        assert t.lammps_density * math.pi / 6.0 * t.diameter_um**3 == pytest.approx(t.mass_pg, rel=1e-12)
        assert t.volume_um3 == pytest.approx(math.pi / 6.0 * expected_slurry_d[key] ** 3, rel=1e-12)
    assert seen == set(expected_slurry_d)


def test_enlarged_beads_have_lower_lammps_density():
    system = build_slurry_system(_formulation(), 500)
    am = system.types_of("AM")[0]
    # same mass in a sphere 1.14x wider: density / 1.14^3
    assert am.lammps_density == pytest.approx(4.75 / 1.14**3, rel=1e-12)
    cbd = system.types_of("CBD")[0]
    assert cbd.lammps_density == pytest.approx(0.9, rel=1e-12)


@pytest.mark.parametrize("n", [0, -5])
def test_non_positive_bead_count_raises(n):
    with pytest.raises(ValueError):
        build_slurry_system(_formulation(), n)
