"""``calib export``: calibrated sets as Table S1 and LAMMPS include files (``export``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_RUNS, STUDY_METAVAR, app, at_least, default_storage, fail, storage_option,
                              study_name)
from calib.core.errors import InputError


@app.command(short_help="Print calibrated sets as Table S1; write LAMMPS include files.")
def export(
    study: list[str] = typer.Option(..., "--study", metavar=STUDY_METAVAR,
                                    help="The study: its study file, or its name in the storage; repeat it for the "
                                         "stages of one lineage (slurry, drying, calendering): one column each."),
    top: Optional[int] = typer.Option(None, parser=at_least("--top", 1), metavar="K",
                                      help="The K best sets of the study, side by side."),
    pareto: bool = typer.Option(False, "--pareto", help="The non-dominated sets of a multi-objective study."),
    trial: Optional[int] = typer.Option(None, parser=at_least("--trial", 0), metavar="N",
                                        help="Trial N (any completed trial, manual ones included); with several "
                                             "studies, a trial of the most downstream one."),
    fmt: str = typer.Option("markdown", "--format", metavar="FORMAT", help="markdown, csv, json, latex or lammps."),
    out: Optional[Path] = typer.Option(None, metavar="DIR", help="Also write one LAMMPS include file per column (with "
                                                                 "its provenance) and the table in every format into "
                                                                 "this folder."),
    storage: Optional[str] = storage_option(),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where the default storage lives."),
) -> None:
    """Print calibrated sets as Table S1 (one column per stage or per chosen trial); --out
    writes LAMMPS include files with their provenance."""
    from calib.publish.export import ExportRequest, build, check_out, write

    try:
        req = ExportRequest(tuple(study_name(s) for s in study), storage or default_storage(runs_dir), fmt, top,
                            pareto, trial, out)
        req.check()
        if out is not None:
            check_out(out, [])
        result = build(req)
        if out is not None:
            check_out(out, list(result.files))
    except InputError as exc:
        fail(exc)
        return
    if out is not None:  # the files first: a table on stdout means they were written
        try:
            paths = write(result, out)
        except OSError as exc:
            typer.echo(f"calib: error: --out: out: could not write into {out} ({exc}); nothing was kept", err=True)
            raise typer.Exit(1)
        typer.echo(f"calib: wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths), err=True)
    sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")
