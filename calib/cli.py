"""``calib`` command line: ``calib optimize`` and ``calib export``.

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

from .errors import InputError
from .study import DEFAULT_STUDY, STAGES

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bayesian force-field calibration of CGMD electrode-manufacturing models.")

DEFAULT_RUNS = Path("runs")


def default_storage(runs_dir: Path) -> str:
    """SQLite ledger ``<runs_dir>/calib.db``."""
    return f"sqlite:///{(runs_dir / 'calib.db').resolve()}"


def _fail(exc: InputError) -> None:
    typer.echo(f"calib: error: {exc}", err=True)
    raise typer.Exit(2)


def _check_storage(url: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect()
    except Exception as exc:
        raise InputError("--storage", "url", f"not a SQLAlchemy URL: {url!r} ({exc})") from exc


DEFAULT_STUDIES = {"slurry": DEFAULT_STUDY}


@app.command()
def optimize(
    stage: str = typer.Option(..., help=f"Stage to calibrate ({', '.join(STAGES)})."),
    study: Optional[Path] = typer.Option(None, help="Study file (default: the stage's default study)."),
    fidelity: Optional[str] = typer.Option(None, help="Named fidelity overriding the study's (smoke, dev, paper, ...)."),
    trials: Optional[int] = typer.Option(None, min=1, help="Finished trials the study should have."),
    seed: Optional[int] = typer.Option(None, min=0, help="Proposal and simulation seed (default: the study's)."),
    parallel: Optional[int] = typer.Option(None, min=1, help="Trials run at once (default: the study's)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    tracking_uri: Optional[str] = typer.Option(
        None, help="MLflow tracking URI (default: embedded sqlite under --runs-dir); 'none' disables."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where trial directories and default stores live."),
    viscosity_csv: Optional[Path] = typer.Option(
        None, help="Rheometer CSV (shear rate, viscosity) replacing the dataset's viscosity curve for this study."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    """Calibrate one stage's force field against its dataset."""
    from .study import load_study

    try:
        if stage not in STAGES:
            raise InputError("--stage", "stage", f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
        path = study or DEFAULT_STUDIES[stage]
        loaded = load_study(path, fidelity=fidelity, viscosity_csv=viscosity_csv)
        if loaded.spec.stage != stage:
            raise InputError(str(path), "stage", f"study is for stage {loaded.spec.stage!r}, not {stage!r}")
        url = storage or default_storage(runs_dir)
        _check_storage(url)
    except InputError as exc:
        _fail(exc)
        return
    _run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json)


def _run_optimize(loaded, url, tracking_uri, runs_dir, trials, seed, parallel, as_json) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim_backends.lammps.install import locate_lammps
    from sim_backends.local import LocalBackend

    from . import ledger
    from .loop import Event, LoopConfig, run_study
    from .report import study_summary
    from .tracking import MlflowTracker, NullTracker, default_tracking_uri

    spec = loaded.spec
    n_trials = trials or spec.trials
    cfg = LoopConfig(storage=url, runs_dir=runs_dir, n_trials=n_trials, parallel=parallel or spec.parallel,
                     seed=spec.seed if seed is None else seed)
    lammps = locate_lammps()
    runs_dir.mkdir(parents=True, exist_ok=True)
    if tracking_uri == "none":
        tracker = NullTracker()
    else:
        tracker = MlflowTracker(tracking_uri or default_tracking_uri(runs_dir),
                                artifact_root=None if tracking_uri else runs_dir / "mlartifacts")
    existing = None
    if ledger.study_exists(spec.name, url):  # refuse a resume of another calibration up front
        import optuna

        from .loop import study_ident
        from .space import ParameterSpace

        existing = optuna.load_study(study_name=spec.name, storage=url)
        try:
            ledger.check_resumable(existing, study_ident(loaded, ParameterSpace.from_spec(spec.parameters)), url)
        except InputError as exc:
            _fail(exc)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=as_json) as progress:
        task = progress.add_task(f"{spec.name} [{spec.stage}/{spec.fidelity}]", total=n_trials, last="")

        def on_event(e: Event) -> None:
            if e.kind in ("complete", "fail"):
                progress.advance(task)
                text = f"trial {e.trial}: {e.message}" + (f" (objective {e.value:.3g})" if e.value is not None else "")
                progress.update(task, last=text[:80])
                if not as_json:
                    progress.console.print(("  " if e.kind == "complete" else "  FAIL ") + text)
            elif e.kind == "warning":
                progress.console.print(f"  warning (trial {e.trial}): {e.message}")
            elif e.kind == "recovered":
                progress.console.print(f"  recovered trial {e.trial}: {e.message}")

        if existing is not None:
            progress.update(task, completed=min(n_trials, ledger.finished_count(existing)))
        try:
            # stdout carries only the summary: libraries' chatter (MLflow prints run links) goes to stderr
            with contextlib.redirect_stdout(sys.stderr):
                result = run_study(loaded, cfg, LocalBackend(), lammps, tracker, on_event)
        except InputError as exc:
            _fail(exc)
            return
        except KeyboardInterrupt:
            typer.echo(f"calib: interrupted; running trials were cancelled and will be proposed again. "
                       f"Rerun the same command to resume study {spec.name!r}.", err=True)
            raise typer.Exit(130)
    summary = study_summary(result.study, url)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)


def _print_summary(s: dict) -> None:
    typer.echo(f"study {s['study']} ({s['storage']}): {s['trials_complete']} complete, {s['trials_failed']} failed")
    if s["best_trial"] is None:
        typer.echo("no completed trial")
        return
    typer.echo(f"best trial {s['best_trial']} (objective {s['best_value']:.4g})")
    for name, o in (s["best_observables"] or {}).items():
        if isinstance(o, dict):
            typer.echo(f"  {name}: {o['simulated']:.4f} {o['unit']} vs {o['target']} {o['unit']} "
                       f"({100 * o['rel_error']:+.2f} %)")
    for r in (s["best_observables"] or {}).get("viscosity_pa_s") or []:
        typer.echo(f"  viscosity at {r['shear_rate_per_s']:g} 1/s: {r['viscosity_pa_s']:.4g} +- {r['sem_pa_s']:.2g} Pa s"
                   f" (strain {r['strain']:.3g}{'' if r['converged'] else ', not converged'})")
    if len(s.get("pareto") or []) > 1:
        typer.echo("  Pareto front: trials " + ", ".join(str(p["trial"]) for p in s["pareto"]))
    typer.echo("  params: " + ", ".join(f"{k}={v:.4g}" for k, v in (s["best_params"] or {}).items()))


@app.command()
def export(
    study: str = typer.Option(..., help="Study name in the storage."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite under --runs-dir)."),
    fmt: str = typer.Option("markdown", "--format", help="markdown, csv, json, latex or lammps."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, help="Where the default storage lives."),
) -> None:
    """Print the best parameter set of a study as Table S1 (or LAMMPS pair_coeff lines)."""
    from .exporting import export_study

    try:
        text = export_study(study, storage or default_storage(runs_dir), fmt)
    except InputError as exc:
        _fail(exc)
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def main() -> None:  # console script entry point
    app()


if __name__ == "__main__":
    main()
