"""The ``calib`` command line's Typer app and what its commands share: the app with its
one-line usage errors (``usage_error_line``, ``_OneLineUsageErrors``), its plain help
(``_HelpFormatter``) and quiet libraries (``quiet_libraries``); the defaults
(``DEFAULT_RUNS``, ``default_storage``, ``default_study``, ``DEFAULT_PIPELINE``); what
``--study`` names, a study file or a stored study's name (``is_study_file``, ``study_file``,
``study_name``, ``open_study``, ``study_settings``); the shared checks (``fail``,
``check_storage``, ``check_tracking``, ``at_least``, ``with_backend``, ``manual_sets``);
Ctrl-C and SIGTERM (``terminated_as_interrupt``, ``interrupted``).

The commands register on ``app`` from their own modules (``calib.cli.optimize``, ...), which
``calib.cli`` imports in the order ``calib --help`` lists them; this module imports none of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import typer
import typer.core
from typer._click.core import Context
from typer._click.formatting import HelpFormatter

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
    """Keep libraries' routine output off stderr, which carries calib's own lines: MLflow
    logs at INFO as it sets up a store ("Creating initial MLflow database tables...",
    "Updating database tables", alembic through it), and prints two links ("View run ...
    at", "View experiment at") each time a run on a tracking server ends (to stdout, which a
    study sends to stderr; calib prints its own link once). Their switches are environment
    variables, each set here unless the user set it: ``MLFLOW_LOGGING_LEVEL=WARNING`` (read
    when MLflow is first imported; MLflow's warnings and errors still show) and
    ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true``. Called before any command runs."""
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if "MLFLOW_LOGGING_LEVEL" in os.environ:
        return
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    if "mlflow" in sys.modules:  # imported already (calib used as a library): its loggers are set up
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


_HELD_HYPHEN = "\u2011"  # a non-breaking hyphen, for the time a help text is wrapped


def _hold_hyphens(text: str) -> str:
    return re.sub(r"(?<=\w)-(?=\w)", _HELD_HYPHEN, text)


class _HelpFormatter(HelpFormatter):
    """click's help formatter, except that it never breaks a line at a hyphen inside a word:
    ``--runs-dir`` stays whole (click's wrapper would cut it after ``--runs-``)."""

    def write_text(self, text: str) -> None:
        super().write_text(_hold_hyphens(text))

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(first, _hold_hyphens(second)) for first, second in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_HELD_HYPHEN, "-")


class _HelpContext(Context):
    """The context of ``calib`` and its commands: its help is written by ``_HelpFormatter``."""

    formatter_class = _HelpFormatter


class _OneLineUsageErrors(typer.core.TyperGroup):
    """The command group, with usage errors reported as one line (:func:`usage_error_line`),
    exit status 2. ``calib`` alone still prints the help. The group and its commands write
    their help with ``_HelpFormatter``."""

    context_class = _HelpContext

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            command.context_class = _HelpContext

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort

        quiet_libraries()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:  # ``calib`` alone: the help, on stdout as --help prints it
            typer.echo(exc.format_message())
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


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineUsageErrors, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Bayesian force-field calibration of CGMD electrode-manufacturing models.")
"""The app. Its help is click's plain help (``rich_markup_mode=None``): rich's boxed tables cut
long option names at 80 columns and show a flag's type; each option gives its metavar (FILE,
DIR, URL, N, ...) and a flag is one name (``--json``, not ``--json / --no-json``). A crash is
Python's plain traceback (no rich box of local variables, which wraps at 80 columns in a log
and would show a storage URL's password)."""

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


STUDY_METAVAR = "FILE|NAME"
"""How ``--study`` shows its value in ``--help``."""


# The options several commands share, one declaration each (a fresh ``typer.Option`` per use).


def study_option():
    """``--study FILE|NAME`` (required) of the commands that read a stored study."""
    return typer.Option(..., metavar=STUDY_METAVAR, help="The study: its study file, or its name in the storage.")


def storage_option():
    """``--storage URL``: the Optuna storage (default: SQLite under ``--runs-dir``)."""
    return typer.Option(None, metavar="URL", help="Optuna storage URL (default: sqlite under --runs-dir).")


def tracking_option():
    """``--tracking-uri URI`` of the commands that run trials."""
    return typer.Option(None, metavar="URI",
                        help="MLflow tracking URI (default: embedded sqlite under --runs-dir); 'none' disables.")


def parallel_option():
    """``--parallel N``: trials at once (default: the study's)."""
    return typer.Option(None, parser=at_least("--parallel", 1), metavar="N",
                        help="Trials run at once (default: the study's).")


def placements_option():
    """``--placements N`` of the stage chains (``pipeline``, ``reproduce``)."""
    return typer.Option(2, parser=at_least("--placements", 1), metavar="N",
                        help="Random placements to run (error bars: their spread, with a voxel SE's resolution error); "
                             "1: the spread is not measured.")


def chain_seed_option():
    """``--seed`` of the stage chains: the first placement's simulation seed."""
    return typer.Option(1, parser=at_least("--seed", 0), metavar="INTEGER",
                        help="Simulation seed of the first placement (the next ones: seed + 1, ...).")


def is_study_file(value: str) -> bool:
    """What a ``--study`` value is, on every command: a study file if it ends in ``.yaml`` or
    ``.yml``, holds a path separator (a study name cannot) or names an existing file; any
    other value is the name of a stored study. A file that does not exist is still a file:
    ``study_file`` refuses it, so that a mistyped path is not looked up as a name."""
    return value.endswith((".yaml", ".yml")) or "/" in value or os.sep in value or Path(value).is_file()


def study_file(value: str) -> Path:
    """The study file a ``--study`` value names; ``InputError`` naming ``--study`` if it is not
    a file (missing, or a folder)."""
    path = Path(value)
    if path.is_dir():
        raise InputError("--study", "study", f"{value} is a folder, not a study file")
    if not path.is_file():
        raise InputError("--study", "study", f"no such study file: {value}")
    return path


def study_name(value: str) -> str:
    """The name of the study a ``--study`` value names: a study file's ``name`` (the file read
    and checked by ``calib.study.load.load_study``, so a bad file is refused naming it), or the
    value itself."""
    if not is_study_file(value):
        return value
    from calib.study.load import load_study

    return load_study(study_file(value)).spec.name


def open_study(value: str, storage: str):
    """The stored study a ``--study`` value names, rebuilt (``calib.study.stored.open_stored``;
    ``InputError`` naming ``--study`` or ``--storage`` if it is not there)."""
    from calib.study.stored import open_stored

    return open_stored(study_name(value), storage)


def study_settings(value: str, storage: str, fidelity: str | None):
    """The settings a ``--study`` value gives ``calib pipeline`` and ``calib reproduce``: a study
    file read by ``load_study``, or the settings a stored study was run with; ``fidelity``
    (``--fidelity``) overrides either's."""
    from calib.study.load import load_study, with_fidelity

    if is_study_file(value):
        return load_study(study_file(value), fidelity=fidelity)
    loaded = open_study(value, storage).loaded
    if fidelity is not None:
        loaded = loaded.model_copy(update={"spec": with_fidelity(loaded.spec, fidelity)})
    return loaded


STUDIES_DIR = DEFAULT_STUDY.parent
"""The study files calib ships (``studies/``)."""


def default_study(stage: str) -> Path | None:
    """A stage's default study file (``Stage.default_study`` under ``studies/``), or None."""
    name = stages.get(stage).default_study
    return STUDIES_DIR / name if name else None


def shown_path(path: Path) -> str:
    """``path`` as a message shows it: relative to the working folder if under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


DEFAULT_PIPELINE = STUDIES_DIR / "ssb_pipeline.yaml"


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


def run_chain(loaded, pset, workdir: Path, backend, lammps, degrees, seeds, on_stage, where: str, **kw):
    """``calib pipeline`` and ``calib reproduce``: the stage chain for one parameter set
    (``calib.execution.pipeline.run_placements``; ``kw`` passed on), libraries' chatter on
    stderr, Ctrl-C and SIGTERM ending the command (``interrupted``, ``where``: what is left
    and where). A failed stage does not end it: (summary, result, the ``PipelineFailed`` or
    None), the summary with ``failed`` (stage, reason) when a stage failed."""
    from calib.execution.pipeline import run_placements
    from calib.execution.pipeline_model import PipelineFailed, PipelineResult

    failed = None
    try:
        with contextlib.redirect_stdout(sys.stderr), terminated_as_interrupt():
            result = run_placements(loaded, pset, workdir, backend, lammps, degrees, seeds, on_stage, **kw)
    except PipelineFailed as exc:
        failed, result = exc, exc.partial or PipelineResult(workdir)
    except KeyboardInterrupt as exc:
        interrupted(exc, where)
    summary = result.summary(pset, loaded.spec.fidelity)
    if failed is not None:
        summary["failed"] = {"stage": failed.stage, "reason": failed.reason}
    return summary, result, failed
