"""``calib pipeline``: slurry -> drying -> calendering at several degrees for one parameter
set, without optimisation.

The settings (dataset, fidelity, slurry/drying/calendering sections, walls) come from a
study file; the parameters are the seed's Table S1 columns (``table-s1``: slurry column
for the slurry, dried column afterwards) or the best sets of named studies in the ledger.
Each stage runs through the backend like a trial (the calendering degrees concurrently);
the outputs are a CSV table, plots (porosity vs degree, porosity and phase profiles), a
JSON summary and one MLflow run with a nested run per stage.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from sim_backends.backend import Backend, JobState, Task
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, TABLE_S1_SLURRY, ForceFieldParams
from sim_backends.lammps.install import LammpsInstall
from sim_backends.lammps.outputs import SimulationFailed, crash_reason, failure_reason

from .electrode_stages import (CalenderingTrial, DryingTrial, profiles_dict, status_observables,
                               structure_observables)
from .errors import InputError
from .lineage import Lineage, sha256_of
from .plots import POROSITY_PLOT, PROFILE_PLOT, plot_porosity_vs_degree, plot_profiles
from .stages import Run, SlurryTrial
from .study import PIPELINE_DEGREES_PCT, LoadedStudy

CSV_FILE = "pipeline.csv"
SUMMARY_FILE = "pipeline.json"


class PipelineFailed(RuntimeError):
    """A stage of the pipeline failed; ``stage`` and ``reason`` say which and why."""

    def __init__(self, stage: str, reason: str, partial: "PipelineResult | None" = None) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.partial = partial


@dataclass(frozen=True)
class PipelineParams:
    """The force field of each stage and where it came from."""

    slurry: ForceFieldParams
    dried: ForceFieldParams
    source: str


def params_from(option: str, storage: str) -> PipelineParams:
    """``table-s1`` or ``best:SLURRY_STUDY,DRYING_STUDY`` (best trials in ``storage``; the
    dried set also serves calendering)."""
    if option == "table-s1":
        return PipelineParams(TABLE_S1_SLURRY, TABLE_S1_DRIED, "table-s1 (seed Table S1 slurry and dried columns)")
    if option.startswith("best:"):
        names = [n.strip() for n in option[5:].split(",")]
        if len(names) != 2 or not all(names):
            raise InputError("--params", "params", "give best:SLURRY_STUDY,DRYING_STUDY")
        import optuna

        from . import ledger

        sets = []
        for n in names:
            if not ledger.study_exists(n, storage):
                raise InputError("--params", "params", f"no study {n!r} in {storage}")
            study = optuna.load_study(study_name=n, storage=storage)
            stage = json.loads(study.user_attrs.get(ledger.SPEC_ATTR, "{}")).get("stage")
            want = "slurry" if not sets else "drying"
            if stage != want:
                raise InputError("--params", "params", f"study {n!r} is a {stage!r} study; best:A,B needs a slurry "
                                                       f"study A and a drying study B")
            best = ledger.best_trial(study)
            if best is None:
                raise InputError("--params", "params", f"study {n!r} has no completed trial")
            sets.append((ForceFieldParams.from_mapping(best.user_attrs["table_s1"]), f"{n} trial {best.number}"))
        return PipelineParams(sets[0][0], sets[1][0], f"best of {sets[0][1]} and {sets[1][1]}")
    raise InputError("--params", "params", f"unknown parameter set {option!r} (table-s1 or best:SLURRY,DRYING)")


def check_pipeline_inputs(loaded: LoadedStudy) -> None:
    """Before anything runs (the dataset's beads are checked by ``load_study``): the voxel grid
    over the film (at most the initial placement box, plus half) must fit in memory."""
    from sim_backends.lammps.placement import paper_scaled_box

    from .electrode_stages import check_grid

    fid = loaded.spec.fidelity_spec()
    check_grid(loaded, [e * fid.initial_box_scale for e in paper_scaled_box(fid.n_beads)], "the initial box")


@dataclass
class PipelineResult:
    """Everything the pipeline measured (JSON-able through ``summary``)."""

    workdir: Path
    slurry: dict[str, float] = field(default_factory=dict)
    dried: dict[str, float] = field(default_factory=dict)
    degrees: list[dict] = field(default_factory=list)
    wall_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    failed_degrees: dict[str, str] = field(default_factory=dict)
    """Degrees left out (``keep_going``), with the reason, keyed by the degree in %."""
    bead_counts: dict[str, int] = field(default_factory=dict)
    solids_content: float | None = None
    """Implied solids content of the slurry (dry mass / slurry mass)."""
    stage: str = "slurry"
    """The stage running (empty once all have finished)."""

    def summary(self, params: PipelineParams, fidelity: str) -> dict:
        por = [d["porosity"] for d in self.degrees]
        return {"workdir": str(self.workdir), "fidelity": fidelity, "params": params.source,
                "table_s1": {"slurry": params.slurry.as_dict(), "dried": params.dried.as_dict()},
                "bead_counts": self.bead_counts, "solids_content": self.solids_content,
                "failed_degrees": self.failed_degrees,
                "slurry": self.slurry, "dried": self.dried, "degrees": self.degrees,
                "porosity_decreasing": all(b < a for a, b in zip(por, por[1:])),
                "wall_s": self.wall_s, "files": self.files}


def _run_all(runs: list[Run], stage: str, backend: Backend, lammps: LammpsInstall, loaded: LoadedStudy,
             poll_s: float = 0.2) -> dict[str, float]:
    """Submit ``runs`` together and wait; wall seconds per run. Raises ``PipelineFailed``."""
    res = loaded.spec.resources
    jobs = {r.key: (r, backend.submit(Task(r.workdir, lammps.argv(r.deck, r.log, res.ranks, res.threads),
                                           lammps.thread_env(res.threads), timeout_s=loaded.spec.trial_timeout_s,
                                           cores=res.ranks * res.threads, name=f"pipeline-{r.key}")))
            for r in runs}
    try:
        while not all(backend.poll(h).terminal for _, h in jobs.values()):
            time.sleep(poll_s)
    except BaseException:
        for _, h in jobs.values():
            backend.cancel(h)
        raise
    wall = {}
    for key, (run, h) in jobs.items():
        result = backend.collect(h)
        wall[key] = result.wall_s
        if result.state != JobState.DONE:
            log = run.workdir / run.log
            text = log.read_text(errors="replace") if log.exists() else ""
            reason = failure_reason(text) or (crash_reason(result.returncode, text) if result.returncode is not None
                                              else result.reason) or "unknown failure"
            for _, other in jobs.values():
                backend.cancel(other)
            raise PipelineFailed(stage, f"{run.label or key}: {reason}")
    return wall


def run_pipeline(loaded: LoadedStudy, params: PipelineParams, workdir: Path, backend: Backend,
                 lammps: LammpsInstall, degrees: tuple[float, ...] = PIPELINE_DEGREES_PCT, seed: int = 1,
                 on_stage=lambda stage, msg: None, keep_going: bool = False) -> PipelineResult:
    """Run the three stages in ``workdir`` (sub-folders slurry/, drying/, calendering/).
    Raises ``PipelineFailed`` naming the stage, with what was measured before it as
    ``partial``. With ``keep_going`` a calendering degree whose state fails its checks (a
    bead through the plane) is left out with its reason (``failed_degrees``) instead."""
    out = PipelineResult(workdir)
    try:
        _run_stages(loaded, params, out, backend, lammps, degrees, seed, on_stage, keep_going)
    except PipelineFailed as exc:
        exc.partial = out
        raise
    except SimulationFailed as exc:
        raise PipelineFailed(out.stage, exc.reason, out) from exc
    except Exception as exc:  # unreadable outputs end the pipeline with a reason, not a traceback
        raise PipelineFailed(out.stage, f"{exc.__class__.__name__}: {exc}", out) from exc
    return out


def _run_stages(loaded: LoadedStudy, params: PipelineParams, out: PipelineResult, backend: Backend,
                lammps: LammpsInstall, degrees: tuple[float, ...], seed: int, on_stage,
                keep_going: bool = False) -> None:
    spec = loaded.spec
    fidelity = spec.fidelity_spec()
    workdir = out.workdir
    slurry_spec = spec.model_copy(update={"stage": "slurry", "objective": spec.objective.model_copy(
        update={"targets": {"slurry_density": 1.0}})})
    sl = SlurryTrial(workdir / "slurry", loaded.model_copy(update={"spec": slurry_spec}), fidelity, params.slurry, seed)
    sl.workdir.mkdir(parents=True)
    on_stage("slurry", f"{sl.system.n_beads} beads")
    out.bead_counts = {p: sl.system.phase_count(p) for p in ("AM", "SE", "CBD")}
    out.solids_content = sl.system.solids_content
    out.wall_s.update(_run_all(sl.first_runs(), "slurry", backend, lammps, loaded))
    sl.next_runs()
    assert sl.slurry is not None
    out.slurry = {"density_g_cm3": sl.slurry.density_g_cm3, "density_sem_g_cm3": sl.slurry.density_sem_g_cm3,
                  "density_change_rel": sl.slurry.density_change_rel, "density_converged": sl.slurry.converged,
                  "density_converged_step": sl.slurry.converged_step, "hold_steps": sl.slurry.hold_steps}
    slurry_state = sl.workdir / "final.data"
    out.stage = "drying"
    on_stage("drying", f"slurry density {sl.slurry.density_g_cm3:.4f} g/cm^3")
    dry_loaded = loaded.model_copy(update={"spec": spec.model_copy(update={"stage": "drying"})})
    dr = DryingTrial(workdir / "drying", dry_loaded, fidelity, params.dried, seed,
                     Lineage("slurry", None, None, None, str(slurry_state), sha256_of(slurry_state)))
    dr.workdir.mkdir()
    out.wall_s.update(_run_all(dr.first_runs(), "drying", backend, lammps, loaded))
    s = dr.measure()
    assert dr.status is not None
    out.dried = {**structure_observables(s), **status_observables(dr.status),
                 "cbd_wt_pct": 100.0 * dr.system.phase_mass_fraction("CBD")}
    dried_state = dr.workdir / "final.data"
    out.stage = "calendering"
    on_stage("calendering", f"dried porosity {100 * s.porosity:.1f} %, thickness {s.thickness_um:.1f} um")
    cal_loaded = loaded.model_copy(update={"spec": spec.model_copy(update={"stage": "calendering"})})
    ca = CalenderingTrial(workdir / "calendering", cal_loaded, fidelity, params.dried, seed,
                          Lineage("drying", None, None, None, str(dried_state), sha256_of(dried_state)), degrees)
    ca.workdir.mkdir()
    out.wall_s.update(_run_all(ca.first_runs(), "calendering", backend, lammps, loaded))
    results = ca.measure(skip_failed=keep_going)
    out.failed_degrees = {f"{d:g}": reason for d, reason in ca.failed.items()}
    if not results:
        raise PipelineFailed("calendering", "every degree failed: " + "; ".join(
            f"{d} %: {r}" for d, r in out.failed_degrees.items()))
    out.degrees = [{"degree_pct": r.degree_pct, "thickness_um": r.thickness_um,
                    "thickness_before_um": r.thickness_before_um, "thickness_held_um": r.thickness_held_um,
                    "plane_um": r.plane_um,
                    "porosity": r.porosity, **{f"fraction_{k}": v for k, v in r.fractions.items()}}
                   for r in results]
    write_outputs(out, s, ca)
    out.stage = ""


def write_outputs(out: PipelineResult, dried, ca: CalenderingTrial) -> None:
    """CSV table, profiles JSON and the two plots into the pipeline folder."""
    path = out.workdir / CSV_FILE
    keys = list(out.degrees[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in out.degrees:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    out.files["csv"] = str(path)
    prof = {"dried": profiles_dict(dried), **{f"{d:g}": profiles_dict(s) for d, s in ca.structures.items()}}
    (out.workdir / "profiles.json").write_text(json.dumps(prof))
    out.files["profiles"] = str(out.workdir / "profiles.json")
    try:
        out.files.update(plot_pipeline(out, ca))
    except Exception as exc:  # plots are a convenience, never a failure
        out.files["plot_error"] = f"{exc.__class__.__name__}: {exc}"


def plot_pipeline(out: PipelineResult, ca: CalenderingTrial) -> dict[str, str]:
    por = plot_porosity_vs_degree(out.workdir / POROSITY_PLOT, [d["degree_pct"] for d in out.degrees],
                                  [d["porosity"] for d in out.degrees])
    prof = plot_profiles(out.workdir / PROFILE_PLOT, {f"{d:g} %": s for d, s in sorted(ca.structures.items())})
    return {"porosity_plot": str(por), "profile_plot": str(prof)}


def log_pipeline(tracking_uri: str, artifact_root: Path | None, name: str, summary: dict, result: PipelineResult,
                 failed: PipelineFailed | None = None) -> str:
    """One MLflow run (experiment ``calib-pipeline``) with a nested run per stage."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("calib-pipeline")
    if exp is None:
        loc = (artifact_root / "calib-pipeline").resolve().as_uri() if artifact_root else None
        exp_id = client.create_experiment("calib-pipeline", artifact_location=loc)
    else:
        exp_id = exp.experiment_id
    parent = client.create_run(exp_id, run_name=name, tags={"calib.role": "pipeline", "params": summary["params"],
                                                            "fidelity": summary["fidelity"]})
    pid = parent.info.run_id
    for k, v in summary["table_s1"]["dried"].items():
        client.log_param(pid, f"dried.{k}", repr(v))
    for k, v in summary["table_s1"]["slurry"].items():
        client.log_param(pid, f"slurry.{k}", repr(v))
    stages = {"slurry": result.slurry, "drying": result.dried}
    for d in result.degrees:
        stages[f"calendering_{d['degree_pct']:g}pct"] = {k: v for k, v in d.items() if isinstance(v, float)}
    for stage, metrics in stages.items():
        if not metrics:
            continue
        run = client.create_run(exp_id, run_name=stage, tags={"mlflow.parentRunId": pid, "calib.role": "stage"})
        for k, v in metrics.items():
            if isinstance(v, float) and math.isfinite(v):
                client.log_metric(run.info.run_id, k, v)
        if stage.startswith("calendering_"):
            deg = float(stage.removeprefix("calendering_").removesuffix("pct"))
            i = [d["degree_pct"] for d in result.degrees].index(deg)
            folder = result.workdir / "calendering" / f"calender_{i:02d}"
        else:
            folder = result.workdir / stage
        for f in ("log.lammps", "in.slurry", "in.drying", "in.calender", "calender_status.txt"):
            if (folder / f).exists():
                client.log_artifact(run.info.run_id, str(folder / f))
        client.set_terminated(run.info.run_id)
    for k in ("csv", "profiles", "porosity_plot", "profile_plot"):
        if k in result.files:
            client.log_artifact(pid, result.files[k])
    client.log_text(pid, json.dumps(summary, indent=2, default=str), "pipeline.json")
    if failed is not None:
        client.set_tag(pid, "fail_reason", str(failed)[:5000])
    client.set_terminated(pid, status="FAILED" if failed else "FINISHED")
    return pid
