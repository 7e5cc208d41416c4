"""build_slurry_system / dried_system (sim_backends/lammps/beads.py) on the seed's SSB
formulation, by the group's public counting convention (Slurry/init_structure.txt): every
phase is counted from its *solid* mass (AM, SE: dry particles; CBD: the solid 3.0 um bead at
0.9 g/cm^3), and each slurry CBD bead (7.5 um at 0.9 g/cm^3) carries CBD plus solvent.

Expected counts are computed here independently of the module.
"""

from __future__ import annotations

import math

import pytest

from sim_backends.lammps.beads import Formulation, Phase, SizeClass, SolidBead, build_slurry_system, dried_system

AM = dict(w=0.69, rho=4.75, classes=[(10.0, 1.0)], factor=1.14)
SE = dict(w=0.276, rho=1.64, classes=[(2.0, 0.35), (4.0, 0.30), (6.0, 0.18), (8.0, 0.11), (10.0, 0.06)],
          factor=1.14)
CBD = dict(w=0.034, rho=0.9, classes=[(7.5, 1.0)], factor=1.0)
SPEC = {"AM": AM, "SE": SE, "CBD": CBD}
SOLID_CBD = (3.0, 0.9)  # um, g/cm^3


def _formulation() -> Formulation:
    return Formulation(phases=tuple(
        Phase(name=name, weight_fraction=s["w"], density_g_cm3=s["rho"],
              size_classes=tuple(SizeClass(d, f) for d, f in s["classes"]),
              slurry_diameter_factor=s["factor"], solid=SolidBead(*SOLID_CBD) if name == "CBD" else None)
        for name, s in SPEC.items()
    ))


def _sphere_mass(rho: float, d: float) -> float:
    return rho * math.pi / 6.0 * d**3


def test_hand_computed_public_convention_at_500_beads():
    # One solid mass per phase, by hand: AM 4.75*pi/6*1000 = 2487.09 pg; SE mean
    # 1.64*pi/6*177.2 = 152.16 pg; solid CBD 0.9*pi/6*27 = 12.723 pg. Beads per pg of dry
    # mass: 0.69/2487.09 + 0.276/152.16 + 0.034/12.723 = 2.7743e-4 + 1.8139e-3 + 2.6723e-3
    # = 4.7637e-3, so 500 beads carry M = 104,960 pg: AM 29.12, SE 190.4, CBD 280.5.
    system = build_slurry_system(_formulation(), 500)
    assert system.phase_count("AM") == 29
    assert system.phase_count("SE") == 190
    assert system.phase_count("CBD") == 281
    cbd = system.types_of("CBD")[0]
    assert cbd.diameter_um == 7.5 and cbd.mass_pg == pytest.approx(198.80, rel=1e-4)  # 0.9*pi/6*421.875
    assert cbd.solid_mass_pg == pytest.approx(12.723, rel=1e-4)
    assert cbd.lj_diameter_um == 3.0  # LJ multipliers act on the solid CBD bead
    # solvent = 281 x (198.80 - 12.723) pg; dry = AM + SE + CBD solid masses
    dry = 29 * 2487.09 + sum(t.count * _sphere_mass(1.64, t.dry_diameter_um) for t in system.types_of("SE")) \
        + 281 * 12.723
    assert system.solvent_mass_pg == pytest.approx(281 * (198.80 - 12.723), rel=1e-4)
    assert system.solids_content == pytest.approx(dry / (dry + 281 * (198.80 - 12.723)), rel=1e-4)
    assert 0.66 < system.solids_content < 0.67
    # CBD is about 56 % of the beads (the wet-bead count gave about 8 %)
    assert system.phase_count("CBD") / 500 == pytest.approx(0.56, abs=0.01)


def _expected_exact_counts(n: int) -> list[tuple[str, float, float]]:
    """(phase, diameter, exact count) in AM, SE, CBD order, ascending diameter."""
    solid = {p: sum(f * _sphere_mass(s["rho"], d) for d, f in s["classes"]) for p, s in SPEC.items()}
    solid["CBD"] = _sphere_mass(SOLID_CBD[1], SOLID_CBD[0])
    dry_mass = n / sum(SPEC[p]["w"] / solid[p] for p in SPEC)
    return [(p, d, SPEC[p]["w"] * dry_mass / solid[p] * f) for p in ("AM", "SE", "CBD")
            for d, f in sorted(SPEC[p]["classes"])]


@pytest.mark.parametrize("n", [200, 500, 2000, 5089])
def test_counts_sum_and_each_type_within_one_bead(n):
    system = build_slurry_system(_formulation(), n)
    assert system.n_beads == n
    expected = _expected_exact_counts(n)
    assert len(system.types) == len(expected) == 7
    for t, (phase, d, exact) in zip(system.types, expected):
        assert t.phase == phase
        assert abs(t.count - exact) < 1.0, (t, exact)
    assert [t.type_id for t in system.types] == list(range(1, 8))


@pytest.mark.parametrize("n", [500, 2000, 5089])
def test_dried_system_reproduces_the_dry_formulation_within_one_bead_per_phase(n):
    system = build_slurry_system(_formulation(), n)
    dried = dried_system(system, _formulation())
    masses = {p: [t.mass_pg for t in dried.types_of(p)] for p in SPEC}
    total = dried.total_mass_pg
    assert dried.solvent_mass_pg == pytest.approx(0.0, abs=1e-6) and dried.solids_content == pytest.approx(1.0)
    for p, s in SPEC.items():
        # one bead more or less of the phase's heaviest type, against the phase's share
        tol = max(masses[p]) / total + s["w"] * max(max(v) for v in masses.values()) / total
        assert abs(dried.phase_mass_fraction(p) - s["w"]) <= tol, (p, dried.phase_mass_fraction(p))
    assert dried.phase_mass_fraction("CBD") == pytest.approx(0.034, abs=0.001)  # 3.4 wt% after drying
    assert system.phase_dry_mass_fraction("CBD") == pytest.approx(dried.phase_mass_fraction("CBD"), rel=1e-12)


def test_dried_beads_lose_their_shell_and_cbd_its_solvent():
    system = build_slurry_system(_formulation(), 500)
    dried = dried_system(system, _formulation())
    for s, d in zip(system.types, dried.types):
        assert d.count == s.count and d.type_id == s.type_id and d.lj_diameter_um == s.lj_diameter_um
        if d.phase == "CBD":
            assert d.diameter_um == 3.0 and d.mass_pg == pytest.approx(_sphere_mass(0.9, 3.0))
        else:
            assert s.diameter_um == pytest.approx(1.14 * s.dry_diameter_um)
            assert d.diameter_um == pytest.approx(1.02 * s.dry_diameter_um)  # the public exp_par
            assert d.mass_pg == s.mass_pg == pytest.approx(_sphere_mass(SPEC[d.phase]["rho"], d.dry_diameter_um))


def test_shell_factor_must_be_positive_and_solid_lighter_than_wet_bead():
    with pytest.raises(ValueError):
        Phase("AM", 1.0, 4.75, (SizeClass(10.0, 1.0),), slurry_diameter_factor=0.0)
    heavy = Formulation((Phase("AM", 0.9, 4.75, (SizeClass(10.0, 1.0),), 1.14),
                         Phase("CBD", 0.1, 0.9, (SizeClass(2.0, 1.0),), solid=SolidBead(3.0, 0.9))))
    with pytest.raises(ValueError, match="negative solvent"):
        build_slurry_system(heavy, 100)


@pytest.mark.parametrize("n", [0, -5])
def test_non_positive_bead_count_raises(n):
    with pytest.raises(ValueError):
        build_slurry_system(_formulation(), n)
