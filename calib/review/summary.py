"""The summary of a study that ``calib optimize --json`` prints."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from objectives.scalarise import pareto_front

from calib import ledger
from calib.optimize.confirmation import summary as confirmation_summary
from calib.review.caveats import study_caveats
from calib.ledger import best_trial


def pareto(study: optuna.Study) -> list[dict]:
    """Non-dominated COMPLETE trials at the target fidelity over the absolute objective
    errors (all minimised): trial number, |error| per objective and the trial's scalarised
    value."""
    done = [t for t in ledger.at_target(study) if t.user_attrs.get("objective_errors")]
    if not done:
        return []
    names = sorted(done[0].user_attrs["objective_errors"])
    done = [t for t in done if sorted(t.user_attrs["objective_errors"]) == names]
    points = [[abs(float(t.user_attrs["objective_errors"][n])) for n in names] for t in done]
    return [{"trial": done[i].number, "objectives": dict(zip(names, points[i])), "value": done[i].value}
            for i in sorted(pareto_front(points), key=lambda i: done[i].number)]


def study_summary(study: optuna.Study, storage: str) -> dict:
    """Study name, storage, trial counts, best trial with its Table S1 params, the
    observables its stage reported (next to their targets) and its summary lines, and its
    confirmation at the target protocol (``calib.optimize.confirmation``; None without one). Trial counts
    leave confirmations out."""
    every = study.get_trials(deepcopy=False)
    trials = [t for t in every if not ledger.is_confirmation(t)]  # confirmations: "confirmation" below
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    lost = ledger.lost_numbers(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL and t.number not in lost]
    best = best_trial(study)
    out: dict = {
        "study": study.study_name,
        "storage": storage,
        "trials_complete": len(complete),
        "trials_failed": len(failed),
        "trials_lost_and_reproposed": len(lost),
        "trials_running": sum(1 for t in trials if t.state == TrialState.RUNNING),
        "trials_stopped_early": sum(1 for t in complete if t.user_attrs.get(ledger.STOPPED_ATTR)),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": best.user_attrs.get("table_s1") if best else None,
        "best_observables": None,
        "failures": {t.number: t.user_attrs.get("fail_reason") for t in failed},
        "pareto": pareto(study),
    }
    by_fidelity: dict[str, dict] = {}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.FAIL) and t.number not in lost:
            row = by_fidelity.setdefault(t.user_attrs.get(ledger.FIDELITY_ATTR,
                                                          study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR, "?")),
                                         {"complete": 0, "failed": 0, "core_s": 0.0})
            row["complete" if t.state == TrialState.COMPLETE else "failed"] += 1
            row["core_s"] += float(t.user_attrs.get("core_s") or 0.0)
    out["target_fidelity"] = study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR)
    out["confirmation"] = confirmation_summary(study)
    out["posterior"] = study.user_attrs.get(ledger.POSTERIOR_ATTR)  # calib.optimize.posterior, kept when the study ended
    out["trials_by_fidelity"] = by_fidelity
    if "viscosity_curve_source" in study.user_attrs:
        out["viscosity_curve_source"] = study.user_attrs["viscosity_curve_source"]
    if best is not None:
        # what the best trial's stage reported (calib.stages.base.Score.ledger_attrs)
        out["best_observables"] = best.user_attrs.get("report") or legacy_report(best)
        out["best_lines"] = best.user_attrs.get("summary_lines", [])
        k = (best.user_attrs.get("observables") or {}).get("compression")
        out["best_compression"] = int(k) if isinstance(k, (int, float)) else None  # seed protocol's k (slurry)
        if isinstance(best.user_attrs.get("density_transfer"), dict):  # its rung mapped to the full protocol
            out["best_transfer"] = best.user_attrs["density_transfer"]
        if best.user_attrs.get("lineage") is not None:
            out["lineage"] = best.user_attrs["lineage"]
    caveats = study_caveats(study)
    out["caveats"] = caveats.as_dict() if caveats is not None else None
    return out


def legacy_report(best: optuna.trial.FrozenTrial) -> dict:
    """``best_observables`` of a trial recorded before stages stored their own report
    (calib before the stage plug-ins): rebuilt from its ``errors``, ``observables``,
    ``calendering``, ``viscosity`` and density attributes."""
    obs = dict(best.user_attrs.get("observables", {}))
    errors = best.user_attrs.get("errors", {})
    out: dict = {name: {"simulated": e["simulated"], "target": e["target"], "unit": e["unit"],
                        "rel_error": e["rel_error"]} for name, e in errors.items() if "target" in e}
    if "calendered_porosity" in errors:
        out["calendered_porosity_error"] = errors["calendered_porosity"]["error"]
    if best.user_attrs.get("calendering") is not None:
        out["calendering"] = best.user_attrs["calendering"]
    if "porosity" in obs:
        out["dried"] = {k: obs[k] for k in obs if k in ("thickness_um", "porosity") or k.startswith("fraction_")}
    if "viscosity_curve" in errors:
        out["viscosity_curve_rms_log_error"] = errors["viscosity_curve"]["rms_log_error"]
    rates = best.user_attrs.get("viscosity")
    if rates:
        out["viscosity_pa_s"] = [
            {"shear_rate_per_s": r["rate_exp_per_s"], "simulated_rate_per_us": r["rate_sim_per_us"],
             "viscosity_pa_s": r["viscosity_pa_s"], "sem_pa_s": r["sem_pa_s"], "strain": r["strain"],
             "steps": r["steps"], "converged": r["converged"]} for r in rates]
    if "density_g_cm3" in obs:
        out.update({"density_sem_g_cm3": obs.get("density_sem_g_cm3"),
                    "density_change_rel": obs.get("density_change_rel"),
                    "density_converged": best.user_attrs.get("density_converged"),
                    "density_convergence": best.user_attrs.get("density_convergence")})
    out["equilibrated"] = best.user_attrs.get("equilibrated")
    return out
