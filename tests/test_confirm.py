"""The transfer confirmation (``calib optimize --confirm``): the best set run again at the
target protocol on fresh placements, recorded as a trial of the study outside its budget
and its answer, and shown next to the calibrated value (terminal, --json, MLflow)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from calib import ledger
from calib.optimize.confirmation import Confirmation, confirm_seed, lines, summary
from calib.execution.session_types import trial_seed
from calib.study.load import load_study
from conftest import DEFAULT_STUDY, parse_json_stdout, run_calib, write_study


def _trial(value: float, x: float, **attrs) -> optuna.trial.FrozenTrial:
    return create_trial(value=value, params={"x": x}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=attrs)


def test_a_confirmation_counts_neither_against_the_budget_nor_as_the_answer():
    study = optuna.create_study()
    study.set_user_attr(ledger.TARGET_FIDELITY_ATTR, "dev")
    study.add_trial(_trial(0.5, 0.1, calib_fidelity="dev"))
    study.add_trial(_trial(0.2, 0.2, calib_fidelity="dev"))
    # the confirmation of trial 1 reads better than anything calibrated: still not the answer
    study.add_trial(_trial(0.01, 0.2, calib_fidelity="confirm", calib_confirms=1,
                           calib_confirm={"compression": 1, "replicates": 2}))
    assert ledger.best_trial(study).number == 1
    assert [t.number for t in ledger.at_target(study)] == [0, 1]
    assert ledger.budget_count(study) == 2 and ledger.finished_count(study) == 2
    assert ledger.within_budget(study, 3, 2) is False and ledger.within_budget(study, 1, 2) is True
    assert ledger.within_budget(study, 3, 3) is True  # the confirmation ahead of it does not take a slot
    assert ledger.proposal_kind(study.trials[2].user_attrs, 2, "composite", 2) == "confirmation (trial 1)"


def test_the_composite_proposer_leaves_confirmations_out_of_its_data():
    from calib.optimize.botorch_sampler import BoTorchSampler
    from calib.study.space import ParameterSpace
    spec = load_study(DEFAULT_STUDY).spec
    space = ParameterSpace.from_spec(spec.parameters)
    sampler = BoTorchSampler(space, seed=0, n_initial=2)
    params = {a.key: a.low for a in space.axes}
    dists = space.distributions()
    plain = create_trial(value=1.0, params=params, distributions=dists)
    checked = create_trial(value=1.0, params=params, distributions=dists, user_attrs={"calib_confirms": 0})
    assert sampler._has_all(plain) and not sampler._has_all(checked)


def test_confirmation_settings_and_seeds():
    with pytest.raises(ValueError):
        Confirmation(0, 2)
    with pytest.raises(ValueError):
        Confirmation(1, 0)
    target = load_study(DEFAULT_STUDY).spec.fidelity_spec("dev")  # k = 200
    assert Confirmation(1, 2).timeout_of(300.0, target) == pytest.approx(300.0 * 200)
    assert Confirmation(10, 2).timeout_of(300.0, target) == pytest.approx(300.0 * 20)
    assert Confirmation(1, 2, timeout_s=50.0).timeout_of(300.0, target) == 50.0
    assert Confirmation(1, 2).timeout_of(None, target) is None
    study_seed = 7
    calibration = {trial_seed(study_seed, n, common) + r for n in range(100_000) for common in (True, False)
                   for r in range(8)}
    confirmations = {confirm_seed(study_seed, n) + r for n in range(100_000) for r in range(8)}
    assert not calibration & confirmations and len(confirmations) == 800_000  # fresh, and not shared


@pytest.mark.lammps
def test_optimize_confirms_the_best_set_at_the_full_protocol(tmp_path: Path):
    """A seed-protocol study run at k = 2 (a 40,000-step protocol, so that the full one is
    affordable here) confirms its best set at k = 1 on two fresh placements: one trial
    outside the budget, shown next to the calibrated value in --json, the terminal and the
    MLflow parent run; a rerun does not repeat it."""
    study = write_study(tmp_path, "conf", trials=2, parallel=2, optimizer={"n_initial": 2},
                        slurry={"protocol": "seed", "protocol_steps": 40_000},
                        fidelities={"smoke": {"compression": 2}})
    runs = tmp_path / "runs"
    args = ("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", "--runs-dir", str(runs),
            "--confirm")
    out = parse_json_stdout(run_calib(*args, "--json", cwd=tmp_path))
    assert out["trials_complete"] == 2  # the confirmation is not one of the budget's trials
    c = out["confirmation"]
    assert c["confirms"] == out["best_trial"] and c["state"] == "COMPLETE"
    assert (c["compression"], c["replicates"]) == (1, 2)
    assert c["protocol"].startswith("seed: 0 -> 1 atm over 40,000 steps") and "uncompressed" in c["protocol"]
    row = c["values"]["slurry_density"]
    calibrated = out["best_observables"]["slurry_density"]["simulated"]
    assert row["calibrated"] == pytest.approx(calibrated, rel=1e-12)
    assert row["confirmed"] == pytest.approx(sum(c["replicates_g_cm3"]) / 2, rel=1e-12)
    assert row["confirmed_vs_calibrated_rel"] == pytest.approx(row["confirmed"] / calibrated - 1, rel=1e-9)
    assert len(set(c["replicates_g_cm3"])) == 2

    storage = f"sqlite:///{runs / 'calib.db'}"
    trials = optuna.load_study(study_name="conf", storage=storage).get_trials()
    assert len(trials) == 3
    conf = trials[c["trial"]]
    best = trials[out["best_trial"]]
    assert conf.params == best.params and conf.state == TrialState.COMPLETE
    assert conf.user_attrs["calib_fidelity"] == "confirm" and conf.user_attrs["calib_confirms"] == best.number
    assert conf.user_attrs["calib_seed"] == confirm_seed(0, conf.number) != best.user_attrs["calib_seed"]
    assert (Path(conf.user_attrs["calib_workdir"]) / "replicate_01").is_dir()  # replicate 0 runs in the trial's folder

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("conf")
    parent = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("calib.role") == "study"][0]
    # MLflow shows 6 significant digits (tracking_records.shown); the summary keeps the value in full
    assert parent.data.metrics["confirmed.slurry_density"] == pytest.approx(row["confirmed"], rel=1e-5)
    assert (f"**Confirmation at the target protocol**: trial {c['trial']} at k = 1"
            in parent.data.tags["mlflow.note.content"])  # the description, where a reviewer reads first
    kinds = {r.data.tags.get("calib.proposal") for r in client.search_runs([exp.experiment_id])}
    assert f"confirmation (trial {best.number})" in kinds

    exported = run_calib("export", "--study", "conf", "--runs-dir", str(runs), "--format", "lammps", cwd=tmp_path)
    assert (f"# confirmation: trial {c['trial']} at k = 1, 2 fresh placements: slurry_density "
            f"{row['confirmed']:.4g} vs {calibrated:.4g} calibrated") in exported.stdout

    run_calib("report", "--study", "conf", "--runs-dir", str(runs), "--out", str(tmp_path / "report"),
              "--tracking-uri", "none", cwd=tmp_path)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "2 complete, 0 failed, 0 lost and re-proposed; 1 confirmation<" in page  # counted apart
    assert f"trial {c['trial']} at k = 1, 2 fresh placements: slurry_density" in page

    again = run_calib(*args, cwd=tmp_path)  # the terminal summary; nothing is rerun
    assert len(optuna.load_study(study_name="conf", storage=storage).get_trials()) == 3
    text = again.stdout
    assert f"confirmation (trial {c['trial']}, of trial {best.number}, k = 1, 2 fresh placements" in text
    assert f"{row['confirmed']:.4g} g/cm^3 confirmed vs {calibrated:.4g} calibrated" in text
    assert "the same placements at k = 2: " in text and len(row["paired_factors"]) == 2  # one per placement

    # a confirmation left queued (an interrupted --confirm run) is not run by a driver without --confirm
    optuna.load_study(study_name="conf", storage=storage).enqueue_trial(
        dict(best.params), user_attrs={"calib_fidelity": "confirm", "calib_confirms": best.number,
                                       "calib_confirm": {"compression": 10, "replicates": 1, "timeout_s": None}})
    more = parse_json_stdout(run_calib(*args[:-1], "--trials", "3", "--tracking-uri", "none", "--json", cwd=tmp_path))
    assert more["trials_complete"] == 3
    trials = optuna.load_study(study_name="conf", storage=storage).get_trials()
    assert len(trials) == 5
    dropped, extra = trials[3], trials[4]
    assert dropped.state == TrialState.FAIL and dropped.user_attrs["calib_lost"]
    assert "rerun with --confirm" in dropped.user_attrs["fail_reason"]
    assert extra.state == TrialState.COMPLETE and "calib_confirms" not in extra.user_attrs


def test_bad_confirmation_options_are_refused_before_anything_is_written(tmp_path: Path):
    study = write_study(tmp_path, "conf_bad", slurry={"protocol": "seed", "protocol_steps": 40_000},
                        fidelities={"smoke": {"compression": 2}})
    runs = tmp_path / "runs"
    base = ("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke", "--runs-dir", str(runs))
    for extra, where in ((("--confirm", "--confirm-compression", "3"), "--confirm-compression"),
                         (("--confirm", "--confirm-compression", "0"), "--confirm-compression"),
                         (("--confirm", "--confirm-timeout-s", "0"), "--confirm-timeout-s"),
                         (("--confirm-replicates", "3"), "--confirm-replicates"),
                         (("--confirm-timeout-s", "60"), "--confirm-timeout-s")):
        proc = run_calib(*base, *extra, cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and where in err[0], proc.stderr
        assert not runs.exists()


def test_summary_lines_read_as_a_comparison():
    s = {"trial": 20, "confirms": 12, "state": "COMPLETE", "compression": 1, "replicates": 2, "wall_s": 9000.0,
         "protocol": "seed: 0 -> 1 atm over 20,000,000 steps", "spread_g_cm3": 0.01, "replicates_g_cm3": [1.9, 1.92],
         "values": {"slurry_density": {"calibrated": 1.89, "confirmed": 1.91, "target": 1.9, "unit": "g/cm^3",
                                       "confirmed_vs_calibrated_rel": 1.91 / 1.89 - 1,
                                       "confirmed_vs_target_rel": 1.91 / 1.9 - 1}}}
    text = "\n".join(lines(s))
    assert "confirmation (trial 20, of trial 12, k = 1, 2 fresh placements, 9000 s wall):" in text
    assert "slurry_density: 1.91 g/cm^3 confirmed vs 1.89 calibrated (+1.1%), +0.5% vs the target 1.9" in text


def _scored(value: float, density: float, **attrs) -> optuna.trial.FrozenTrial:
    errors = {"slurry_density": {"simulated": density, "target": 1.9, "unit": "g/cm^3"}}
    return _trial(value, 0.3, errors=errors, **attrs)


def test_summary_pairs_the_best_trial_with_its_latest_unlost_confirmation():
    study = optuna.create_study()
    study.set_user_attr(ledger.TARGET_FIDELITY_ATTR, "dev")
    study.add_trial(_scored(0.1, 1.8, calib_fidelity="dev"))
    assert summary(study) is None  # no confirmation yet
    conf = {"compression": 1, "replicates": 2, "timeout_s": None}
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.3}, distributions={"x": FloatDistribution(0, 1)},
                                 user_attrs={"calib_confirms": 0, "calib_confirm": conf, "calib_lost": True,
                                             "fail_reason": "interrupted"}))
    assert summary(study) is None  # an interrupted confirmation is no result
    study.add_trial(_scored(0.2, 2.0, calib_fidelity="confirm", calib_confirms=0, calib_confirm=conf,
                            density_replicates_g_cm3=[1.95, 2.05]))
    s = summary(study)
    assert (s["trial"], s["confirms"], s["state"], s["replicates"]) == (2, 0, "COMPLETE", 2)
    row = s["values"]["slurry_density"]
    assert row["calibrated"] == 1.8 and row["confirmed"] == 2.0
    assert row["confirmed_vs_calibrated_rel"] == pytest.approx(2.0 / 1.8 - 1)
    assert row["confirmed_vs_target_rel"] == pytest.approx(2.0 / 1.9 - 1)
    assert "FAILED" not in "\n".join(lines(s))
    from calib.optimize.confirmation import existing, same

    assert existing(study, 0, Confirmation(1, 2, timeout_s=99.0)).number == 2  # the time limit aside
    assert existing(study, 0, Confirmation(10, 2)) is None and not same(Confirmation(1, 2), Confirmation(1, 3))


def test_an_unconfirmed_compressed_answer_says_so(capsys):
    from calib.cli.summary import print_summary
    from calib.review.caveats import Caveats, caveat_lines

    def caveats(k, confirmed):
        c = Caveats(fidelity="dev", protocol="seed: ...", compression=k, confirmed=confirmed, confirmation_trial=None,
                    at_bound=(), converged=True, convergence=None, trials_complete=1, model_proposals=0,
                    sampler="sobol", n_initial=6)
        return {"lines": caveat_lines(c)}

    s = {"study": "x", "storage": "sqlite:///x.db", "trials_complete": 1, "trials_failed": 0, "trials_by_fidelity": {},
         "best_trial": 0, "best_value": 0.1, "best_params": {}, "target_fidelity": "dev", "confirmation": None,
         "best_compression": 200, "caveats": caveats(200, "not confirmed")}
    print_summary(s)
    out = capsys.readouterr().out
    assert "confirmed at the full protocol: no: calibrated at k = 200" in out and "--confirm" in out
    print_summary({**s, "best_compression": 1, "caveats": caveats(1, "full protocol")})  # nothing to confirm against
    out = capsys.readouterr().out
    assert "confirmed at the full protocol: not needed" in out and "--confirm" not in out
    print_summary({**s, "best_transfer": {"factor": 1.078, "source": "x"}})
    assert "calibrated at k = 200 mapped to the full protocol by x 1.078" in capsys.readouterr().out



def test_a_confirmation_that_misses_says_so_and_gives_the_factor_it_measured():
    study = optuna.create_study()
    study.set_user_attr(ledger.TARGET_FIDELITY_ATTR, "dev")
    study.add_trial(_scored(0.1, 1.8 * 1.05, calib_fidelity="dev", observables={"compression": 200},
                            density_transfer={"factor": 1.05, "source": "an earlier answer"}))
    conf = {"compression": 1, "replicates": 2, "timeout_s": None}
    study.add_trial(_scored(0.2, 2.16, calib_fidelity="confirm", calib_confirms=0, calib_confirm=conf,
                            density_replicates_g_cm3=[2.1, 2.22]))
    s = summary(study)
    assert s["values"]["slurry_density"]["confirmed_se_rel"] == pytest.approx(0.06 / 1.9)  # sd/sqrt(2)/target
    row = s["values"]["slurry_density"]
    assert row["rung"] == pytest.approx(1.8) and row["transfer_factor"] == 1.05
    assert row["measured_transfer_factor"] == pytest.approx(2.16 / 1.8)  # the full protocol over the rung's own
    assert row["holds"] is False  # +13.7 % from 1.9
    text = "\n".join(lines(s))
    assert "+13.7% +- 3.2% (placements) vs the target 1.9; does NOT hold (tolerance 3%)" in text and "calibrated = the rung's 1.8 x transfer factor 1.05" in text
    assert "transfer: {slurry_density: {factor: 1.2, source: ...}}" in text
    study.add_trial(_scored(0.2, 1.92, calib_fidelity="confirm", calib_confirms=0, calib_confirm=conf))
    s = summary(study)
    assert s["values"]["slurry_density"]["holds"] is True
    assert "holds" in "\n".join(lines(s)) and "transfer: {" not in "\n".join(lines(s))


@pytest.mark.lammps
def test_a_transfer_factor_maps_the_rung_and_the_confirmation_measures_the_next_one(tmp_path: Path):
    """A fidelity's ``transfer`` multiplies the rung's density before it is scored (both are
    recorded); the confirmation at k = 1 reads its own protocol unmapped and reports the
    factor it measured (full protocol over the rung's own density)."""
    factor = 0.9
    study = write_study(tmp_path, "mapped", trials=1, parallel=1, optimizer={"n_initial": 1},
                        slurry={"protocol": "seed", "protocol_steps": 40_000},
                        fidelities={"smoke": {"compression": 2, "transfer": {
                            "slurry_density": {"factor": factor, "source": "a test's made-up factor"}}}})
    runs = tmp_path / "runs"
    out = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                      "--runs-dir", str(runs), "--confirm", "--confirm-replicates", "1",
                                      "--tracking-uri", "none", "--json", cwd=tmp_path))
    trials = optuna.load_study(study_name="mapped", storage=f"sqlite:///{runs / 'calib.db'}").get_trials()
    best, conf = trials[out["best_trial"]], trials[out["confirmation"]["trial"]]
    raw = best.user_attrs["observables"]["density_g_cm3"]
    assert best.user_attrs["errors"]["slurry_density"]["simulated"] == pytest.approx(raw * factor, rel=1e-12)
    assert best.user_attrs["observables"]["density_transferred_g_cm3"] == pytest.approx(raw * factor, rel=1e-12)
    assert best.user_attrs["density_transfer"] == {"factor": factor, "source": "a test's made-up factor"}
    assert "transfer_factor" not in conf.user_attrs["observables"]  # k = 1 is the full protocol: nothing mapped
    confirmed = conf.user_attrs["observables"]["density_g_cm3"]
    assert conf.user_attrs["errors"]["slurry_density"]["simulated"] == pytest.approx(confirmed, rel=1e-12)
    row = out["confirmation"]["values"]["slurry_density"]
    assert (row["transfer_factor"], row["rung"]) == (factor, pytest.approx(raw, rel=1e-12))
    assert row["measured_transfer_factor"] == pytest.approx(confirmed / raw, rel=1e-12)
    assert row["holds"] == (abs(confirmed / 1.9 - 1) <= 0.03)
    # the study's rung on the confirmation's placement: same placement, the rung's steps
    wd = Path(conf.user_attrs["calib_workdir"])
    assert (wd / "system.data").read_bytes() == (wd / "rung_00" / "system.data").read_bytes()
    paired = conf.user_attrs["density_paired_rung"]
    assert paired["compression"] == 2 and len(paired["densities_g_cm3"]) == 1
    assert paired["factors"][0] == pytest.approx(confirmed / paired["densities_g_cm3"][0], rel=1e-12)
    assert row["paired_factors"] == paired["factors"]
    assert "scored mapped to the full protocol: x 0.9" in best.user_attrs["density_protocol"]
    assert "uncompressed" in conf.user_attrs["density_protocol"] and "mapped" not in conf.user_attrs["density_protocol"]
    exported = run_calib("export", "--study", "mapped", "--runs-dir", str(runs), "--format", "lammps", cwd=tmp_path)
    assert "# transfer: the density scored is this fidelity's x 0.9, mapped to the full protocol (factor: a test's" \
        in exported.stdout


def test_bad_transfer_maps_are_refused_naming_the_field(tmp_path: Path):
    runs = tmp_path / "runs"
    for name, extra, field in (
            ("t_key", {"fidelities": {"smoke": {"compression": 2, "transfer": {
                "viscosity_curve": {"factor": 1.1, "source": "x"}}}}}, "fidelities.smoke.transfer"),
            ("t_ramp", {"slurry": {"protocol": "ramp_hold", "allow_protocol_mismatch": True},
                        "fidelities": {"smoke": {"transfer": {"slurry_density": {"factor": 1.1, "source": "x"}}}}},
             "fidelities.smoke.transfer"),
            ("t_k1", {"fidelities": {"smoke": {"compression": 1, "transfer": {
                "slurry_density": {"factor": 1.1, "source": "x"}}}}}, "fidelities.smoke.transfer"),
            ("t_zero", {"fidelities": {"smoke": {"compression": 2, "transfer": {
                "slurry_density": {"factor": 0, "source": "x"}}}}}, "factor")):
        kw = {"slurry": {"protocol": "seed", "protocol_steps": 40_000}, **extra}
        study = write_study(tmp_path, name, **kw)
        proc = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                         "--runs-dir", str(runs), cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and str(study) in err[0] and field in err[0], proc.stderr
        assert not runs.exists()


def test_the_confirmation_runs_its_own_protocol_unmapped_and_empty_maps_keep_old_identities():
    from calib.spec.fidelity import TransferMap
    from calib.study.identity import study_ident
    from calib.study.space import ParameterSpace

    loaded = load_study(DEFAULT_STUDY.parent / "ssb_slurry_mapped.yaml")
    dev = loaded.spec.fidelity_spec("dev")
    assert dev.transfer["slurry_density"].factor > 1  # this study maps its compressed rung
    assert Confirmation(1, 2).fidelity(dev).transfer == {}
    unmapped = loaded.spec.model_copy(update={"fidelities": {"dev": dev.model_copy(update={"transfer": {}})}})
    plain = study_ident(loaded.model_copy(update={"spec": unmapped}), ParameterSpace.from_spec(unmapped.parameters))
    mapped = study_ident(loaded, ParameterSpace.from_spec(loaded.spec.parameters))
    assert "transfer" not in str(plain) and "transfer" in str(mapped) and plain != mapped
    with pytest.raises(ValueError):
        TransferMap(factor=-1.0, source="x")
    assert TransferMap(factor=1.1, source="two\n# lines\nrun 100").source == "two # lines run 100"  # headers
    retold = dev.model_copy(update={"transfer": {"slurry_density": TransferMap(factor=dev.transfer[
        "slurry_density"].factor, source="the same factor, its provenance reworded")}})
    reworded = loaded.spec.model_copy(update={"fidelities": {"dev": retold}})
    assert study_ident(loaded.model_copy(update={"spec": reworded}),
                       ParameterSpace.from_spec(reworded.parameters)) == mapped  # provenance is not physics
