"""``calib`` command line: ``calib optimize``, ``calib pipeline``, ``calib reproduce`` and
``calib export``.

Bad input: one line on stderr naming the file (or option) and field, exit status 2, and
nothing written.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer
import typer.core

from calib import stages
from calib.core.errors import InputError, StudyHalted, Terminated
from calib.core.paths import check_folder, new_folder
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


class _OneLineUsageErrors(typer.core.TyperGroup):
    """The command group, with usage errors reported as one line (:func:`usage_error_line`),
    exit status 2. ``calib`` alone still prints the help."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort

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


def _fail(exc: InputError) -> None:
    typer.echo(f"calib: error: {exc}", err=True)
    raise typer.Exit(2)


def _check_storage(url: str, runs_dir: Path | None = None) -> None:
    from calib import ledger

    ledger.check_storage(url, runs_dir=runs_dir)


def _check_tracking(uri: str | None) -> None:
    from calib.review.tracking_uri import check_tracking_uri

    if uri is not None:
        check_tracking_uri(uri)


def _at_least(option: str, low: int):
    """Parser of a whole-number option: a value that is not a whole number or is below
    ``low`` is refused in one line (``calib: error: --trials: trials: ...``, exit 2) rather
    than typer's usage box. Use as ``typer.Option(..., parser=_at_least("--trials", 1),
    metavar="INTEGER")``."""
    field = option.lstrip("-").replace("-", "_")

    def parse(value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            _fail(InputError(option, field, f"not a whole number: {value!r}"))
        try:
            number = value if isinstance(value, int) else int(value.strip(), 10)
        except ValueError:
            _fail(InputError(option, field, f"not a whole number: {value!r}"))
            raise
        if number < low:
            _fail(InputError(option, field, f"must be at least {low}, got {number}"))
        return number

    return parse


def default_study(stage: str) -> Path | None:
    """A stage's default study file (``Stage.default_study`` under ``studies/``), or None."""
    name = stages.get(stage).default_study
    return DEFAULT_STUDY.parent / name if name else None


@app.command()
def optimize(
    stage: str = typer.Option(..., help=f"Stage to calibrate ({', '.join(stages.names())})."),
    study: Optional[Path] = typer.Option(None, help="Study file (default: the stage's default study)."),
    fidelity: Optional[str] = typer.Option(None, help="Named fidelity overriding the study's (smoke, dev, paper, ...)."),
    trials: Optional[int] = typer.Option(None, parser=_at_least("--trials", 1), metavar="INTEGER",
                                         help="Finished trials the study should have (>= 1)."),
    seed: Optional[int] = typer.Option(None, parser=_at_least("--seed", 0), metavar="INTEGER",
                                       help="Proposal and simulation seed (default: the study's)."),
    parallel: Optional[int] = typer.Option(None, parser=_at_least("--parallel", 1), metavar="INTEGER",
                                           help="Trials run at once (default: the study's)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    tracking_uri: Optional[str] = typer.Option(
        None, help="MLflow tracking URI (default: embedded sqlite under --runs-dir); 'none' disables."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where trial directories and default stores live."),
    viscosity_csv: Optional[Path] = typer.Option(
        None, help="Rheometer CSV (shear rate, viscosity) replacing the dataset's viscosity curve for this study."),
    backend: Optional[str] = typer.Option(None, help="Where runs go: local or slurm (default: the study's "
                                                     "resources.backend, local)."),
    heartbeat_s: int = typer.Option(30, parser=_at_least("--heartbeat-s", 1), metavar="INTEGER",
                                    help="Seconds between heartbeats of each running trial."),
    grace_s: Optional[int] = typer.Option(None, parser=_at_least("--grace-s", 1), metavar="INTEGER",
                                          help="A trial without a heartbeat for this long belongs to a dead driver "
                                               "and is re-queued (default: 4 heartbeats)."),
    confirm: bool = typer.Option(False, "--confirm", help="Once the budget is spent, run the best set again at the "
                                                          "target protocol on fresh placements (a confirmation trial)."),
    confirm_compression: int = typer.Option(1, parser=_at_least("--confirm-compression", 1), metavar="INTEGER",
                                            help="The confirmation's protocol compression k (1: the full protocol)."),
    confirm_replicates: int = typer.Option(2, parser=_at_least("--confirm-replicates", 1), metavar="INTEGER",
                                           help="Fresh placements the confirmation runs (their spread is reported)."),
    confirm_timeout_s: Optional[float] = typer.Option(
        None, metavar="SECONDS", help="Wall-time limit of each confirmation run, seconds (default: the study's trial_timeout_s times "
                   "the study's compression over the confirmation's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Calibrate one stage's force field against its dataset. Several drivers may run one
    study at once (same study file and --storage): they share its trial budget. With
    --confirm the best set is then run at the target protocol (k = 1 by default: hours for
    the slurry's seed protocol) and shown next to its calibrated value."""
    from calib.study.load import load_study

    try:
        stages.lookup(stage, "--stage", "stage")
        path = study or default_study(stage)
        if path is None:
            raise InputError("--study", "study", f"stage {stage} has no default study: give --study FILE")
        loaded = load_study(path, fidelity=fidelity, viscosity_csv=viscosity_csv)
        if loaded.spec.stage != stage:
            raise InputError(str(path), "stage", f"study is for stage {loaded.spec.stage!r}, not {stage!r}")
        loaded = _with_backend(loaded, backend, path)
        if grace_s is not None and grace_s < 2 * heartbeat_s:
            raise InputError("--grace-s", "grace_s", f"{grace_s} s is under two heartbeats ({2 * heartbeat_s} s): "
                                                     "live drivers would be taken for dead")
        conf = None
        if confirm:
            from calib.optimize.confirmation import Confirmation

            if confirm_timeout_s is not None and not confirm_timeout_s > 0:
                raise InputError("--confirm-timeout-s", "(option)", f"must be positive, got {confirm_timeout_s:g}")
            conf = Confirmation(confirm_compression, confirm_replicates, confirm_timeout_s)
            problem = loaded.stage.fidelity_problem(loaded, conf.fidelity(loaded.spec.fidelity_spec()))
            if problem:
                raise InputError("--confirm-compression", "confirm_compression", problem)
        elif confirm_compression != 1 or confirm_replicates != 2 or confirm_timeout_s is not None:
            name = ("--confirm-compression" if confirm_compression != 1 else
                    "--confirm-replicates" if confirm_replicates != 2 else "--confirm-timeout-s")
            raise InputError(name, "(option)", "only used with --confirm")
        check_folder(runs_dir)
        url = storage or default_storage(runs_dir)
        _check_storage(url, runs_dir)
        _check_tracking(tracking_uri)
        lineage = None
        if loaded.spec.upstream is not None:
            from calib.study.upstream import resolve_upstream

            lineage = resolve_upstream(loaded, url)
            loaded.stage.check_upstream(loaded, lineage)
    except InputError as exc:
        _fail(exc)
        return
    _run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json, lineage, heartbeat_s,
                  grace_s or 4 * heartbeat_s, confirm=conf)


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


def _interrupted(exc: KeyboardInterrupt, what: str) -> None:
    """Ctrl-C (exit 130) or SIGTERM (143) outside a study: say what happened, exit."""
    term = isinstance(exc, Terminated)
    typer.echo(f"calib: {'terminated (SIGTERM)' if term else 'interrupted'}; {what}", err=True)
    raise typer.Exit(143 if term else 130)


def _with_backend(loaded, backend: str | None, path: Path):
    """The study with ``--backend`` applied, refused (exit 2) if unknown or unusable here."""
    from calib.core.backend_registry import check

    name = backend or loaded.spec.resources.backend
    check(name, "--backend" if backend else f"{path}: resources")
    return loaded if name == loaded.spec.resources.backend else loaded.with_section("resources", backend=name)


def _run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json, lineage=None,
                  heartbeat_s: int = 30, grace_s: int = 120, queue=(), report=None, confirm=None) -> None:
    """Run the study (``queue``: sets to run first, ``calib refine``) and print its summary
    (``report(summary)``: lines printed before it)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim_backends.lammps.install import locate_lammps

    from calib import ledger
    from calib.core.backend_registry import make_backend
    from calib.execution.loop import Event, LoopConfig, run_study
    from calib.review.summary import study_summary
    from calib.review.mlflow_tracker import MlflowTracker
    from calib.review.tracker import NullTracker
    from calib.review.tracking_uri import default_tracking_uri

    spec = loaded.spec
    n_trials = trials or spec.trials
    cfg = LoopConfig(storage=url, runs_dir=runs_dir, n_trials=n_trials, parallel=parallel or spec.parallel,
                     seed=spec.seed if seed is None else seed, heartbeat_s=heartbeat_s, grace_s=grace_s,
                     confirm=confirm)
    lammps = locate_lammps()
    if tracking_uri == "none":
        tracker = NullTracker()
    else:
        tracker = MlflowTracker(tracking_uri or default_tracking_uri(runs_dir),
                                artifact_root=None if tracking_uri else runs_dir / "mlartifacts")
    existing = None
    if ledger.study_exists(spec.name, url):  # refuse a resume of another calibration up front
        import optuna

        from calib.study.identity import study_ident
        from calib.study.space import ParameterSpace

        existing = optuna.load_study(study_name=spec.name, storage=url)
        try:
            ledger.check_resumable(existing, study_ident(loaded, ParameterSpace.from_spec(spec.parameters), lineage),
                                   url)
        except InputError as exc:
            _fail(exc)
    runs_dir.mkdir(parents=True, exist_ok=True)  # the first write: every check above has passed
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=as_json) as progress:
        task = progress.add_task(f"{spec.name} [{spec.stage}/{' -> '.join(spec.ladder)}]", total=n_trials, last="")

        def on_event(e: Event) -> None:
            if e.kind in ("complete", "fail"):
                if e.counted:
                    progress.advance(task)
                text = f"trial {e.trial}: {e.message}" + (f" (objective {e.value:.3g})" if e.value is not None else "")
                progress.update(task, last=text[:80])
                if not as_json:
                    progress.console.print(("  " if e.kind == "complete" else "  FAIL ") + text)
            elif e.kind == "warning":
                progress.console.print(f"  warning (trial {e.trial}): {e.message}" if e.trial >= 0
                                       else f"  warning: {e.message}")  # -1: about the study
            elif e.kind == "info":
                progress.console.print(f"  {e.message}")
            elif e.kind == "recovered":
                progress.console.print(f"  recovered trial {e.trial}: {e.message}")
            elif e.kind == "reattached":
                progress.console.print(f"  trial {e.trial}: {e.message}")

        if existing is not None:
            progress.update(task, completed=min(n_trials, ledger.finished_count(existing)))
        try:
            # stdout carries only the summary: libraries' chatter (MLflow prints run links) goes to stderr
            with contextlib.redirect_stdout(sys.stderr), terminated_as_interrupt():
                result = run_study(loaded, cfg, make_backend(spec.resources, lammps), lammps, tracker, on_event,
                                   lineage, queue)
        except InputError as exc:
            _fail(exc)
            return
        except StudyHalted as exc:
            typer.echo(f"calib: error: study {spec.name!r} stopped: {exc}. Fix the cause and rerun the same "
                       "command to resume.", err=True)
            raise typer.Exit(1)
        except KeyboardInterrupt as exc:
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            typer.echo(f"calib: {how}; running trials were cancelled and will be proposed again. "
                       f"Rerun the same command to resume study {spec.name!r}.", err=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130)
    summary = study_summary(result.study, url)
    if getattr(tracker, "experiment_id", None) is not None:
        summary["mlflow"] = mlflow_view(tracker.uri, tracker.experiment_id, tracker.parent_run_id)
    if report is not None:
        lines = report(summary, result.study)
        if not as_json:
            for line in lines:
                typer.echo(line)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)


def mlflow_view(uri: str, experiment_id: str, parent_run_id: str | None) -> dict:
    """Where to review the study in the MLflow UI: the runs table's page (MLflow 3 opens an
    experiment on its GenAI overview unless the URL asks for model training), and for an
    embedded store the command that serves it."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    served = uri.startswith(("http://", "https://"))
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id,
            "url": f"{uri.rstrip('/')}/{page}" if served else f"http://127.0.0.1:5000/{page}",
            "serve": None if served else f"mlflow ui --backend-store-uri {uri}"}


def _print_summary(s: dict) -> None:
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


def _manual_sets(stored, set_: list[str], file: Path | None, scan: list[str], allow_outside: bool):
    """The checked sets of ``--set``, ``--file`` and ``--scan`` (``calib.optimize.manual_sets``)."""
    from calib.ledger import best_trial
    from calib.optimize.manual_sets import build_sets, parse_assignments, parse_scan, read_sets_file

    assign = parse_assignments(set_)
    scans = [parse_scan(x) for x in scan]
    file_sets = read_sets_file(file) if file is not None else []
    best = best_trial(stored.study)
    base = {k: best.params[k] for k in stored.space.keys if k in best.params} if best else None
    return build_sets(stored.space, stored.name, base, assign, file_sets, str(file or ""), scans, allow_outside)


@app.command()
def refine(
    study: str = typer.Option(..., help="Study name in the storage."),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE (repeatable): one set; free keys not named come "
                                                      "from the best trial."),
    file: Optional[Path] = typer.Option(None, "--file", help="YAML file: a list of sets (mappings KEY: VALUE)."),
    scan: list[str] = typer.Option([], "--scan", help="KEY=LOW:HIGH:N (repeatable): N values of KEY through the "
                                                       "best set (--set applied)."),
    allow_outside_bounds: bool = typer.Option(False, help="Run values outside the study's bounds (flagged)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    tracking_uri: Optional[str] = typer.Option(
        None, help="MLflow tracking URI (default: embedded sqlite under --runs-dir); 'none' disables."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where trial directories and default stores live."),
    parallel: Optional[int] = typer.Option(None, parser=_at_least("--parallel", 1), metavar="INTEGER",
                                           help="Trials run at once (default: the study's)."),
    backend: Optional[str] = typer.Option(None, help="Where runs go: local or slurm (default: the study's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Run parameter sets you choose as trials of a study (tagged manual; the model learns from them)."""
    from calib import ledger
    from calib.study.stored import open_stored

    try:
        check_folder(runs_dir)
        _check_tracking(tracking_uri)
        url = storage or default_storage(runs_dir)
        stored = open_stored(study, url)
        sets = _manual_sets(stored, set_, file, scan, allow_outside_bounds)
        loaded = _with_backend(stored.loaded, backend, Path(stored.loaded.path))
    except InputError as exc:
        _fail(exc)
        return
    trials = stored.study.get_trials(deepcopy=False)
    first_new = len(trials)
    waiting = sum(1 for t in trials if t.state.name == "WAITING" and not ledger.is_confirmation(t))
    n = ledger.budget_count(stored.study) + waiting + len(sets)
    before = ledger.best_trial(stored.study)

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
        if before is not None:
            lines.append(f"best before: trial {before.number} (objective {before.value:.4g})")
        return lines

    _run_optimize(loaded, url, tracking_uri, runs_dir, n, None, parallel, as_json, stored.lineage,
                  queue=[(m.params, m.user_attrs()) for m in sets], report=report)


@app.command()
def predict(
    study: str = typer.Option(..., help="Study name in the storage."),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE (repeatable); free keys not named come from the "
                                                      "best trial (none: the best trial itself)."),
    file: Optional[Path] = typer.Option(None, "--file", help="YAML file: a list of sets (mappings KEY: VALUE)."),
    scan: list[str] = typer.Option([], "--scan", help="KEY=LOW:HIGH:N (repeatable): N values of KEY through the "
                                                       "best set."),
    allow_outside_bounds: bool = typer.Option(False, help="Predict outside the study's bounds (extrapolation)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where the default storage lives."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The study's model of each observable at parameter sets, with its uncertainty, before any run."""
    from calib.study.stored import open_stored

    try:
        stored = open_stored(study, storage or default_storage(runs_dir))
        sets = _manual_sets(stored, set_, file, scan, allow_outside_bounds) if (set_ or file or scan) else None
        from calib.optimize.surrogate import Surrogate

        model = Surrogate.fit(stored.study, stored.space)  # needs >= 2 complete trials
    except InputError as exc:
        _fail(exc)
        return
    if sets is None:
        from calib.ledger import best_trial
        from calib.optimize.manual_sets import ManualSet

        best = best_trial(stored.study)
        assert best is not None
        sets = [ManualSet({k: best.params[k] for k in stored.space.keys}, f"best trial {best.number}")]
    preds = model.predict([m.params for m in sets])
    if as_json:
        typer.echo(json.dumps({"study": study, "trials_fitted": model.n_trials, "predictions": [
            {"params": m.params, "outside_bounds": list(m.outside),
             "outputs": {n: {"value": p.value, "low": p.low, "high": p.high, "sd": p.sd, "unit": p.output.unit,
                             "target": p.output.target, "scale": p.output.log or "linear"} for n, p in row.items()}}
            for m, row in zip(sets, preds)]}, indent=2))
        return
    typer.echo(f"study {study}: model fitted to {model.n_trials} complete trials (one GP per output; "
               "value +- 1 posterior sd)")
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


@app.command()
def report(
    study: str = typer.Option(..., help="Study name in the storage."),
    out: Optional[Path] = typer.Option(None, help="Folder for report.html and its PNGs (default: "
                                                  "<runs-dir>/<study>/report)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    tracking_uri: Optional[str] = typer.Option(
        None, help="MLflow tracking URI the report is logged to (default: embedded sqlite under --runs-dir); "
                   "'none': not logged."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where the default stores live."),
) -> None:
    """Write one self-contained HTML page (plus PNGs) reviewing a study, and log it to its MLflow parent run."""
    from calib import ledger
    from calib.review.html_report import build_report
    from calib.study.stored import open_stored
    from calib.review.mlflow_tracker import log_study_folder
    from calib.review.tracking_uri import default_tracking_uri

    try:
        folder = out or runs_dir / study / "report"
        check_folder(folder, "--out" if out is not None else "--runs-dir")
        _check_tracking(tracking_uri)
        stored = open_stored(study, storage or default_storage(runs_dir))
    except InputError as exc:
        _fail(exc)
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
                rid = log_study_folder(uri, study, stored.study.user_attrs.get(ledger.UID_ATTR), folder, "report")
            typer.echo(f"logged to MLflow run {rid} (artifacts: report/)")
        except Exception as exc:
            typer.echo(f"calib: warning: the report was not logged to MLflow: {exc}", err=True)


DEFAULT_PIPELINE = DEFAULT_STUDY.parent / "ssb_pipeline.yaml"


@app.command()
def pipeline(
    params: str = typer.Option("table-s1", help="table-s1 (seed Table S1 columns) or best:SLURRY_STUDY,DRYING_STUDY."),
    study: Path = typer.Option(DEFAULT_PIPELINE, help="Study file giving dataset, fidelity and stage settings."),
    fidelity: Optional[str] = typer.Option(None, help="Named fidelity overriding the study's."),
    degrees: Optional[str] = typer.Option(None, help="Calendering degrees in %, comma-separated (default 0,10,...,50)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage of the studies named by --params best:..."),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: embedded); 'none' disables."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where pipeline folders and default stores live."),
    seed: int = typer.Option(1, parser=_at_least("--seed", 0), metavar="INTEGER",
                             help="Simulation seed of the first placement (the next ones: seed + 1, ...)."),
    placements: int = typer.Option(2, parser=_at_least("--placements", 1), metavar="N",
                                   help="Random placements to run (error bars: their spread, with a voxel SE's "
                                        "resolution error); 1: the spread is not measured."),
    backend: Optional[str] = typer.Option(None, help="Where runs go: local or slurm (default: the study's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Run slurry -> drying -> calendering (0-50 %) and characterisation for one parameter set; CSV, plots, MLflow."""
    import time as _time

    from calib.execution.pipeline import (PipelineFailed, check_pipeline_inputs, log_pipeline, params_from, placement_seeds,
                           run_placements)
    from calib.stages.calendering import PIPELINE_DEGREES_PCT, degrees_problem
    from calib.study.load import load_study

    try:
        loaded = _with_backend(load_study(study, fidelity=fidelity), backend, study)
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
            _check_storage(url)
        pset = params_from(params, url)
        check_pipeline_inputs(loaded)
        _check_tracking(tracking_uri)
    except InputError as exc:
        _fail(exc)
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

    failed = None
    try:
        with contextlib.redirect_stdout(sys.stderr), terminated_as_interrupt():
            result = run_placements(loaded, pset, workdir, make_backend(loaded.spec.resources, lammps), lammps, degs,
                                    placement_seeds(seed, placements), on_stage)
    except PipelineFailed as exc:
        from calib.execution.pipeline import PipelineResult

        failed, result = exc, exc.partial or PipelineResult(workdir)
    except KeyboardInterrupt as exc:
        _interrupted(exc, f"the pipeline's jobs were cancelled; its stages so far are in {workdir}")
    summary = result.summary(pset, loaded.spec.fidelity)
    if failed is not None:
        summary["failed"] = {"stage": failed.stage, "reason": failed.reason}
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
        from calib.execution.pipeline import summary_lines

        for line in summary_lines(name, summary):
            typer.echo(line)
    if failed is not None:
        typer.echo(f"calib: pipeline failed at {failed.stage}: {failed.reason}", err=True)
        raise typer.Exit(1)


@app.command()
def reproduce(
    fidelity: Optional[str] = typer.Option(None, help="Named fidelity (default: the pipeline study's, dev)."),
    study: Path = typer.Option(DEFAULT_PIPELINE, help="Study file giving dataset and stage settings."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where the run folder goes (runs/reproduce/...)."),
    seed: int = typer.Option(1, parser=_at_least("--seed", 0), metavar="INTEGER",
                             help="Simulation seed of the first placement (the next ones: seed + 1, ...)."),
    placements: int = typer.Option(2, parser=_at_least("--placements", 1), metavar="N",
                                   help="Random placements to run (error bars: their spread, with a voxel SE's "
                                        "resolution error); 1: the spread is not measured."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the seed's Table S1 through slurry -> drying -> calendering (0-50 %) and compare
    with the seed's reported values, side by side."""
    import time as _time

    from calib.execution.pipeline import (PipelineFailed, PipelineResult, check_pipeline_inputs, params_from, placement_seeds,
                           run_placements)
    from calib.stages.errorbars import describe_errors
    from calib.publish.reproduce import density_against_seed, reproduction, table
    from calib.stages.calendering import PIPELINE_DEGREES_PCT
    from calib.study.load import load_study

    try:
        loaded = load_study(study, fidelity=fidelity)
        check_pipeline_inputs(loaded)
        check_folder(runs_dir)
    except InputError as exc:
        _fail(exc)
        return
    from sim_backends.lammps.install import locate_lammps
    from sim_backends.local import LocalBackend

    lammps = locate_lammps()
    pset = params_from("table-s1", "sqlite:///:memory:")
    workdir = new_folder(runs_dir / "reproduce", f"{loaded.spec.fidelity}-{_time.strftime('%Y%m%d-%H%M%S')}")
    failed = None
    with contextlib.redirect_stdout(sys.stderr):
        try:
            with terminated_as_interrupt():
                result = run_placements(loaded, pset, workdir, LocalBackend(mpirun=lammps.mpirun), lammps,
                                        PIPELINE_DEGREES_PCT, placement_seeds(seed, placements),
                                      lambda stage, msg: typer.echo(f"reproduce: {stage} ({msg})", err=True),
                                      keep_going=True)
        except PipelineFailed as exc:
            failed, result = exc, exc.partial or PipelineResult(workdir)
        except KeyboardInterrupt as exc:
            _interrupted(exc, f"the jobs were cancelled; the stages so far are in {workdir}")
    summary = result.summary(pset, loaded.spec.fidelity)
    if failed is not None:
        summary["failed"] = {"stage": failed.stage, "reason": failed.reason}
    rep = reproduction(summary)
    first = workdir if placements == 1 else workdir / f"placement_{seed}"  # the trajectory of the first placement
    rep["slurry_density_vs_seed"] = density_against_seed(first / "slurry", rep["protocols"]["slurry_density_g_cm3"])
    (workdir / "reproduce.json").write_text(json.dumps(rep, indent=2, default=str))
    if as_json:
        typer.echo(json.dumps(rep, indent=2, default=str))
    else:
        typer.echo(f"Seed Table S1 at fidelity {loaded.spec.fidelity} ({rep['bead_counts']['total']} beads), "
                   f"implied solids content {_pct(rep['solids_content'])}; folder {workdir}")
        for line in table(rep):
            typer.echo(line)
        first = (rep.get("degrees") or [{}])[0]
        typer.echo("error bars: " + describe_errors(rep.get("placements", 1), first.get("se_method", "voxel"),
                                                    first.get("conductivity_method", "voxel")))
        names = {"slurry_density_g_cm3": "the slurry density", "dried_porosity": "the dried film",
                 "degrees": "calendering"}
        for what, name in names.items():
            if rep["protocols"].get(what):
                typer.echo(f"protocol of {name}: {rep['protocols'][what]}")
        vs = rep["slurry_density_vs_seed"]
        if vs:
            at = vs["passes_seed_value_at_fraction"]
            typer.echo("slurry density against the seed's 1.89 g/cm^3: " + (
                "never reached" if at is None else f"passes it at {at:.1%} of the run") + f" (plot: {vs['plot']})")
        for d, reason in rep["failed_degrees"].items():
            typer.echo(f"calendering at {d} % left out: {reason}")
        checks = rep["trend_checks"]
        typer.echo("seed trends: film thins on drying: " + _yes(checks["film_thins_on_drying"])
                   + "; porosity falls with the calendering degree: " + _yes(checks["porosity_falls_with_degree"]))
        cut = [f"{d['degree_pct']:g}" for d in rep["degrees"] if d.get("conductivity_s_m") is not None
               and d.get("se_tortuosity") is None]
        why = ""
        if cut and checks["se_tortuosity_falls_with_degree"] is None:
            why = f" (the SE does not span on every placement at {', '.join(cut)} %)"
        typer.echo("seed trends (Fig. 4): SE tortuosity falls: " + _yes(checks["se_tortuosity_falls_with_degree"]) + why
                   + "; SE D_eff rises: " + _yes(checks["se_diffusivity_rises_with_degree"])
                   + "; conductivity rises then falls: " + _yes(checks["conductivity_rises_then_falls"])
                   + f" (peak at {_deg(checks['conductivity_peak_degree_pct'])}, seed about 30 %)"
                   + "; conductivity / tortuosity peaks at 30-50 %: " + _yes(checks["ratio_peaks_at_30_to_50_pct"])
                   + f" (at {_deg(checks['ratio_peak_degree_pct'])}, seed near 40 %)")
    if failed is not None:
        typer.echo(f"calib: reproduction failed at {failed.stage}: {failed.reason}", err=True)
        raise typer.Exit(1)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _deg(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g} %"


def _yes(v: bool | str | None) -> str:
    if isinstance(v, str):  # calib.stages.errorbars.UNRESOLVED
        return "within the error bars"
    return "not measured" if v is None else ("yes" if v else "NO")


@app.command()
def export(
    study: list[str] = typer.Option(..., "--study", help="Study name in the storage; repeat it for the stages of one "
                                                         "lineage (slurry, drying, calendering): one column each."),
    top: Optional[int] = typer.Option(None, parser=_at_least("--top", 1), metavar="K",
                                      help="The K best sets of the study, side by side."),
    pareto: bool = typer.Option(False, "--pareto", help="The non-dominated sets of a multi-objective study."),
    trial: Optional[int] = typer.Option(None, parser=_at_least("--trial", 0), metavar="N",
                                        help="Trial N (any completed trial, manual ones included); with several "
                                             "studies, a trial of the most downstream one."),
    fmt: str = typer.Option("markdown", "--format", help="markdown, csv, json, latex or lammps."),
    out: Optional[Path] = typer.Option(None, help="Also write one LAMMPS include file per column (with its "
                                                  "provenance) and the table in every format into this folder."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where the default storage lives."),
) -> None:
    """Print calibrated sets as Table S1 (one column per stage or per chosen trial); --out
    writes LAMMPS include files with their provenance."""
    from calib.publish.export import ExportRequest, build, check_out, write

    req = ExportRequest(tuple(study), storage or default_storage(runs_dir), fmt, top, pareto, trial, out)
    try:
        req.check()
        if out is not None:
            check_out(out, [])
        result = build(req)
        if out is not None:
            check_out(out, list(result.files))
    except InputError as exc:
        _fail(exc)
        return
    if out is not None:  # the files first: a table on stdout means they were written
        try:
            paths = write(result, out)
        except OSError as exc:
            typer.echo(f"calib: error: --out: out: could not write into {out} ({exc}); nothing was kept", err=True)
            raise typer.Exit(1)
        typer.echo(f"calib: wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths), err=True)
    sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")


def main() -> None:  # console script entry point
    app(prog_name="calib")


if __name__ == "__main__":
    main()
