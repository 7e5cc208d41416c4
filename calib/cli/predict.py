"""``calib predict``: the study's model of each observable at parameter sets (``predict``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_RUNS, app, default_storage, fail, manual_sets, open_study, storage_option,
                              study_option)
from calib.core.errors import InputError


@app.command(short_help="Predict each observable at parameter sets from the study's model.")
def predict(
    study: str = study_option(),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="A value of a free key (repeatable); free keys not named come from the best "
                                        "trial (no --set, --file or --scan: the best trial itself)."),
    file: Optional[Path] = typer.Option(None, "--file", metavar="FILE",
                                        help="YAML file: a list of sets (mappings KEY: VALUE)."),
    scan: list[str] = typer.Option([], "--scan", metavar="KEY=LOW:HIGH:N",
                                   help="N values of KEY through the best set (repeatable)."),
    allow_outside_bounds: bool = typer.Option(False, "--allow-outside-bounds",
                                              help="Predict outside the study's bounds (extrapolation)."),
    storage: Optional[str] = storage_option(),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where the default storage lives."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The study's model of each observable at parameter sets, with its uncertainty, before
    any run. It states the trials it was fitted on and how its intervals did on the study's
    last trials predicted from the ones before each (the sd is widened to match)."""
    try:
        stored = open_study(study, storage or default_storage(runs_dir))
        sets = manual_sets(stored, set_, file, scan, allow_outside_bounds) if (set_ or file or scan) else None
        from calib.optimize.surrogate import Surrogate

        model = Surrogate.fit(stored.study, stored.space, calibrate=True)  # needs >= 2 complete trials
    except InputError as exc:
        fail(exc)
        return
    if sets is None:
        from calib.ledger import best_trial
        from calib.optimize.manual_sets import ManualSet

        best = best_trial(stored.study)
        assert best is not None
        sets = [ManualSet({k: best.params[k] for k in stored.space.keys}, f"best trial {best.number}")]
    preds = model.predict([m.params for m in sets])
    from calib.optimize.surrogate import reliability_lines

    notes = reliability_lines(model, len(stored.space.keys))
    if as_json:
        held = model.held_out
        typer.echo(json.dumps({"study": stored.name, "trials_fitted": model.n_trials, "notes": notes,
                               "held_out": None if held is None else {
                                   n: {"trials": len(z), "within_1sd": held.within(n, 1), "within_2sd": held.within(n, 2),
                                       "sd_scale": held.scale[n]} for n, z in held.z.items()},
                               "predictions": [
            {"params": m.params, "outside_bounds": list(m.outside),
             "outputs": {n: {"value": p.value, "low": p.low, "high": p.high, "sd": p.sd, "unit": p.output.unit,
                             "target": p.output.target, "scale": p.output.log or "linear"} for n, p in row.items()}}
            for m, row in zip(sets, preds)]}, indent=2))
        return
    typer.echo(f"study {stored.name}: model fitted to {model.n_trials} complete trials (one GP per output; "
               "value +- 1 sd)")
    for line in notes:
        typer.echo(f"  {line}")
    for m, row in zip(sets, preds):
        flag = f"  [outside bounds: {', '.join(m.outside)}: extrapolated]" if m.outside else ""
        typer.echo("set " + ", ".join(f"{k}={v:.4g}" for k, v in m.params.items()) + flag)
        for name, p in row.items():
            unit = "" if p.output.unit in ("", "1") else f" {p.output.unit}"
            target = "" if p.output.target is None or name == "objective" else f"   (target {p.output.target:.4g}{unit})"
            if p.output.log:
                typer.echo(f"  {name:28s} {p.value:.4g}{unit} [{p.low:.4g}, {p.high:.4g}]{target}")
            else:
                typer.echo(f"  {name:28s} {p.value:.4g} +- {p.sd:.2g}{unit}{target}")
