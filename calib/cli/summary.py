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
        typer.echo("no completed trial" + (f" at the target fidelity {s['target_fidelity']}" if len(by_fid) > 1
                                           else ""))
        return
    typer.echo(f"best trial {s['best_trial']} (objective {s['best_value']:.4g}"
               + (f", judged at the target fidelity {s['target_fidelity']})" if len(by_fid) > 1 else ")"))
    for line in s.get("best_lines") or []:
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
    elif (s.get("best_compression") or 1) > 1:
        mapped = s.get("best_transfer")
        typer.echo(f"  not confirmed: calibrated at k = {s['best_compression']}"
                   + (f" mapped to the full protocol by x {mapped['factor']:.4g}, a factor measured at an earlier "
                      "answer" if mapped else "")
                   + ", whose error against the full protocol depends on the set; rerun with --confirm to run it at "
                     "k = 1 (hours)")
    post = s.get("posterior") or {}
    for line in post.get("lines") or ([f"  posterior of the free keys: not computed ({post['not_computed']})"]
                                      if post.get("not_computed") else []):
        typer.echo(line if line.startswith("  ") else f"  {line}")
    if s.get("mlflow"):
        m = s["mlflow"]
        typer.echo(f"review in MLflow: {m['url']}" + (f"  (after: {m['serve']})" if m["serve"] else ""))
        if m.get("trials_url"):
            typer.echo(f"  the trials, best first: {m['trials_url']}")
