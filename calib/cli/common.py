"""The ``calib`` command line's Typer app and what its commands share: the app with its
one-line usage errors (``usage_error_line``, ``_OneLineUsageErrors``); the defaults
(``DEFAULT_RUNS``, ``default_storage``, ``default_study``, ``DEFAULT_PIPELINE``); the shared
checks (``fail``, ``check_storage``, ``check_tracking``, ``at_least``, ``with_backend``,
``manual_sets``); Ctrl-C and SIGTERM (``terminated_as_interrupt``, ``interrupted``).

The commands register on ``app`` from their own modules (``calib.cli.optimize``, ...), which
``calib.cli`` imports in the order ``calib --help`` lists them; this module imports none of them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer
import typer.core

from calib import stages
from calib.core.errors import InputError, Terminated
from calib.study.load import DEFAULT_STUDY


def usage_error_line(exc: Exception, command: str | None = None) -> str:
    """The one line for a command-line usage error that the CLI's parser (typer's click)
    found: an unknown option or command, a missing option or value, an extra argument.
    ``calib: error: <option, or the command>: <field>: <click's message>; see '<command> --help'``,
    like every other bad input (click would print a usage box of several lines). ``command``
    (e.g. ``calib optimize``) names the command when click's error does not carry it."""
    from typer._click.exceptions import BadOptionUsage, BadParameter, NoSuchOption

    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        command = " ".join(["calib", *ctx.command_path.split(" ", 1)[1:]])  # whatever the program's name
    command = command or "calib"
    message = " ".join(exc.format_message().split()).rstrip(".")  # one line, whatever click wrapped
    where, field = command, "usage"
    if isinstance(exc, (NoSuchOption, BadOptionUsage)):
        where, field = exc.option_name, "option"
    elif isinstance(exc, BadParameter) and exc.param is not None:
        opts = [o for o in getattr(exc.param, "opts", []) if o.startswith("--")]
        where, field = (max(opts, key=len) if opts else command), exc.param.name or "value"
    return f"calib: error: {where}: {field}: {message}; see '{command} --help'"


def quiet_libraries() -> None:
    """Keep libraries' routine log lines off stderr, which carries calib's own lines: MLflow
    logs at INFO as it sets up a store ("Creating initial MLflow database tables...",
    "Updating database tables") and alembic through it. MLflow reads its level from
    ``MLFLOW_LOGGING_LEVEL`` when first imported, so this sets it to WARNING unless the user
    set it (a user's ``MLFLOW_LOGGING_LEVEL=INFO`` brings the lines back); warnings and errors
    still show. Called before any command runs."""
    import logging

    if "MLFLOW_LOGGING_LEVEL" in os.environ:
        return
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    if "mlflow" in sys.modules:  # imported already (calib used as a library): its loggers are set up
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


class _OneLineUsageErrors(typer.core.TyperGroup):
    """The command group, with usage errors reported as one line (:func:`usage_error_line`),
    exit status 2. ``calib`` alone still prints the help."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort

        quiet_libraries()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            if exc.format_message().strip():  # (with rich, the help is already printed)
                exc.show()
            sys.exit(exc.exit_code)
        except UsageError as exc:
            given = kwargs.get("args", args[0] if args else None)
            words = list(sys.argv[1:] if given is None else given)
            sub = next((w for w in words if w in self.commands), None)  # the command, if one was named
            typer.echo(usage_error_line(exc, f"calib {sub}" if sub else None), err=True)
            sys.exit(2)
        except ClickException as exc:
            typer.echo(f"calib: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("calib: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineUsageErrors,
                  help="Bayesian force-field calibration of CGMD electrode-manufacturing models.")

DEFAULT_RUNS = Path("runs")


def default_storage(runs_dir: Path) -> str:
    """SQLite ledger ``<runs_dir>/calib.db``."""
    return f"sqlite:///{(runs_dir / 'calib.db').resolve()}"


def fail(exc: InputError) -> None:
    typer.echo(f"calib: error: {exc}", err=True)
    raise typer.Exit(2)


def check_storage(url: str, runs_dir: Path | None = None) -> None:
    from calib import ledger

    ledger.check_storage(url, runs_dir=runs_dir)


def check_tracking(uri: str | None) -> None:
    from calib.review.tracking_uri import check_tracking_uri

    if uri is not None:
        check_tracking_uri(uri)


def at_least(option: str, low: int):
    """Parser of a whole-number option: a value that is not a whole number or is below
    ``low`` is refused in one line (``calib: error: --trials: trials: ...``, exit 2) rather
    than typer's usage box. Use as ``typer.Option(..., parser=at_least("--trials", 1),
    metavar="INTEGER")``."""
    field = option.lstrip("-").replace("-", "_")

    def parse(value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            fail(InputError(option, field, f"not a whole number: {value!r}"))
        try:
            number = value if isinstance(value, int) else int(value.strip(), 10)
        except ValueError:
            fail(InputError(option, field, f"not a whole number: {value!r}"))
            raise
        if number < low:
            fail(InputError(option, field, f"must be at least {low}, got {number}"))
        return number

    return parse


def default_study(stage: str) -> Path | None:
    """A stage's default study file (``Stage.default_study`` under ``studies/``), or None."""
    name = stages.get(stage).default_study
    return DEFAULT_STUDY.parent / name if name else None


DEFAULT_PIPELINE = DEFAULT_STUDY.parent / "ssb_pipeline.yaml"


@contextlib.contextmanager
def terminated_as_interrupt():
    """SIGTERM (a scheduler's stop, ``kill``) handled like Ctrl-C while the study runs: it
    raises ``Terminated`` (a ``KeyboardInterrupt``), so jobs are cancelled, running trials
    re-queued and MLflow runs ended; the command then exits 143 (128 + SIGTERM). Further
    SIGTERMs during that clean-up are ignored (SIGKILL still stops it; see ``calib.execution.loop``)."""
    import signal

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(exc: KeyboardInterrupt, what: str) -> None:
    """Ctrl-C (exit 130) or SIGTERM (143) outside a study: say what happened, exit."""
    term = isinstance(exc, Terminated)
    typer.echo(f"calib: {'terminated (SIGTERM)' if term else 'interrupted'}; {what}", err=True)
    raise typer.Exit(143 if term else 130)


def with_backend(loaded, backend: str | None, path: Path):
    """The study with ``--backend`` applied, refused (exit 2) if unknown or unusable here."""
    from calib.core.backend_registry import check

    name = backend or loaded.spec.resources.backend
    check(name, "--backend" if backend else f"{path}: resources")
    return loaded if name == loaded.spec.resources.backend else loaded.with_section("resources", backend=name)


def manual_sets(stored, set_: list[str], file: Path | None, scan: list[str], allow_outside: bool):
    """The checked sets of ``--set``, ``--file`` and ``--scan`` (``calib.optimize.manual_sets``)."""
    from calib.ledger import best_trial
    from calib.optimize.manual_sets import build_sets, parse_assignments, parse_scan, read_sets_file

    assign = parse_assignments(set_)
    scans = [parse_scan(x) for x in scan]
    file_sets = read_sets_file(file) if file is not None else []
    best = best_trial(stored.study)
    base = {k: best.params[k] for k in stored.space.keys if k in best.params} if best else None
    return build_sets(stored.space, stored.name, base, assign, file_sets, str(file or ""), scans, allow_outside)
