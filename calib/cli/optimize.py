"""``calib optimize``: the command (``optimize``), the study run with its progress display that
``calib refine`` shares (``run_optimize``), and where to review it in MLflow (``mlflow_view``)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from calib import stages
from calib.cli.common import (DEFAULT_RUNS, STUDIES_DIR, STUDY_METAVAR, app, at_least, check_storage, check_tracking,
                              default_storage, default_study, fail, is_study_file, parallel_option, shown_path,
                              storage_option, study_file, terminated_as_interrupt, tracking_option, with_backend)
from calib.cli.summary import no_answer_hint, print_summary
from calib.core.errors import InputError, StudyHalted, Terminated
from calib.core.paths import check_folder


@app.command(short_help="Calibrate one stage's force field against its dataset.")
def optimize(
    stage: str = typer.Option(..., metavar="STAGE", help=f"Stage to calibrate ({', '.join(stages.names())})."),
    study: Optional[str] = typer.Option(
        None, metavar=STUDY_METAVAR, help="Study file to run, or the name of a stored study to resume "
                                          "(default: the stage's default study file)."),
    fidelity: Optional[str] = typer.Option(None, metavar="NAME",
                                           help="Named fidelity overriding the study's (smoke, dev, paper, ...)."),
    trials: Optional[int] = typer.Option(None, parser=at_least("--trials", 1), metavar="N",
                                         help="Finished trials the study should have (>= 1)."),
    seed: Optional[int] = typer.Option(None, parser=at_least("--seed", 0), metavar="INTEGER",
                                       help="Proposal and simulation seed (default: the study's)."),
    parallel: Optional[int] = parallel_option(),
    storage: Optional[str] = storage_option(),
    tracking_uri: Optional[str] = tracking_option(),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where trial directories and default stores live."),
    viscosity_csv: Optional[Path] = typer.Option(
        None, metavar="FILE",
        help="Rheometer CSV (shear rate, viscosity) replacing the dataset's viscosity curve for this study."),
    backend: Optional[str] = typer.Option(None, metavar="NAME", help="Where runs go: local or slurm (default: the "
                                                                     "study's resources.backend, local)."),
    heartbeat_s: int = typer.Option(30, parser=at_least("--heartbeat-s", 1), metavar="SECONDS",
                                    help="Seconds between heartbeats of each running trial."),
    grace_s: Optional[int] = typer.Option(None, parser=at_least("--grace-s", 1), metavar="SECONDS",
                                          help="A trial without a heartbeat for this long belongs to a dead driver "
                                               "and is re-queued (default: 4 heartbeats)."),
    confirm: bool = typer.Option(False, "--confirm", help="Once the budget is spent, run the best set again at the "
                                                          "target protocol on fresh placements (a confirmation trial)."),
    confirm_compression: int = typer.Option(1, parser=at_least("--confirm-compression", 1), metavar="K",
                                            help="The confirmation's protocol compression k (1: the full protocol)."),
    confirm_replicates: int = typer.Option(2, parser=at_least("--confirm-replicates", 1), metavar="N",
                                           help="Fresh placements the confirmation runs (their spread is reported)."),
    confirm_timeout_s: Optional[float] = typer.Option(
        None, metavar="SECONDS", help="Wall-time limit of each confirmation run, seconds (default: the study's "
                                      "trial_timeout_s times the study's compression over the confirmation's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Calibrate one stage's force field against its dataset. Several drivers may run one
    study at once (same study and --storage): they share its trial budget. With --confirm
    the best set is then run at the target protocol (k = 1 by default: hours for the
    slurry's seed protocol) and shown next to its calibrated value.

    --study takes a study file or a study name: a value ending in .yaml or .yml, holding a
    /, or naming an existing file is a study file (a new study, or the stored study of its
    name resumed); any other value names a study in the storage, resumed with the settings
    it was run with."""
    from calib.study.load import load_study

    try:
        stages.lookup(stage, "--stage", "stage")
        lineage = None
        if study is None or is_study_file(study):
            path = study_file(study) if study is not None else default_study(stage)
            if path is None:
                raise InputError("--study", "study", f"stage {stage} has no default study: give --study FILE")
            loaded = load_study(path, fidelity=fidelity, viscosity_csv=viscosity_csv)
            where = str(path)
        else:  # a stored study's name: resumed with its stored settings
            check_folder(runs_dir)
            url = storage or default_storage(runs_dir)
            check_storage(url, runs_dir)
            loaded, lineage = _stored_settings(study, url, storage is not None, fidelity, viscosity_csv)
            path, where = Path(loaded.path), "--study"
        if loaded.spec.stage != stage:
            raise InputError(where, "stage", f"study is for stage {loaded.spec.stage!r}, not {stage!r}")
        loaded = with_backend(loaded, backend, path)
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
        check_storage(url, runs_dir)
        check_tracking(tracking_uri)
        if loaded.spec.upstream is not None:
            if lineage is None:
                from calib.study.upstream import resolve_upstream

                lineage = resolve_upstream(loaded, url)
            loaded.stage.check_upstream(loaded, lineage)
    except InputError as exc:
        fail(exc)
        return
    run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json, lineage, heartbeat_s,
                  grace_s or 4 * heartbeat_s, confirm=conf)


def _stored_settings(name: str, url: str, storage_given: bool, fidelity: str | None, viscosity_csv: Path | None):
    """``calib optimize --study NAME``: the settings and upstream state (or None) study ``name``
    was run with, to resume it; ``--fidelity`` applied (a fidelity other than the stored one is
    then refused by the resume check, naming ``--fidelity``). A name the storage does not hold
    is refused naming ``--study``, with the study file to give to start one."""
    from calib.study.load import with_fidelity
    from calib.study.stored import open_stored

    if viscosity_csv is not None:
        raise InputError("--viscosity-csv", "(option)", f"study {name!r} is resumed with the viscosity curve it was "
                                                        "run with; --viscosity-csv starts a study from a study file")
    try:
        stored = open_stored(name, url)
    except InputError as exc:
        missing = (exc.where == "--study" and exc.message.startswith("no study named")) or (
            exc.where == "--storage" and exc.message.startswith("no study database") and not storage_given)
        if not missing:
            raise
        shipped = STUDIES_DIR / f"{name}.yaml"
        hint = f" (--study {shown_path(shipped)})" if shipped.is_file() else ""
        from calib import ledger

        raise InputError("--study", "study", f"no study named {name!r} in {ledger.shown(url)}; to start a study, "
                                             f"give its study file{hint}") from exc
    loaded = stored.loaded
    if fidelity is not None and fidelity != loaded.spec.fidelity:
        loaded = loaded.model_copy(update={"spec": with_fidelity(loaded.spec, fidelity)})
    return loaded, stored.lineage


def run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json, lineage=None,
                  heartbeat_s: int = 30, grace_s: int = 120, queue=(), report=None, confirm=None) -> None:
    """Run the study (``queue``: sets to run first, ``calib refine``) and print its summary
    (``report(summary)``: lines printed before it)."""
    from sim_backends.lammps.install import locate_lammps

    from calib import ledger
    from calib.core.backend_registry import make_backend
    from calib.execution.loop import Event, LoopConfig, run_study
    from calib.review.caveats import MODEL_SAMPLERS
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
            fail(exc)
    runs_dir.mkdir(parents=True, exist_ok=True)  # the first write: every check above has passed
    if not as_json and not queue and spec.optimizer.sampler in MODEL_SAMPLERS and n_trials <= spec.optimizer.n_initial:
        typer.echo(f"note: {n_trials} trials <= optimizer.n_initial ({spec.optimizer.n_initial}): every trial comes "
                   "from the initial design and the model never proposes; run more trials for a calibration",
                   err=True)
    title = f"{spec.name} [{spec.stage}/{' -> '.join(spec.ladder)}]"
    done = min(n_trials, ledger.finished_count(existing)) if existing is not None else 0
    with TrialDisplay(title, n_trials, done, quiet=as_json) as display:

        def on_event(e: Event) -> None:
            if e.kind in ("complete", "fail"):
                text = f"trial {e.trial}: {e.message}" + (f" (objective {e.value:.3g})" if e.value is not None else "")
                display.trial(("  " if e.kind == "complete" else "  FAIL ") + text, text, e.counted)
            elif e.kind == "warning":
                display.line(f"  warning (trial {e.trial}): {e.message}" if e.trial >= 0
                             else f"  warning: {e.message}")  # -1: about the study
            elif e.kind == "info":
                display.line(f"  {e.message}")
            elif e.kind == "recovered":
                display.line(f"  recovered trial {e.trial}: {e.message}")
            elif e.kind == "reattached":
                display.line(f"  trial {e.trial}: {e.message}")
            elif e.kind == "started" and getattr(tracker, "experiment_id", None) is not None:
                view = mlflow_view(tracker.uri, tracker.experiment_id, tracker.parent_run_id)
                display.line(f"  watch it live in MLflow: {view['url']}"
                             + (f"  (after: {view['serve']}, in another terminal)" if view["serve"] else ""))

        try:
            # stdout carries only the summary: any library's chatter goes to stderr
            with contextlib.redirect_stdout(sys.stderr), terminated_as_interrupt():
                result = run_study(loaded, cfg, make_backend(spec.resources, lammps), lammps, tracker, on_event,
                                   lineage, queue)
        except InputError as exc:
            fail(exc)
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
        print_summary(summary)
    if summary["best_trial"] is None:  # no answer: a script must not take this run for a calibration
        typer.echo(f"calib: error: study {spec.name!r} has no completed trial"
                   + (f" at its target fidelity {summary['target_fidelity']}" if summary.get("trials_complete") else "")
                   + "; " + no_answer_hint(summary).removeprefix("hint: "), err=True)
        raise typer.Exit(1)


class TrialDisplay:
    """What a running study shows on stderr (a context manager). On an interactive terminal:
    rich's progress bar (the study, trials finished of its budget, the time, the last trial)
    with the study's lines printed above it. Anywhere else (a file, a pipe, a batch job's
    log): no bar, which would leave its last frame in the file, but plain lines, each written
    whole on one line (rich would wrap them at 80 columns), after a first line naming the
    study and its budget. ``quiet`` (``--json``): no trial lines and, on a terminal, a bar
    that is cleared at the end; warnings and notices still show."""

    def __init__(self, title: str, total: int, done: int = 0, quiet: bool = False) -> None:
        from rich.console import Console

        self.title, self.total, self.done, self.quiet = title, total, done, quiet
        console = Console(stderr=True)
        self._progress = None
        if console.is_interactive:
            from rich.markup import escape
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._escape = escape
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[last]}"), console=console,
                                      transient=quiet)
            self._task = self._progress.add_task(escape(title), total=total, completed=done, last="")

    @property
    def live(self) -> bool:
        """Whether the progress bar is shown (stderr is an interactive terminal)."""
        return self._progress is not None

    def __enter__(self) -> "TrialDisplay":
        if self._progress is not None:
            self._progress.__enter__()
        elif not self.quiet:
            self.line(f"{self.title}: {self.done} of {self.total} trials finished")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def line(self, text: str) -> None:
        """One line of the study's output, as it is (no markup, no wrapping but the terminal's)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def trial(self, line: str, last: str, counted: bool) -> None:
        """A finished trial: ``line`` printed (unless quiet), ``last`` shown beside the bar, and
        the bar advanced if the trial counts toward the budget."""
        if counted:
            self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1 if counted else 0, last=self._escape(last[:80]))
        if not self.quiet:
            self.line(line)


def mlflow_view(uri: str, experiment_id: str, parent_run_id: str | None) -> dict:
    """Where to review the study in the MLflow UI: the runs table's page (MLflow 3 opens an
    experiment on its GenAI overview unless the URL asks for model training), the saved view
    of its trials, best first (``trials_url``: ``calib.review.tracking_records.trials_view``),
    and for an embedded store the command that serves it."""
    from calib.review.tracking_records import TRIALS_VIEW, runs_link

    served = uri.startswith(("http://", "https://"))
    root = f"{uri.rstrip('/')}/" if served else "http://127.0.0.1:5000/"
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id,
            "url": root + runs_link(experiment_id),
            "trials_url": root + runs_link(experiment_id, viewStateShareKey=TRIALS_VIEW),
            "serve": None if served else f"mlflow ui --backend-store-uri {uri}"}
