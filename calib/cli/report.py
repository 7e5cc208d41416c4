"""``calib report``: a study's HTML review page, logged to its MLflow parent run (``report``)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_RUNS, app, check_tracking, default_storage, fail, storage_option, study_name,
                              study_option)
from calib.core.errors import InputError
from calib.core.paths import check_folder


@app.command(short_help="Write an HTML page reviewing a study; log it to MLflow.")
def report(
    study: str = study_option(),
    out: Optional[Path] = typer.Option(None, metavar="DIR", help="Folder for report.html and its PNGs (default: "
                                                                 "<runs-dir>/<study name>/report)."),
    storage: Optional[str] = storage_option(),
    tracking_uri: Optional[str] = typer.Option(
        None, metavar="URI", help="MLflow tracking URI the report is logged to (default: embedded sqlite under "
                                  "--runs-dir); 'none': not logged."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where the default stores live."),
) -> None:
    """Write one self-contained HTML page (plus PNGs) reviewing a study, and log it to its MLflow parent run."""
    from calib import ledger
    from calib.review.html_report import build_report
    from calib.study.stored import open_stored
    from calib.review.mlflow_tracker import log_study_folder
    from calib.review.tracking_uri import default_tracking_uri

    try:
        name = study_name(study)
        folder = out or runs_dir / name / "report"
        check_folder(folder, "--out" if out is not None else "--runs-dir")
        check_tracking(tracking_uri)
        stored = open_stored(name, storage or default_storage(runs_dir))
    except InputError as exc:
        fail(exc)
        return
    with contextlib.redirect_stdout(sys.stderr):
        rep = build_report(stored, folder)
    typer.echo(f"report: {rep.html.resolve()}")
    for key, status in rep.sections.items():
        typer.echo(f"  {key:12s} {status}")
    uri = tracking_uri or default_tracking_uri(runs_dir)
    if tracking_uri != "none" and (tracking_uri or Path(uri.removeprefix("sqlite:///")).exists()):
        try:
            with contextlib.redirect_stdout(sys.stderr):
                rid = log_study_folder(uri, name, stored.study.user_attrs.get(ledger.UID_ATTR), folder, "report")
            typer.echo(f"logged to MLflow run {rid} (artifacts: report/)")
        except Exception as exc:
            typer.echo(f"calib: warning: the report was not logged to MLflow: {exc}", err=True)
