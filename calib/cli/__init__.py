"""``calib`` command line: ``calib optimize``, ``calib pipeline``, ``calib reproduce`` and
``calib export``.

Bad input: one line on stderr naming the file (or option) and field, exit status 2, and
nothing written.

The package: ``calib.cli.app`` (the Typer app, its one-line usage errors, the defaults and
checks the commands share), one module per command (``optimize``, ``refine``, ``predict``,
``report``, ``pipeline``, ``reproduce``, ``export``; each registers its command on the app
when imported) and ``summary`` (a study's printed summary). This module imports the command
modules in the order ``calib --help`` lists them, and gives ``app`` (the Typer app: after
these imports the attribute ``calib.cli.app`` is the app, not its module, which is
``sys.modules["calib.cli.app"]``; ``from calib.cli.app import X`` works as usual) and ``main``
(the console script ``calib``).
"""

from __future__ import annotations

from calib.cli import optimize, refine, predict, report, pipeline, reproduce, export  # noqa: F401,I001  (in --help order)
from calib.cli.app import app

__all__ = ["optimize", "refine", "predict", "report", "pipeline", "reproduce", "export", "app", "main"]


def main() -> None:  # console script entry point
    app(prog_name="calib")
