"""``calib`` command line: ``calib optimize``, ``refine``, ``predict``, ``report``,
``pipeline``, ``reproduce`` and ``export``.

Bad input: one line on stderr naming the file (or option) and field, exit status 2, and
nothing written.

The package: ``common`` (the Typer app, its one-line usage errors, the defaults and checks
the commands share), one module per command (``optimize``, ``refine``, ``predict``,
``report``, ``pipeline``, ``reproduce``, ``export``; each registers its command on the app
when imported) and ``summary`` (a study's printed summary). This module imports the command
modules in the order ``calib --help`` lists them, and gives ``app`` (the Typer app) and
``main`` (the console script ``calib``).
"""

from __future__ import annotations

from calib.cli import optimize, refine, predict, report, pipeline, reproduce, export  # noqa: F401,I001  (in --help order)
from calib.cli.common import app

__all__ = ["optimize", "refine", "predict", "report", "pipeline", "reproduce", "export", "app", "main"]


def main() -> None:  # console script entry point
    app(prog_name="calib")
