"""What a reviewer reads on a study's MLflow runs: a trial run's review tags (``review_tags``:
how it was proposed, where it sits in its bounds) and flags (``flag_tags``), and the
experiment's description (``experiment_description``: how to read the runs)."""

from __future__ import annotations

from pathlib import Path

from calib import ledger
from calib.study.space import ParameterSpace


def review_tags(spec, space: ParameterSpace, number: int, attrs: dict, params: dict[str, float],
                workdir: Path) -> dict[str, str]:
    """What a reviewer needs on a trial's run: how it was proposed, which free keys sit
    at a bound (within 1 % of the range), the free keys and their bounds. ``attrs``: the
    trial's ledger attributes; ``params``: its free parameters; ``workdir``: its directory."""
    kind = ledger.proposal_kind(attrs, number, spec.optimizer.sampler, spec.optimizer.n_initial)
    at_bound = []
    for axis in space.axes:
        v = params.get(axis.key)
        if v is None:
            continue
        u = axis.to_unit(v)  # the search's own scale (log for log axes)
        if not 0.0 <= u <= 1.0:
            continue  # outside the bounds (a manual set): flagged as such
        if u <= 0.01:
            at_bound.append(f"{axis.key}=low")
        elif u >= 0.99:
            at_bound.append(f"{axis.key}=high")
    return {"calib.proposal": kind, "calib.at_bound": ", ".join(at_bound) or "none",
            "calib.workdir": str(workdir),
            "calib.outside_bounds": ", ".join(attrs.get(ledger.OUTSIDE_ATTR) or []) or "none",
            "calib.free_keys": ", ".join(space.keys),
            "calib.bounds": ", ".join(f"{x.key}=[{x.low:g}, {x.high:g}]{' log' if x.log else ''}"
                                      for x in space.axes)}


def flag_tags(score, state: str, tags: dict[str, str]) -> dict[str, str]:
    """What a reviewer must not miss on a trial's run: ``calib.equilibrated`` (yes / NO /
    n/a) and ``calib.flags``, a short list (failed, not equilibrated, outside the bounds, at a
    bound) or ``none``."""
    flags = []
    if state != "COMPLETE":
        flags.append("FAILED")
    eq = "n/a" if score is None else ("yes" if score.equilibrated else "NO")
    if eq == "NO":
        flags.append("not equilibrated")
    if tags.get("calib.outside_bounds", "none") != "none":
        flags.append(f"outside bounds ({tags['calib.outside_bounds']})")
    if tags.get("calib.at_bound", "none") != "none":
        flags.append(f"at bound ({tags['calib.at_bound']})")
    if score is not None and score.stopped:  # slurry.early_stop_band_rel: never the study's answer
        flags.append("stopped early (above the band)")
    return {"calib.equilibrated": eq, "calib.flags": "; ".join(flags) or "none"}


def experiment_description(spec, objective: str) -> str:
    """The MLflow experiment's description (markdown): how to read a study's runs (the
    tracker appends the link to the trials' saved view, which needs the experiment's id)."""
    targets = ", ".join(spec.objective.targets)
    return (f"**calib study `{spec.name}`**: stage {spec.stage}, dataset `{spec.dataset}`, fidelity {spec.fidelity}, "
            f"{spec.objective.scalarisation} of {targets}.\n\n"
            f"- The run named `{spec.name}` is the study: its description names the best trial with links to its "
            "run and to the chart of the objective; tag `calib.best_trial` and its link `calib.best_run`, "
            "tags `best.<key>` (Table S1), metrics `best.<observable>` next to `target.<observable>`, "
            f"the series `best_{objective}` (best so far by trial number) and `trial_{objective}`; "
            "its artifacts hold `report/report.html` (`calib report`). It spans the study (first trial's start to "
            "last trial's end); `wall_time_active_s` is the time during which a trial ran.\n"
            f"- Each trial is a nested run spanning the trial: its description (state, objective, free keys, why it "
            f"failed), metric `{objective}` (lower is better), tags `calib.proposal` "
            "(initial design, model, manual), `calib.flags`, `calib.equilibrated`, `calib.at_bound`, "
            "`calib.bounds`; artifacts `log.lammps.txt` and `in.*.txt` preview in the browser, `fail_reason.txt` "
            "on failed trials, `system.data`, `params.json` and `final.restart` rerun it.\n"
            "- The targets (value, unit, uncertainty, provenance) are the runs' dataset input `targets`.\n"
            "- Metrics show 6 significant digits; the ledger keeps every value in full (`calib export`, `--json`).\n"
            f"- Sort the runs by `metrics.{objective}` ascending (the trials are then listed flat, best first); "
            "filter `tags.calib.role = 'trial'`.")
