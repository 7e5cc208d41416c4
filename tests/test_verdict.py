"""Honest verdicts (issue 26, point 7): every stage passes its own convergence verdict to its
score, and a failed verdict follows the stage's ``not_converged`` policy. The e2e case (a
real drying trial too short to settle) is in ``test_e2e_electrode.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calib.stages.calendering import DegreeResult, calender_verdict
from calib.stages.characterise import transport_verdict
from calib.stages.drying import drift_note, drift_rel, drying_verdict, porosity_past_end
from calib.stages.verdict import ConvergencePolicy, verdict_of
from sim_backends.lammps.calendering import RELAX_FILE, relaxation
from sim_backends.lammps.drying import DryingStatus
from sim_backends.lammps.outputs import SimulationFailed
from sim_backends.transport import relative_diffusivity


def test_a_failed_verdict_follows_the_policy():
    bad = verdict_of((True, "fine"), (False, "height moving"), (False, "solve stopped"))
    assert not bad.converged and bad.reasons == ("height moving", "solve stopped")
    assert bad.outcome(ConvergencePolicy()) == (1.0, None)
    assert bad.outcome(ConvergencePolicy(penalty=0.0)) == (0.0, None)
    assert bad.outcome(ConvergencePolicy(not_converged="fail")) == (0.0, "height moving; solve stopped")
    good = verdict_of((True, "never shown"))
    assert good.converged and good.outcome(ConvergencePolicy(not_converged="fail")) == (0.0, None)
    assert good.note() == "converged" and bad.note().startswith("NOT converged: height moving")


def test_drying_verdict_is_the_height_plateau():
    moving = DryingStatus(100.0, 80.0, -0.2, False, -0.031)
    v = drying_verdict(moving, 0.01, 0.35, 0.01)
    assert not v.converged and "-3.10% across the last window" in v.reasons[0] and "1.00%" in v.reasons[0]
    assert len(v.reasons) == 1  # no run-on: no drift test
    assert drying_verdict(DryingStatus(100.0, 80.0, -0.2, True, -0.001), 0.01, 0.35, 0.01).converged


def test_porosity_past_end_by_hand():
    # the solid fraction 0.65 goes as 1 / lz: 0.65 * 40 / 39 = 0.666667, porosity 0.333333
    assert porosity_past_end(0.35, 40.0, 39.0) == pytest.approx(1 / 3, rel=1e-12)
    assert porosity_past_end(0.35, 40.0, 40.0) == pytest.approx(0.35, rel=1e-12)
    st = DryingStatus(50.0, 40.0, -0.2, True, -0.001, lz_hold_um=39.0, hold_steps=4000)
    assert drift_rel(0.35, st) == pytest.approx((1 / 3) / 0.35 - 1, rel=1e-12)  # -4.76 %
    assert drift_rel(0.35, DryingStatus(50.0, 40.0, -0.2, True, -0.001)) is None


def test_drying_verdict_fails_a_porosity_that_drifts_past_the_end():
    """The height plateau passes, but the porosity moves -4.76 % over the run-on: not converged;
    a run-on within tolerance passes."""
    st = DryingStatus(50.0, 40.0, -0.2, True, -0.001, lz_hold_um=39.0, hold_steps=4000)
    v = drying_verdict(st, 0.01, 0.35, 0.01)
    assert not v.converged and len(v.reasons) == 1
    assert "drifts -4.76% over 4,000 steps past the end of the protocol (tolerance 1.00%)" in v.reasons[0]
    assert drying_verdict(st, 0.01, 0.35, 0.05).converged
    still = DryingStatus(50.0, 40.0, -0.2, True, -0.001, lz_hold_um=39.99, hold_steps=4000)
    assert drying_verdict(still, 0.01, 0.35, 0.01).converged
    assert "porosity 33.33 % after 4,000 steps more at the set pressure (-4.76%)" == drift_note(0.35, st)
    assert "not checked" in drift_note(0.35, DryingStatus(50.0, 40.0, -0.2, True, -0.001))


def _degree(deg: float, relaxed: bool, change: float) -> DegreeResult:
    return DegreeResult(deg, 60.0, 42.0, 42.5, 0.3, {"AM": 0.4}, 42.0, change, relaxed)


def test_calendering_verdict_names_every_degree_still_relaxing():
    v = calender_verdict([_degree(0, True, 0.001), _degree(30, False, 0.04), _degree(50, False, math.nan)], 0.01)
    assert not v.converged and len(v.reasons) == 2
    assert "at 30 %" in v.reasons[0] and "+4.00%" in v.reasons[0] and "at 50 %" in v.reasons[1]
    assert calender_verdict([_degree(10, True, 0.0)], 0.01).converged


def _relax_file(tmp_path, values) -> None:
    rows = "\n".join(f"{1000 * (i + 1)} {v:.17g}" for i, v in enumerate(values))
    (tmp_path / RELAX_FILE).write_text("# Time-averaged data for fix relax_blocks\n# TimeStep v_zrel\n" + rows + "\n")


def test_relaxation_reads_the_mean_height_record(tmp_path):
    _relax_file(tmp_path, [30.0, 25.0, 22.0, 20.5, 20.01, 20.0, 20.0, 20.0, 20.0, 20.0])
    settled = relaxation(tmp_path, 4, 0.01)
    assert settled.converged and settled.window == 4 and settled.blocks == 10
    assert not relaxation(tmp_path, 10, 0.01).converged  # the whole record includes the collapse
    _relax_file(tmp_path, [30.0, 25.0, 22.0])
    short = relaxation(tmp_path, 4, 0.01)
    assert not short.converged and math.isnan(short.change_rel)
    with pytest.raises(SimulationFailed, match="relaxation record"):
        relaxation(tmp_path / "missing", 4, 0.01)


def test_transport_verdict_from_the_solver_flags():
    rows = [{"degree_pct": 0.0, "conductivity_converged": True, "conductivity_iterations": 12,
             "se_converged": True, "se_iterations": 900},
            {"degree_pct": 30.0, "conductivity_converged": True, "conductivity_iterations": 15,
             "se_converged": False, "se_iterations": 100}]
    v = transport_verdict(rows)
    assert v.reasons == ("the SE diffusion solve at 30 % stopped unconverged after 100 iterations",)
    assert transport_verdict(rows[:1]).converged


def test_a_diffusion_solve_cut_short_reports_unconverged():
    """The flag the verdict reads is TauFactor's own: a real solve stopped at 100 iterations
    on a random packing has not converged; with the default cap it has."""
    rng = np.random.default_rng(5)
    x, y, z = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    mask = np.zeros((32, 32, 32), dtype=bool)
    for c in rng.uniform(0, 32, size=(60, 3)):
        mask |= (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 20
    cut = relative_diffusivity(mask, iter_limit=100)
    assert cut.percolating and not cut.converged
    assert relative_diffusivity(mask).converged


def test_the_characterisation_falls_back_to_finite_volumes_where_taufactor_stops_unconverged():
    """``se_relative_diffusivity``: TauFactor cut at 100 iterations hands over to the
    finite-volume solve, which converges to TauFactor's own converged answer (within 1 %)."""
    from sim_backends.transport import se_relative_diffusivity

    rng = np.random.default_rng(5)
    x, y, z = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    mask = np.zeros((32, 32, 32), dtype=bool)
    for c in rng.uniform(0, 32, size=(60, 3)):
        mask |= (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 20
    full, how = se_relative_diffusivity(mask)
    assert how == "taufactor" and full.converged
    cut, how = se_relative_diffusivity(mask, iter_limit=100)
    assert how.startswith("finite volumes (TauFactor") and "unconverged after 100 iterations" in how
    assert cut.converged and cut.effective == pytest.approx(full.effective, rel=0.01)
