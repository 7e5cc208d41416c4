"""``calib reproduce``: the seed's Table S1 through the pipeline, next to the seed's values
(``reproduce``, and its printing helpers ``_pct``, ``_deg``, ``_yes``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from calib.cli.common import (DEFAULT_PIPELINE, DEFAULT_RUNS, STUDY_METAVAR, app, chain_seed_option, default_storage,
                              fail, is_study_file, placements_option, run_chain, study_settings)
from calib.core.errors import InputError
from calib.core.paths import check_folder, new_folder


@app.command(short_help="Run the seed's Table S1 and compare with the seed's values.")
def reproduce(
    fidelity: Optional[str] = typer.Option(None, metavar="NAME",
                                           help="Named fidelity (default: the pipeline study's, dev)."),
    study: Optional[str] = typer.Option(
        None, metavar=STUDY_METAVAR, help="Dataset and stage settings: a study file, or a stored study's name (the "
                                          "settings it was run with) (default: studies/ssb_pipeline.yaml)."),
    storage: Optional[str] = typer.Option(None, metavar="URL", help="Optuna storage of a study named by --study "
                                                                    "(default: sqlite under --runs-dir)."),
    runs_dir: Path = typer.Option(DEFAULT_RUNS, metavar="DIR", help="Where the run folder goes (runs/reproduce/...)."),
    seed: int = chain_seed_option(),
    placements: int = placements_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the seed's Table S1 through slurry -> drying -> calendering (0-50 %) and compare
    with the seed's reported values, side by side."""
    import time as _time

    from calib.execution.pipeline import check_pipeline_inputs, placement_seeds
    from calib.execution.pipeline_model import params_from
    from calib.stages.errorbars import describe_errors
    from calib.publish.reproduce import density_against_seed, reproduction, table
    from calib.stages.calendering import PIPELINE_DEGREES_PCT

    try:
        value = study if study is not None else str(DEFAULT_PIPELINE)
        if not is_study_file(value):  # a stored study's settings: its storage first
            check_folder(runs_dir)
        loaded = study_settings(value, storage or default_storage(runs_dir), fidelity)
        check_pipeline_inputs(loaded)
        check_folder(runs_dir)
    except InputError as exc:
        fail(exc)
        return
    from sim_backends.lammps.install import locate_lammps
    from sim_backends.local import LocalBackend

    lammps = locate_lammps()
    pset = params_from("table-s1", "sqlite:///:memory:")
    workdir = new_folder(runs_dir / "reproduce", f"{loaded.spec.fidelity}-{_time.strftime('%Y%m%d-%H%M%S')}")
    summary, result, failed = run_chain(
        loaded, pset, workdir, LocalBackend(mpirun=lammps.mpirun), lammps, PIPELINE_DEGREES_PCT,
        placement_seeds(seed, placements), lambda stage, msg: typer.echo(f"reproduce: {stage} ({msg})", err=True),
        f"the jobs were cancelled; the stages so far are in {workdir}", keep_going=True)
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
