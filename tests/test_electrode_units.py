"""Pure parts of the drying and calendering stages: dried beads, deck contents, status
parsing, porosity objectives, the film analysis on hand-placed spheres, composition checks
and the dataset/study validation of the new fields."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from calib.core.errors import InputError
from calib.stages.upstream_state import check_composition, state_bead_count
from objectives.dataset import CalenderedPorosity, DatasetError, Target, load_dataset
from objectives.porosity import calendered_porosity_error, dried_porosity_error
from sim_backends.lammps.beads import dried_system
from sim_backends.lammps.calendering import CalenderRunSpec, calender_deck, read_calender_status
from sim_backends.lammps.drying import DryingRunSpec, drying_deck, evaporation_lines
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, WallContact
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.lammps.placement import Placement, write_data_file
from sim_backends.microstructure import electrode_structure

from conftest import SSB_DATASET, ssb_formulation, ssb_system

WALL = WallContact(kn=100.0, gamma_n=10.0, xu=12.5)


def test_dried_system_shrinks_cbd_to_its_solid_bead_and_strips_the_shells():
    slurry = ssb_system(500)
    dried = dried_system(slurry, ssb_formulation())
    for old, new in zip(slurry.types, dried.types):
        if old.phase == "CBD":
            assert new.diameter_um == 3.0 and new.dry_diameter_um == 3.0
            assert new.mass_pg == pytest.approx(0.9 * math.pi / 6 * 27.0)  # pg um^-3 = g cm^-3
            assert new.lammps_density == pytest.approx(0.9)
        else:  # AM and SE lose their solvent shell (1.14 -> 1.02 x dry, public exp_par) at their dry mass
            assert old.diameter_um == pytest.approx(1.14 * old.dry_diameter_um)
            assert new.diameter_um == pytest.approx(1.02 * old.dry_diameter_um)
            assert new.mass_pg == old.mass_pg and new.lj_diameter_um == old.lj_diameter_um
    assert dried.n_beads == slurry.n_beads


def test_evaporation_lines_set_diameter_before_density():
    slurry = ssb_system(500)
    dried = dried_system(slurry, ssb_formulation())
    cbd = next(t for t in dried.types if t.phase == "CBD")
    am = next(t for t in dried.types if t.phase == "AM")
    lines = evaporation_lines(dried, slurry)
    assert len(lines) == 2 * len(dried.types)  # every type changes size
    assert lines[-2:] == [f"set type {cbd.type_id} diameter 3", f"set type {cbd.type_id} density 0.9"]
    assert lines[:2] == [f"set type {am.type_id} diameter 10.2",
                         f"set type {am.type_id} density {4.75 / 1.02**3:.10g}"]  # dry mass in a 1.02 x sphere


def test_wall_contact_uses_the_pair_law_ratios():
    assert WallContact.of(TABLE_S1_DRIED) == WALL
    assert WALL.args() == "hertz/history 100 137.8 10 9.59 12.5 1"


def test_drying_deck_barostats_z_then_mounts_on_the_collector():
    slurry = ssb_system(200)
    dried = dried_system(slurry, ssb_formulation())
    deck = drying_deck(slurry, dried, TABLE_S1_DRIED, DryingRunSpec(wall=WALL, equilibration_steps=1234,
                                                                     mount_steps=567))
    assert "boundary p p p" in deck and "read_data upstream.data" in deck
    # the public barostat: z only, ramped 40 kPa -> 1 atm = 101.325 kPa, damping 0.2 / 1000 us
    assert "fix dry_npt all npt/sphere temp 300 300 0.2 z 40 101.325 1000" in deck
    assert "langevin" not in deck[:deck.index("change_box all boundary p p f")]
    assert deck.index("run 1234") < deck.index("change_box all boundary p p f") < deck.index("run 567")
    assert "fix collector all wall/gran hertz/history 100 137.8 10 9.59 12.5 1 zplane ${cc_z} NULL" in deck
    assert deck.rstrip().endswith("write_data final.data")


@pytest.mark.parametrize("degree", [-1.0, 60.0, 75.0])
def test_calender_degree_outside_range_is_refused(degree):
    with pytest.raises(ValueError, match=r"\[0, 60\)"):
        CalenderRunSpec(degree_pct=degree, wall=WALL)


def test_calender_deck_moves_the_plane_to_the_degree_and_releases():
    deck = calender_deck(ssb_system(200), TABLE_S1_DRIED, CalenderRunSpec(degree_pct=30.0, wall=WALL,
                                                                          speed_um_per_us=0.25, hold_steps=111,
                                                                          release=True, release_steps=222))
    assert "variable target_z equal $(v_cc_z+0.7*v_t0)" in deck
    assert "variable piston_lin equal v_start_z-0.25*step*dt" in deck
    # the public kinematics by default: Nose-Hoover nvt/sphere (0.2 us) and a 1e-4 us step
    assert "fix cal_nvt all nvt/sphere temp 300 300 0.2" in deck and "timestep 0.0001" in deck
    assert "langevin" not in deck
    assert "fix piston all wall/gran/region hertz/history 100 137.8 10 9.59 12.5 1 region piston" in deck
    assert deck.index("run 111") < deck.index("unfix piston") < deck.index("run 222")
    held = calender_deck(ssb_system(200), TABLE_S1_DRIED, CalenderRunSpec(degree_pct=30.0, wall=WALL,
                                                                          release_steps=333))
    assert "unfix piston" not in held and "run 333" in held and "beyond_end" in held


def test_calender_status_is_parsed_and_escapes_fail(tmp_path: Path):
    (tmp_path / "calender_status.txt").write_text("t0 50.0 held 35.2 piston 35.0 beyond 0\nfinal 40.5\n")
    st = read_calender_status(tmp_path)
    assert (st.t0_um, st.held_um, st.piston_um, st.beyond, st.final_um) == (50.0, 35.2, 35.0, 0, 40.5)
    (tmp_path / "calender_status.txt").write_text("t0 50.0 held 45.0 piston 35.0 beyond 3\nfinal 48\n")
    with pytest.raises(SimulationFailed, match="3 bead"):
        read_calender_status(tmp_path)
    (tmp_path / "calender_status.txt").write_text("t0 50.0 held 35.1 piston 35.0 beyond 0\n"
                                                  "final 35.2 beyond_end 2\n")
    with pytest.raises(SimulationFailed, match="2 bead"):
        read_calender_status(tmp_path)
    (tmp_path / "calender_status.txt").write_text("t0 50.0 held 45.0\n")
    with pytest.raises(SimulationFailed, match="incomplete"):
        read_calender_status(tmp_path)


def _prov(kind="synthetic"):
    return {"source": "unit test", "kind": kind}


def test_porosity_objectives_on_known_values():
    t = Target(value=0.5, unit="1", provenance=_prov("measured"))
    e = dried_porosity_error(0.55, t)
    assert e.name == "dried_porosity" and e.error == pytest.approx(0.1)
    measured = CalenderedPorosity.model_validate({"points": [{"degree_pct": 0, "porosity": 0.5},
                                                             {"degree_pct": 30, "porosity": 0.4,
                                                              "uncertainty": 0.02}],
                                                  "provenance": _prov()})
    r = calendered_porosity_error([0, 10, 30], [0.45, 0.42, 0.43], measured)
    assert r.point_errors == pytest.approx((-0.1, 1.5))  # relative at 0 %, in sigmas at 30 %
    assert r.error == pytest.approx(math.sqrt((0.01 + 2.25) / 2))
    with pytest.raises(ValueError, match="30"):
        calendered_porosity_error([0, 10], [0.45, 0.42], measured)


def test_film_porosity_of_hand_placed_spheres_is_exact():
    """Four spheres resting on the collector (z = 5) in a 20 x 20 um periodic cell: solid
    radius 3 um (the shelled simulation radius 3.42 sets the top), one of them CBD counted
    50 % nanoporous. Exact porosity = 1 - (3 + 0.5) V / (400 T)."""
    centres = np.array([[5.0, 5.0, 8.42], [15.0, 5.0, 8.42], [5.0, 15.0, 8.42], [15.0, 15.0, 8.42]])
    sim_r = np.full(4, 3.42)
    solid_r = np.full(4, 3.0)
    s = electrode_structure(centres, sim_r, solid_r, ["AM", "AM", "SE", "CBD"], (0, 0, 0), (20, 20, 40), 5.0,
                            0.1, {"CBD": 0.5})
    thickness = 8.42 + 3.42 - 5.0
    assert s.thickness_um == pytest.approx(thickness)
    v = 4.0 / 3.0 * math.pi * 27.0
    assert s.porosity == pytest.approx(1 - 3.5 * v / (400 * thickness), abs=2e-3)
    assert s.fractions["CBD"] == pytest.approx(v / (400 * thickness), abs=1e-3)
    assert sum(s.fractions.values()) == pytest.approx(1.0)
    # profile: fully porous right above the collector below the spheres' bottoms
    assert s.porosity_profile[0] == pytest.approx(1.0)
    assert len(s.z_um) == len(s.porosity_profile)


def _write_state(path: Path, system, box=(60.0, 60.0, 60.0), diameter_scale=1.0) -> None:
    rng = np.random.default_rng(0)
    types = np.concatenate([np.full(t.count, t.type_id) for t in system.types])
    diam = np.concatenate([np.full(t.count, t.diameter_um * diameter_scale) for t in system.types])
    dens = np.concatenate([np.full(t.count, t.lammps_density) for t in system.types])
    pos = rng.uniform(0, 60.0, size=(len(types), 3))
    write_data_file(path, Placement(box, types, diam, dens, pos), n_types=len(system.types))


def test_composition_check_accepts_its_own_state_and_names_a_foreign_one(tmp_path: Path):
    system = ssb_system(200)
    good = tmp_path / "good.data"
    _write_state(good, system)
    assert state_bead_count(good) == 200
    check_composition(good, system, "ssb")
    dried = dried_system(system, ssb_formulation())
    with pytest.raises(InputError, match="another composition or stage"):
        check_composition(good, dried, "ssb dried")  # a slurry state is not a dried state
    other = ssb_system(201)
    with pytest.raises(InputError, match="good.data"):
        check_composition(good, other, "ssb")


def test_dataset_dried_fields_and_calendered_points_are_validated(tmp_path: Path):
    data = yaml.safe_load(SSB_DATASET.read_text())
    d = load_dataset(SSB_DATASET)
    assert d.system.phases["CBD"].dried_diameter_um == 3.0 and d.system.phases["CBD"].nanoporosity == 0.5
    assert d.targets["dried_porosity"].value == 0.5 and d.targets["dried_porosity"].unit == "1"
    bad = dict(data)
    bad["calendered_porosity"] = {"points": [{"degree_pct": 30, "porosity": 0.4}, {"degree_pct": 10, "porosity": 0.45}],
                                  "provenance": _prov()}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(DatasetError, match="degree_pct must increase"):
        load_dataset(path)
    bad["calendered_porosity"]["points"] = [{"degree_pct": 70, "porosity": 0.4}]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(DatasetError, match="calendered_porosity.points.0.degree_pct"):
        load_dataset(path)
    bad = yaml.safe_load(SSB_DATASET.read_text())
    del bad["system"]["phases"]["CBD"]["dried_density_g_cm3"]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(DatasetError, match="dried_diameter_um and dried_density_g_cm3 together"):
        load_dataset(path)


def test_slurry_identity_ignores_electrode_fields(tmp_path: Path):
    """A slurry study's identity (what must match to resume it) does not see the drying and
    calendering fidelity fields, the unused shear fields, or the dataset's dried-bead fields
    and porosity targets; it does see a slurry-relevant dataset change."""

    from calib.study.identity import study_ident
    from calib.study.space import ParameterSpace
    from calib.study.load import load_study
    from conftest import DEFAULT_STUDY

    def ident(dataset_text: str, extra: dict | None = None) -> dict:
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "dataset.yaml").write_text(dataset_text)
        spec = yaml.safe_load(DEFAULT_STUDY.read_text())
        spec["dataset"] = "data/dataset.yaml"
        spec.update(extra or {})
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
        loaded = load_study(tmp_path / "s.yaml", fidelity="smoke")
        return study_ident(loaded, ParameterSpace.from_spec(loaded.spec.parameters))

    text = SSB_DATASET.read_text()
    base = ident(text)
    fid = base["physics"]["fidelity_spec"]
    assert not any(k.startswith(("drying_", "calender_", "shear_")) for k in fid)
    assert "drying" not in base["physics"] and "calendering" not in base["physics"]
    data = yaml.safe_load(text)
    data["system"]["phases"]["CBD"]["nanoporosity"] = 0.3
    data["targets"]["dried_porosity"]["value"] = 0.45
    data["title"] = "retitled"
    assert ident(yaml.safe_dump(data)) == base
    assert ident(text, {"fidelities": {"smoke": {"drying_steps": 999, "calender_hold_steps": 7}}}) == base
    data["system"]["phases"]["CBD"]["density_g_cm3"] = 0.95
    assert ident(yaml.safe_dump(data))["physics"]["dataset_sha256"] != base["physics"]["dataset_sha256"]
    # the solid CBD bead counts the slurry's CBD beads: it is part of the slurry's identity
    data = yaml.safe_load(text)
    data["system"]["phases"]["CBD"]["dried_diameter_um"] = 2.5
    assert ident(yaml.safe_dump(data))["physics"]["dataset_sha256"] != base["physics"]["dataset_sha256"]


def test_calendering_kinematics_public_by_default_fidelity_may_override_study_wins():
    from calib.stages.film_structure import study_or_fidelity as _study_or_fidelity
    from calib.stages.calendering import CalenderingSettings

    default = CalenderingSettings()
    assert (default.speed_um_per_us, default.timestep_us, default.tdamp_us) == (0.02, 1e-4, 0.2)
    assert _study_or_fidelity(default, "speed_um_per_us", None) == 0.02
    assert _study_or_fidelity(default, "speed_um_per_us", 0.5) == 0.5
    explicit = CalenderingSettings(speed_um_per_us=0.1)
    assert _study_or_fidelity(explicit, "speed_um_per_us", 0.5) == 0.1
