"""``calib pipeline``: slurry -> drying -> calendering and characterisation for one parameter
set (``pipeline``)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_PIPELINE, DEFAULT_RUNS, STUDY_METAVAR, app, chain_seed_option, check_storage,
                              check_tracking, default_storage, fail, is_study_file, placements_option, run_chain,
                              study_name, study_settings, with_backend)
from calib.core.errors import InputError
from calib.core.paths import check_folder, new_folder


@app.command(short_help="Run the stage chain for one parameter set; CSV, plots, MLflow.")
def pipeline(
    params: str = typer.Option("table-s1", metavar="SETS",
                               help="table-s1 (seed Table S1 columns) or best:SLURRY_STUDY,DRYING_STUDY (each a "
                                    "study file or a stored study's name)."),
    study: Optional[str] = typer.Option(
        None, metavar=STUDY_METAVAR, help="Dataset, fidelity and stage settings: a study file, or a stored study's "
                                          "name (the settings it was run with) (default: studies/ssb_pipeline.yaml)."),
    fidelity: Optional[str] = typer.Option(None, metavar="NAME", help="Named fidelity overriding the study's."),
    degrees: Optional[str] = typer.Option(None, metavar="LIST",
                                          help="Calendering degrees in %, comma-separated (default 0,10,...,50)."),
    storage: Optional[str] = typer.Option(None, metavar="URL", help="Optuna storage of the studies named by --study "
                                                                    "and --params best:... (default: sqlite under "
                                                                    "--runs-dir)."),
    tracking_uri: Optional[str] = typer.Option(None, metavar="URI",
                                               help="MLflow tracking URI (default: embedded); 'none' disables."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where pipeline folders and default stores live."),
    seed: int = chain_seed_option(),
    placements: int = placements_option(),
    backend: Optional[str] = typer.Option(None, metavar="NAME",
                                          help="Where runs go: local or slurm (default: the study's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Run slurry -> drying -> calendering (0-50 %) and characterisation for one parameter set; CSV, plots, MLflow."""
    import time as _time

    from calib.execution.pipeline import check_pipeline_inputs, placement_seeds
    from calib.execution.pipeline_model import params_from
    from calib.execution.pipeline_outputs import log_pipeline
    from calib.stages.calendering import PIPELINE_DEGREES_PCT, degrees_problem

    try:
        value = study if study is not None else str(DEFAULT_PIPELINE)
        if not is_study_file(value):  # a stored study's settings: its storage first
            check_folder(runs_dir)
        loaded = study_settings(value, storage or default_storage(runs_dir), fidelity)
        loaded = with_backend(loaded, backend, Path(loaded.path))
        degs = PIPELINE_DEGREES_PCT
        if degrees is not None:
            try:
                degs = tuple(float(x) for x in degrees.split(","))
            except ValueError as exc:
                raise InputError("--degrees", "degrees", f"not a comma-separated list of numbers: {degrees!r}") from exc
            problem = degrees_problem(degs)
            if problem:
                raise InputError("--degrees", "degrees", f"{degrees!r}: {problem}")
        elif loaded.spec.calendering.degrees_pct is not None:
            degs = tuple(loaded.spec.calendering.degrees_pct)  # checked with the study
        check_folder(runs_dir)
        url = storage or default_storage(runs_dir)
        if params != "table-s1":  # only best:... reads the storage
            check_storage(url)
        pset = params_from(best_names(params), url)
        check_pipeline_inputs(loaded)
        check_tracking(tracking_uri)
    except InputError as exc:
        fail(exc)
        return
    from sim_backends.lammps.install import locate_lammps

    from calib.core.backend_registry import make_backend
    from calib.review.tracking_uri import default_tracking_uri

    lammps = locate_lammps()

    workdir = new_folder(runs_dir / "pipelines",
                          f"{loaded.spec.name}-{loaded.spec.fidelity}-{_time.strftime('%Y%m%d-%H%M%S')}")
    name = workdir.name

    def on_stage(stage: str, msg: str) -> None:
        typer.echo(f"pipeline: {stage} ({msg})", err=True)

    summary, result, failed = run_chain(loaded, pset, workdir, make_backend(loaded.spec.resources, lammps), lammps,
                                        degs, placement_seeds(seed, placements), on_stage,
                                        f"the pipeline's jobs were cancelled; its stages so far are in {workdir}")
    (workdir / "pipeline.json").write_text(json.dumps(summary, indent=2, default=str))
    if tracking_uri != "none":
        try:  # the results are on disk: an MLflow failure must not lose them
            with contextlib.redirect_stdout(sys.stderr):
                summary["mlflow_run_id"] = log_pipeline(tracking_uri or default_tracking_uri(runs_dir),
                                                        None if tracking_uri else runs_dir / "mlartifacts", name,
                                                        summary, result, failed)
        except Exception as exc:
            typer.echo(f"calib: warning: the pipeline was not logged to MLflow ({exc.__class__.__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); its results are in {workdir}",
                       err=True)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        from calib.execution.pipeline_outputs import summary_lines

        for line in summary_lines(name, summary):
            typer.echo(line)
    if failed is not None:
        typer.echo(f"calib: pipeline failed at {failed.stage}: {failed.reason}", err=True)
        raise typer.Exit(1)


def best_names(params: str) -> str:
    """``--params`` with each study of ``best:A,B`` given by its name: a study file (as every
    ``--study`` takes) is read for its ``name``. A missing file is refused naming ``--params``;
    a bad one names the file and its field (``load_study``'s error). Anything but two
    entries is left for ``params_from`` to refuse."""
    values = [v.strip() for v in params.removeprefix("best:").split(",")]
    if not params.startswith("best:") or len(values) != 2:
        return params
    names = []
    for value in values:
        try:
            names.append(study_name(value) if value else "")
        except InputError as exc:
            if exc.where != "--study":
                raise
            raise InputError("--params", "params", exc.message) from exc
    return "best:" + ",".join(names)
