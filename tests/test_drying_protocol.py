"""The drying protocol a study runs (``drying.protocol``): its own settings over the fidelity's
steps, or the public 7e7-step protocol compressed to them (docs/model.md#electrode-protocols);
hand-computed settings, and the label trials record."""

from __future__ import annotations

import pytest

from calib.spec.fidelity import BUILTIN_FIDELITIES
from calib.stages.drying import (PUBLIC_DRYING_STEPS, DryingSettings, drying_protocol_label,
                                 drying_protocol_problem, drying_thermostat)


def test_the_public_protocol_compressed_350_times_under_the_undamped_law():
    f = BUILTIN_FIDELITIES["dev"].model_copy(update={"drying_steps": 200_000, "timestep_us": 0.001})
    npt = drying_thermostat(DryingSettings(protocol="public"), f)
    assert PUBLIC_DRYING_STEPS // 200_000 == 350
    assert (npt.steps, npt.timestep_us, npt.temperature_K, npt.pdamp_us) == (200_000, 0.001, 300.0, 1000.0)
    assert npt.tdamp_us == pytest.approx(0.2 * 350 ** 2)  # 24,500 us: the thermostat out of the way
    with pytest.raises(ValueError):  # the laws that heat the beads would heat the mount and the run-on too
        DryingSettings(protocol="public", compression_law="temperature")


def test_the_settings_protocol_keeps_the_settings_over_the_fidelitys_steps():
    f = BUILTIN_FIDELITIES["dev"]
    npt = drying_thermostat(DryingSettings(tdamp_us=0.3, protocol="settings"), f)
    assert (npt.steps, npt.tdamp_us, npt.temperature_K, npt.pdamp_us) == (f.drying_steps, 0.3, 300.0, 1000.0)


def test_an_uneven_compression_is_a_problem_before_it_is_an_error():
    f = BUILTIN_FIDELITIES["dev"].model_copy(update={"drying_steps": 30_000})
    d = DryingSettings(protocol="public")
    assert "does not divide" in drying_protocol_problem(d, f)
    assert drying_protocol_problem(DryingSettings(protocol="settings"), f) is None
    assert DryingSettings().protocol == "public"  # the default since 2026-12-07: uneven steps are a problem
    with pytest.raises(ValueError, match="does not divide"):
        drying_thermostat(d, f)


def test_the_label_names_the_compression_and_its_settings():
    from sim_backends.lammps.drying import DryingRunSpec
    from sim_backends.lammps.forcefield import TABLE_S1_DRIED, WallContact

    run = DryingRunSpec(wall=WallContact.of(TABLE_S1_DRIED), equilibration_steps=200_000, tdamp_us=24_500.0)
    public = drying_protocol_label(run, "public", "undamped")
    assert "compressed k = 350 under the undamped law" in public and "Tdamp 24500 us" in public
    assert "electrode-protocols" in drying_protocol_label(run)

