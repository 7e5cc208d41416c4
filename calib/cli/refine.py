"""``calib refine``: parameter sets you choose, run as trials of a study (``refine``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_RUNS, app, check_tracking, default_storage, fail, manual_sets, open_study,
                              parallel_option, storage_option, study_option, tracking_option, with_backend)
from calib.cli.optimize import run_optimize
from calib.core.errors import InputError
from calib.core.paths import check_folder


@app.command(short_help="Run parameter sets you choose as trials of a study.")
def refine(
    study: str = study_option(),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="A value of a free key (repeatable): one set; free keys not named come from "
                                        "the best trial."),
    file: Optional[Path] = typer.Option(None, "--file", metavar="FILE",
                                        help="YAML file: a list of sets (mappings KEY: VALUE)."),
    scan: list[str] = typer.Option([], "--scan", metavar="KEY=LOW:HIGH:N",
                                   help="N values of KEY through the best set, --set applied (repeatable)."),
    allow_outside_bounds: bool = typer.Option(False, "--allow-outside-bounds",
                                              help="Run values outside the study's bounds (flagged)."),
    storage: Optional[str] = storage_option(),
    tracking_uri: Optional[str] = tracking_option(),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where trial directories and default stores live."),
    parallel: Optional[int] = parallel_option(),
    backend: Optional[str] = typer.Option(None, metavar="NAME",
                                          help="Where runs go: local or slurm (default: the study's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Run parameter sets you choose as trials of a study (tagged manual; the model learns from them).
    Exits 1 when every set failed, naming each failure."""
    from calib import ledger

    try:
        check_folder(runs_dir)
        check_tracking(tracking_uri)
        url = storage or default_storage(runs_dir)
        stored = open_study(study, url)
        sets = manual_sets(stored, set_, file, scan, allow_outside_bounds)
        loaded = with_backend(stored.loaded, backend, Path(stored.loaded.path))
    except InputError as exc:
        fail(exc)
        return
    trials = stored.study.get_trials(deepcopy=False)
    first_new = len(trials)
    waiting = sum(1 for t in trials if t.state.name == "WAITING" and not ledger.is_confirmation(t))
    n = ledger.budget_count(stored.study) + waiting + len(sets)
    before = ledger.best_trial(stored.study)
    ran: list[dict] = []

    def report(summary: dict, study) -> list[str]:
        from calib.ledger import MANUAL_ATTR

        rows = []
        lines = [f"manual sets ({len(sets)}):"]
        for t in study.get_trials(deepcopy=False):
            if t.number < first_new or not t.user_attrs.get(MANUAL_ATTR) or not t.state.is_finished():
                continue
            if t.state.name == "FAIL" and t.user_attrs.get("calib_lost"):
                continue
            row = {"trial": t.number, "params": dict(t.params), "state": t.state.name, "value": t.value,
                   "origin": t.user_attrs[MANUAL_ATTR], "outside_bounds": t.user_attrs.get("calib_outside_bounds"),
                   "fail_reason": t.user_attrs.get("fail_reason")}
            rows.append(row)
            vals = ", ".join(f"{k}={v:.4g}" for k, v in t.params.items())
            res = (f"objective {t.value:.4g}" if t.value is not None else f"FAIL: {row['fail_reason']}")
            flag = f" [outside bounds: {', '.join(row['outside_bounds'])}]" if row["outside_bounds"] else ""
            lines.append(f"  trial {t.number}: {vals} -> {res}{flag}")
        summary["manual_trials"] = rows
        ran.extend(rows)
        if before is not None:
            lines.append(f"best before: trial {before.number} (objective {before.value:.4g})")
        return lines

    run_optimize(loaded, url, tracking_uri, runs_dir, n, None, parallel, as_json, stored.lineage,
                  queue=[(m.params, m.user_attrs()) for m in sets], report=report)
    if ran and all(r["state"] == "FAIL" for r in ran):  # the study may have an answer; the request has none
        typer.echo(f"calib: error: every manual set failed ({len(ran)}): "
                   + "; ".join(f"trial {r['trial']}: {r['fail_reason']}" for r in ran), err=True)
        raise typer.Exit(1)
