"""Failed simulations become FAIL trials with the reason read from the log; the study goes on."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import parse_json_stdout, run_study, write_study
from mlflow_checks import assert_runs_match_ledger, download

pytestmark = pytest.mark.lammps


def _run(tmp_path: Path, name: str, trials: int, tracked: bool = False, **overrides) -> tuple[dict, list]:
    study_file = write_study(tmp_path, name, trials=trials, parallel=1, **overrides)
    runs = tmp_path / "runs"
    proc = run_study("optimize", "--stage", "slurry", "--study", str(study_file), "--runs-dir", str(runs),
                     *(() if tracked else ("--tracking-uri", "none")), "--json", cwd=tmp_path)
    storage = f"sqlite:///{(runs / 'calib.db').resolve()}"
    return parse_json_stdout(proc), optuna.load_study(study_name=name, storage=storage).get_trials()


def test_lammps_blow_up_is_a_fail_trial_with_reason(tmp_path: Path):
    # a time step far beyond the contact time scale (0.001 us in the seed) makes the
    # integration diverge: LAMMPS stops with an error, non-finite thermo output or a crash
    broken = {"n_beads": 200, "initial_box_scale": 0.25, "equilibration_steps": 20000,
              "averaging_steps": 10000, "timestep_us": 5.0}
    summary, trials = _run(tmp_path, "blowup", 2, tracked=True, fidelity="broken", fidelities={"broken": broken})
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # the study went on
    for t in trials:
        reason = t.user_attrs["fail_reason"]
        assert reason.startswith(("ERROR", "LAMMPS killed by signal")) or "non-finite" in reason, reason
        assert "exit status" not in reason
    assert summary["trials_failed"] == 2 and summary["best_trial"] is None
    assert set(summary["failures"]) == {"0", "1"} or set(summary["failures"]) == {0, 1}
    # in MLflow: FAILED runs with the reason as a tag and a file, the log as a previewable copy
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("blowup")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("calib.role") == "trial"]
    assert len(runs) == 2
    for r in runs:
        t = trials[int(r.data.tags["trial_number"])]
        assert r.info.status == "FAILED" and r.data.tags["fail_reason"] == t.user_attrs["fail_reason"]
        assert r.data.tags["calib.flags"].startswith("FAILED") and r.data.tags["calib.equilibrated"] == "n/a"
        # its description: the trial, its state, why it failed, and the way back to the study's run
        note = r.data.tags["mlflow.note.content"]
        parent = r.data.tags["mlflow.parentRunId"]
        assert note.startswith(f"**Trial {t.number}** · FAILED · [open the study's run](#/experiments/"
                               f"{exp.experiment_id}/runs/{parent}?workflowType=machine_learning)"), note
        assert t.user_attrs["fail_reason"].strip()[:200] in note
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"fail_reason.txt", "log.lammps", "log.lammps.txt", "in.slurry.txt"} <= arts, arts
        reason = Path(client.download_artifacts(r.info.run_id, "fail_reason.txt", str(tmp_path / "dl"))).read_text()
        assert reason.strip() == t.user_attrs["fail_reason"].strip()
        # the logged log and deck are the trial's own, the log showing how the run ended
        workdir = Path(t.user_attrs["calib_workdir"])
        log = (workdir / "log.lammps").read_text()
        assert log.startswith("LAMMPS (")
        if reason.startswith(("ERROR", "LAMMPS killed by signal")):
            assert "Total wall time:" not in log  # LAMMPS did not end normally
        if reason.startswith("ERROR"):  # the reason is read from this log
            assert reason.splitlines()[0].strip() in log
        for name in ("log.lammps", "log.lammps.txt"):
            assert download(client, r.info.run_id, name, tmp_path / "dl_content").read_text() == log, name
        deck = download(client, r.info.run_id, "in.slurry.txt", tmp_path / "dl_content").read_text()
        assert deck == (workdir / "in.slurry").read_text() and "timestep 5" in deck.splitlines()
    # no run left RUNNING: the parent FINISHED, both trial runs FAILED like their ledger trials
    by_number = assert_runs_match_ledger(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "blowup",
                                         f"sqlite:///{(tmp_path / 'runs' / 'calib.db').resolve()}")
    assert sorted(by_number) == [0, 1]


def test_timeout_is_a_fail_trial_and_the_study_goes_on(tmp_path: Path):
    summary, trials = _run(tmp_path, "slowpoke", 2, fidelity="smoke", trial_timeout_s=0.5)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for t in trials:
        assert t.user_attrs["fail_reason"].startswith("timeout"), t.user_attrs["fail_reason"]
    assert summary["trials_failed"] == 2


def test_unconverged_density_fails_the_trial_under_the_fail_policy(tmp_path: Path):
    """The seed's slurry column creeps on at smoke size under the ramp-and-hold protocol: with
    ``not_converged: fail`` the trial FAILs with the plateau test's reason (and the density
    it had), the study goes on."""
    summary, trials = _run(tmp_path, "creep", 1, fidelity="smoke", parameters={"base": "table-s1-slurry",
                           "free": {"eps_AM": {"low": 0.5, "high": 2.0}}},
                           slurry={"protocol": "ramp_hold", "allow_protocol_mismatch": True,
                                   "not_converged": "fail", "density_tolerance_rel": 0.001})
    assert [t.state for t in trials] == [TrialState.FAIL]
    for t in trials:
        reason = t.user_attrs["fail_reason"]
        assert reason.startswith("density not converged after 10,000 steps at the set pressure"), reason
        assert "tolerance 0.10%" in reason
        assert t.user_attrs["observables"]["density_g_cm3"] > 0  # what was measured is kept
    assert summary["trials_failed"] == 1
