"""Which settings are part of a study's identity (``calib.study.identity.settings_identity``): how a
run is executed is not (solver threads); a field added later stays out at the value that
reproduces the studies stored before it."""

from __future__ import annotations

from calib.study.identity import settings_identity
from calib.stages.characterise import CharacteriseSettings
from calib.stages.drying import DryingSettings


def test_solver_threads_stay_out_of_a_studys_identity():
    base = settings_identity(CharacteriseSettings())
    assert settings_identity(CharacteriseSettings(solver_threads=8)) == base
    assert "solver_threads" not in base
    assert settings_identity(CharacteriseSettings(resolution_um=0.25)) != base


def test_the_overlap_rule_and_conductivity_method_are_physics_and_the_old_behaviour_keeps_old_identities():
    base = settings_identity(CharacteriseSettings())
    assert base["overlap"] == "power" and base["conductivity_method"] == "network"  # the defaults since issue 27
    assert base["se_method"] == "network"
    old = settings_identity(CharacteriseSettings(overlap="rank", conductivity_method="voxel", se_method="voxel"))
    # a study stored before the fields existed: none of them in its identity
    assert not {"overlap", "conductivity_method", "touch_gap_um", "touch_radius_rel", "se_method"} & set(old)
    touched = settings_identity(CharacteriseSettings(touch_gap_um=0.1, touch_radius_rel=0.05))
    assert touched["touch_gap_um"] == 0.1 and touched != base


def test_the_drying_protocol_stays_out_at_its_old_behaviour():
    base = settings_identity(DryingSettings())
    assert base["protocol"] == "public"  # the default since 2026-12-07 is physics in the identity
    old = settings_identity(DryingSettings(protocol="settings"))
    assert "protocol" not in old and "compression_law" not in old  # the studies stored before it
