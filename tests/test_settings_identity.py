"""Which settings are part of a study's identity (``calib.identity.settings_identity``): how a
run is executed is not (solver threads); a field added later stays out at the value that
reproduces the studies stored before it."""

from __future__ import annotations

from calib.identity import settings_identity
from calib.stages.characterise import CharacteriseSettings
from calib.stages.drying import DryingSettings


def test_solver_threads_stay_out_of_a_studys_identity():
    base = settings_identity(CharacteriseSettings())
    assert settings_identity(CharacteriseSettings(solver_threads=8)) == base
    assert "solver_threads" not in base
    assert settings_identity(CharacteriseSettings(resolution_um=0.25)) != base


def test_the_overlap_rule_is_physics_but_the_stored_default_keeps_old_identities():
    base = settings_identity(CharacteriseSettings())
    assert "overlap" not in base
    assert settings_identity(CharacteriseSettings(overlap="power"))["overlap"] == "power"


def test_the_drying_protocol_stays_out_at_its_old_behaviour():
    base = settings_identity(DryingSettings())
    assert "protocol" not in base and "compression_law" not in base
    assert settings_identity(DryingSettings(protocol="public"))["protocol"] == "public"
