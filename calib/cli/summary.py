"""A study's summary as ``calib optimize`` and ``calib refine`` print it without ``--json``
(``print_summary``)."""

from __future__ import annotations

import typer


def print_summary(s: dict) -> None:
    typer.echo(f"study {s['study']} ({s['storage']}): {s['trials_complete']} complete, {s['trials_failed']} failed")
    by_fid = s.get("trials_by_fidelity") or {}
    if len(by_fid) > 1:
        typer.echo("by fidelity: " + "; ".join(f"{name}: {r['complete']} complete, {r['failed']} failed, "
                                               f"{r['core_s']:.0f} core-s" for name, r in by_fid.items()))
    if s["best_trial"] is None:
        typer.echo("no completed trial" + (f" at the target fidelity {s['target_fidelity']}" if s["trials_complete"]
                                           else "") + ": the study has no answer")
        for line in failure_lines(s):
            typer.echo(f"  {line}")
        mlflow_line(s)
        return
    typer.echo(f"best trial {s['best_trial']} (objective {s['best_value']:.4g}"
               + (f", judged at the target fidelity {s['target_fidelity']})" if len(by_fid) > 1 else ")"))
    caveats = (s.get("caveats") or {}).get("lines") or []
    for line in s.get("best_lines") or []:
        if not (caveats and line.startswith("convergence:")):  # the caveats below say it
            typer.echo(f"  {line}")
    if s.get("lineage"):
        ln = s["lineage"]
        typer.echo(f"  started from: {ln['study'] or ln['state_file']}"
                   + (f" trial {ln['trial']}" if ln.get("trial") is not None else "") + f" (sha256 {ln['sha256'][:12]})")
    if len(s.get("pareto") or []) > 1:
        typer.echo("  Pareto front: trials " + ", ".join(str(p["trial"]) for p in s["pareto"]))
    typer.echo("  params: " + ", ".join(f"{k}={v:.4g}" for k, v in (s["best_params"] or {}).items()))
    if s.get("confirmation"):
        from calib.optimize.confirmation import lines as confirmation_lines

        for line in confirmation_lines(s["confirmation"]):
            typer.echo(line)
    elif (s.get("best_compression") or 1) > 1 and s.get("best_transfer"):
        mapped = s["best_transfer"]
        typer.echo(f"  calibrated at k = {s['best_compression']} mapped to the full protocol by x "
                   f"{mapped['factor']:.4g}, a factor measured at an earlier answer")
    if caveats:
        typer.echo("caveats:")
        for line in caveats:
            typer.echo(f"  {line}")
    post = s.get("posterior") or {}
    for line in post.get("lines") or ([f"  posterior of the free keys: not computed ({post['not_computed']})"]
                                      if post.get("not_computed") else []):
        typer.echo(line if line.startswith("  ") else f"  {line}")
    mlflow_line(s)


def mlflow_line(s: dict) -> None:
    if s.get("mlflow"):
        m = s["mlflow"]
        typer.echo(f"review in MLflow: {m['url']}" + (f"  (after: {m['serve']})" if m["serve"] else ""))
        if m.get("trials_url"):
            typer.echo(f"  the trials, best first: {m['trials_url']}")


def failure_lines(s: dict) -> list[str]:
    """Why the study's trials failed (the reasons, most frequent first, with their trials)
    and what to do: for a study without a completed trial."""
    by_reason: dict[str, list[int]] = {}
    for number, reason in (s.get("failures") or {}).items():
        by_reason.setdefault(str(reason or "unknown failure"), []).append(int(number))
    out = [f"{len(ts)} trial{'s' if len(ts) > 1 else ''} ({', '.join(map(str, ts[:8]))}"
           f"{', ...' if len(ts) > 8 else ''}) failed: {reason}"
           for reason, ts in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:3]]
    if len(by_reason) > 3:
        out.append(f"... and {len(by_reason) - 3} other reasons (--json lists every trial's)")
    out.append(no_answer_hint(s))
    return out


def no_answer_hint(s: dict) -> str:
    """What to do when a study has no completed trial at its target fidelity. Failed trials
    count against the budget, so a rerun must ask for more (``--trials`` above the trials
    finished); another fidelity is another study (another name)."""
    finished = int(s.get("trials_complete") or 0) + int(s.get("trials_failed") or 0)
    more = f"rerun the same command with --trials {finished + max(1, finished)} (failed trials count against " \
           f"the budget: {finished} {'has' if finished == 1 else 'have'} finished)"
    if s.get("trials_complete"):  # complete, but stopped early or only at cheaper rungs of a ladder
        stopped = int(s.get("trials_stopped_early") or 0)
        if stopped:
            return (f"hint: {stopped} of the {s['trials_complete']} complete trials were stopped early (their partial "
                    "run ruled out the target band: no answer among them)"
                    + (" and the rest ran at cheaper fidelities" if stopped < int(s["trials_complete"]) else "")
                    + ": " + more + "; or widen the study's early-stop band")
        return (f"hint: the {s['trials_complete']} complete trials ran at cheaper fidelities than the target "
                f"{s.get('target_fidelity')}: {more}, so that the model confirms a set at the target")
    reasons = [str(r or "") for r in (s.get("failures") or {}).values()]
    if not reasons:
        return "hint: no trial has finished yet (another driver may still run them): " + more
    top = max(set(reasons), key=reasons.count)
    if top.startswith("timeout: wall time exceeded") or "(the limit is the study's trial_timeout_s" in top:
        return ("hint: the runs hit their wall-time limit: raise trial_timeout_s in the study file, then " + more
                + "; a cheaper --fidelity is another study: give it another name")
    return (f"hint: each failed trial's directory (under the runs folder: {s['study']}/trial_*/) keeps its "
            "log.lammps and stderr.txt; fix the cause, then " + more)
