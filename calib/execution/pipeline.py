"""``calib pipeline``: the stage chain (slurry -> drying -> characterise, i.e. calendering
at several degrees and each calendered film characterised) for one parameter set, without
optimisation.

The settings (dataset, fidelity and every stage's sections) come from a study file; the
parameters are the seed's Table S1 columns (``table-s1``: the slurry column for stages
acting on slurry beads, the dried column afterwards) or the best sets of named studies in
the ledger. Each stage is a trial of its registered stage (``calib.stages``), run through
the same runner as the optimisation loop, starting from the previous stage's state; the
outputs are each stage's record in a JSON summary (``Stage.pipeline_key``), a CSV table
of the per-degree rows, plots, and one MLflow run with nested runs per stage and degree.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from sim_backends.backend import Backend
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, TABLE_S1_SLURRY, ForceFieldParams
from sim_backends.lammps.install import LammpsInstall

from calib import stages
from calib.core.errors import InputError
from calib.stages.upstream_state import Lineage, sha256_of
from calib.core.plots import POROSITY_PLOT, PROFILE_PLOT
from calib.execution.runner import Runner, TrialExecution
from calib.stages import TrialContext
from calib.stages.calendering import PIPELINE_DEGREES_PCT
from calib.study.load import LoadedStudy

CSV_FILE = "pipeline.csv"
SUMMARY_FILE = "pipeline.json"
LAST_STAGE = "characterise"
"""The stage the pipeline runs to (and every stage upstream of it)."""
PLOT_KEYS = {POROSITY_PLOT: "porosity_plot", PROFILE_PLOT: "profile_plot"}
"""``files`` keys of the plots (others: the file's stem)."""


class PipelineFailed(RuntimeError):
    """A stage of the pipeline failed; ``stage`` and ``reason`` say which and why."""

    def __init__(self, stage: str, reason: str, partial: "PipelineResult | None" = None) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.partial = partial


@dataclass(frozen=True)
class PipelineParams:
    """The force field of each Table S1 column and where it came from."""

    slurry: ForceFieldParams
    dried: ForceFieldParams
    source: str

    def column(self, name: str) -> ForceFieldParams:
        """The set for a stage's ``column`` (``slurry`` or ``dried``)."""
        return self.slurry if name == "slurry" else self.dried


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

        from calib import ledger

        sets = []
        for n in names:
            if not ledger.study_exists(n, storage):
                raise InputError("--params", "params", f"no study {n!r} in {storage}")
            study = optuna.load_study(study_name=n, storage=storage)
            stage = json.loads(study.user_attrs.get(ledger.SPEC_ATTR, "{}")).get("stage")
            want = "slurry" if not sets else "dried"
            if stage not in stages.names() or stages.get(stage).column != want:
                raise InputError("--params", "params", f"study {n!r} is a {stage!r} study; best:A,B needs a study A "
                                                       "of the slurry column (slurry) and a study B of the dried "
                                                       "column (drying, calendering, characterise)")
            best = ledger.best_trial(study)
            if best is None:
                raise InputError("--params", "params", f"study {n!r} has no completed trial")
            sets.append((ForceFieldParams.from_mapping(best.user_attrs["table_s1"]), f"{n} trial {best.number}"))
        return PipelineParams(sets[0][0], sets[1][0], f"best of {sets[0][1]} and {sets[1][1]}")
    raise InputError("--params", "params", f"unknown parameter set {option!r} (table-s1 or best:SLURRY,DRYING)")


def check_pipeline_inputs(loaded: LoadedStudy, last: str = LAST_STAGE) -> None:
    """Before anything runs (the dataset's beads are checked by ``load_study``): each stage's
    own checks (``Stage.prepare``), and what it allocates for a film of at most the initial
    placement box (``Stage.check_box``: voxel grids) must fit in memory."""
    from sim_backends.lammps.placement import paper_scaled_box

    fid = loaded.spec.fidelity_spec()
    box = [e * fid.initial_box_scale for e in paper_scaled_box(fid.n_beads)]
    for stage in stages.chain(last):
        as_stage = loaded.with_stage(stage.name)
        stage.prepare(as_stage, {})
        stage.check_box(as_stage, box, "the initial box")


@dataclass
class PipelineResult:
    """Everything the pipeline measured (JSON-able through ``summary``): each stage's record
    under its ``pipeline_key`` (``slurry``, ``dried``, ``degrees``)."""

    workdir: Path
    records: dict = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    failed_degrees: dict[str, str] = field(default_factory=dict)
    """Degrees left out (``keep_going``), with the reason, keyed by the degree in %."""
    bead_counts: dict[str, int] = field(default_factory=dict)
    solids_content: float | None = None
    """Implied solids content of the slurry (dry mass / slurry mass)."""
    stage: str = ""
    """The stage running (empty once all have finished)."""
    runs: dict[str, list] = field(default_factory=dict)
    """Stage name -> its runs (``stages.Run``), for the MLflow artifacts."""

    @property
    def slurry(self) -> dict:
        return self.records.get("slurry", {})

    @property
    def dried(self) -> dict:
        return self.records.get("dried", {})

    @property
    def degrees(self) -> list[dict]:
        return self.records.get("degrees", [])

    def summary(self, params: PipelineParams, fidelity: str) -> dict:
        por = [d["porosity"] for d in self.degrees]
        return {"workdir": str(self.workdir), "fidelity": fidelity, "params": params.source,
                "table_s1": {"slurry": params.slurry.as_dict(), "dried": params.dried.as_dict()},
                "bead_counts": self.bead_counts, "solids_content": self.solids_content,
                "failed_degrees": self.failed_degrees, "slurry": self.slurry, "dried": self.dried,
                **{k: v for k, v in self.records.items() if k not in ("slurry", "dried")},
                "degrees": self.degrees, "porosity_decreasing": all(b < a for a, b in zip(por, por[1:])),
                "wall_s": self.wall_s, "files": self.files}


def run_pipeline(loaded: LoadedStudy, params: PipelineParams, workdir: Path, backend: Backend,
                 lammps: LammpsInstall, degrees: tuple[float, ...] = PIPELINE_DEGREES_PCT, seed: int = 1,
                 on_stage=lambda stage, msg: None, keep_going: bool = False, last: str = LAST_STAGE,
                 poll_s: float = 0.2) -> PipelineResult:
    """Run the stages up to ``last`` in ``workdir`` (a sub-folder per stage), each from the
    previous one's state. Raises ``PipelineFailed`` naming the stage, with what was measured
    before it as ``partial``. With ``keep_going`` a calendering degree whose state fails its
    checks (a bead through the plane) is left out with its reason (``failed_degrees``)
    instead; a run that fails still fails its stage."""
    out = PipelineResult(workdir)
    runner = Runner(backend, lammps, loaded.spec.resources, loaded.spec.trial_timeout_s)
    fidelity = loaded.spec.fidelity_spec()
    if "calendering" in stages.registry.all_sections():
        loaded = loaded.with_section("calendering", degrees_pct=tuple(degrees))
    lineage: Lineage | None = None
    scores = {}
    for stage in stages.chain(last):
        out.stage = stage.name
        ctx = TrialContext(workdir / stage.name, loaded.with_stage(stage.name), fidelity,
                           params.column(stage.column), seed, lineage, {"keep_going": keep_going})
        ctx.workdir.mkdir(parents=True)
        try:
            trial = stage.make_trial(ctx)
            if stage.upstream is None:  # the first stage sets the system
                system = getattr(trial, "system")
                out.bead_counts = {p: system.phase_count(p) for p in ("AM", "SE", "CBD")}
                out.solids_content = system.solids_content
                on_stage(stage.name, f"{system.n_beads} beads")
            execution = TrialExecution(trial, runner, f"pipeline-{stage.name}")
            outcome = execution.run(poll_s)
        except PipelineFailed:
            raise
        except Exception as exc:  # a stage that cannot start or be read ends the pipeline with a reason
            raise PipelineFailed(stage.name, f"{exc.__class__.__name__}: {exc}", out) from exc
        out.wall_s.update(execution.wall_s)  # run keys are unique across stages (slurry, drying, calender_00, ...)
        out.runs[stage.name] = execution.runs
        if outcome.failed:
            raise PipelineFailed(stage.name, outcome.why, out)
        score = scores[stage.name] = outcome.score
        assert score is not None
        try:
            out.records[stage.pipeline_key] = stage.pipeline_record(trial, score)
        except Exception as exc:  # unreadable outputs end the pipeline with a reason
            raise PipelineFailed(stage.name, f"{exc.__class__.__name__}: {exc}", out) from exc
        out.failed_degrees.update(score.attrs.get("failed_degrees", {}))
        if trial.state_file is not None:
            lineage = Lineage(stage.name, None, None, None, str(trial.state_file), sha256_of(trial.state_file))
        if stage.name != last:
            on_stage(stages.get(_next(stage.name, last)).name, f"after {stage.name}: {score.summary}")
    try:
        write_outputs(out, scores)
    except Exception as exc:
        raise PipelineFailed(last, f"writing the outputs: {exc.__class__.__name__}: {exc}", out) from exc
    out.stage = ""
    return out


def _artifact_folder(workdir: Path, stage_name: str, run_dir: Path) -> str | None:
    """Where a run's files go in the stage's MLflow run: at its top for the stage's own run,
    under the job's folder name for a job of the stage (``calender_00``), under the path
    from the pipeline's folder for a run of one of several placements."""
    if run_dir == workdir / stage_name:
        return None
    if run_dir.parent == workdir / stage_name:
        return run_dir.name
    try:
        return str(run_dir.relative_to(workdir))
    except ValueError:
        return run_dir.name


def placement_seeds(seed: int, placements: int) -> tuple[int, ...]:
    """The simulation seeds of ``placements`` placements: ``seed``, ``seed + 1``, ..."""
    return tuple(seed + k for k in range(placements))


def run_placements(loaded: LoadedStudy, params: PipelineParams, workdir: Path, backend: Backend,
                   lammps: LammpsInstall, degrees: tuple[float, ...], seeds: tuple[int, ...],
                   on_stage=lambda stage, msg: None, keep_going: bool = False, last: str = LAST_STAGE,
                   poll_s: float = 0.2) -> PipelineResult:
    """``run_pipeline`` once per seed (one placement each): with one seed, in ``workdir``
    itself; with several, in ``workdir/placement_<seed>`` one after the other, and the result
    is their combination (``combine_placements``: means with error bars), each placement's
    own summary in its folder's ``pipeline.json``. A placement that
    fails ends the run with ``PipelineFailed``, its ``partial`` the placements done before."""
    if len(seeds) == 1:
        return run_pipeline(loaded, params, workdir, backend, lammps, degrees, seeds[0], on_stage, keep_going,
                            last, poll_s)
    done: list[tuple[int, PipelineResult]] = []
    for seed in seeds:
        def tell(stage: str, msg: str, seed: int = seed) -> None:
            on_stage(stage, f"placement {seed}: {msg}")
        try:
            one = run_pipeline(loaded, params, workdir / f"placement_{seed}", backend, lammps, degrees, seed, tell,
                               keep_going, last, poll_s)
            (one.workdir / SUMMARY_FILE).write_text(json.dumps(one.summary(params, loaded.spec.fidelity), indent=2,
                                                               default=str))
            done.append((seed, one))
        except PipelineFailed as exc:  # what was measured: the placements done, else the failing one's stages
            partial = (combine_placements(workdir, done) if done
                       else replace(exc.partial, workdir=workdir) if exc.partial else PipelineResult(workdir))
            raise PipelineFailed(exc.stage, f"placement {seed}: {exc.reason}", partial) from exc
    return combine_placements(workdir, done)


PLACEMENT_ERROR_KEYS: dict[str, tuple[str, ...]] = {
    "slurry": ("density_g_cm3",),
    "dried": ("porosity", "thickness_change_rel", "thickness_um"),
}
"""The slurry and dried records' values that get an error bar over placements."""


def combine_placements(workdir: Path, done: list[tuple[int, "PipelineResult"]]) -> PipelineResult:
    """One result from several placements' (``calib.stages.errorbars``): the slurry density and the
    dried porosity as means with ``<key>_error`` (the placements' standard error), the
    per-degree rows as ``combine_degrees``, and the table, plots and runs written in
    ``workdir``; ``placements``: each placement's seed and folder."""
    from calib.stages.errorbars import combine_degrees, merge_records
    from calib.core.plots import plot_porosity_vs_degree
    from calib.stages.characterise import PLOT, plot_characterisation

    first = done[0][1]
    out = PipelineResult(workdir, bead_counts=first.bead_counts, solids_content=first.solids_content)
    for key, errors in PLACEMENT_ERROR_KEYS.items():
        recs = [r.records.get(key, {}) for _, r in done]
        if recs[0]:
            out.records[key] = merge_records(recs, errors)
    rows = combine_degrees([r.degrees for _, r in done])
    out.records["degrees"] = rows
    out.records["placements"] = [{"seed": seed, "workdir": str(r.workdir)} for seed, r in done]
    for _, r in done:
        out.wall_s.update({f"{r.workdir.name}/{k}": v for k, v in r.wall_s.items()})
        out.failed_degrees.update({f"{d} (placement {r.workdir.name})": why for d, why in r.failed_degrees.items()})
        for stage_name, runs in r.runs.items():
            out.runs.setdefault(stage_name, []).extend(runs)
    if rows:
        out.files["csv"] = str(write_csv(workdir / CSV_FILE, rows))
        if all(r.get("porosity") is not None for r in rows):
            out.files["porosity_plot"] = str(plot_porosity_vs_degree(
                workdir / POROSITY_PLOT, [r["degree_pct"] for r in rows], [r["porosity"] for r in rows],
                title=f"mean of {len(done)} placements, bars: their standard error",
                errors=[r.get("porosity_error") for r in rows]))
        if "conductivity_s_m" in rows[0]:
            out.files["characterisation_vs_degree"] = str(plot_characterisation(workdir / PLOT, rows))
    return out


def summary_lines(name: str, summary: dict) -> list[str]:
    """What ``calib pipeline`` prints: the slurry density, the dried porosity and one line per
    degree, each value with its error (``calib.stages.errorbars``), and what the errors hold (over
    the placements actually combined)."""
    from calib.stages.errorbars import describe_errors, infinite_tau, plus_minus

    def pm(rec: dict, key: str, scale: float = 1.0, fmt: str = ".3g") -> str:
        v, e = rec.get(key), rec.get(f"{key}_error")
        return plus_minus(None if v is None else scale * v, None if e is None else scale * e, fmt)

    sl, dr = summary.get("slurry", {}), summary.get("dried", {})
    placements = max(1, len(summary.get("placements") or []), int(sl.get("placements", 1)))
    lines = [f"pipeline {name}: slurry density {pm(sl, 'density_g_cm3', fmt='.4f')} g/cm^3, "
             f"dried porosity {pm(dr, 'porosity', 100, '.1f')} %"]
    for d in summary.get("degrees", []):
        line = (f"  {d['degree_pct']:4g} %: thickness {d['thickness_um']:.1f} um (held {d['thickness_held_um']:.1f}, "
                f"before {d['thickness_before_um']:.1f}), porosity {pm(d, 'porosity', 100, '.1f')} %")
        if "conductivity_s_m" in d:
            tau = infinite_tau(d) if d.get("se_tortuosity") is None else pm(d, "se_tortuosity")
            line += (f"; conductivity {pm(d, 'conductivity_s_m')} S/m, SE tortuosity {tau}, "
                     f"SE D_eff/D_0 {pm(d, 'se_diffusivity_rel')}, "
                     f"SE voxels connected {100 * d['se_connected_fraction']:.0f} %")
        lines.append(line)
    if any("conductivity_s_m" in d for d in summary.get("degrees", [])):
        first = summary["degrees"][0]
        lines.append("  errors: " + describe_errors(placements, first.get("se_method", "voxel"),
                                                    first.get("conductivity_method", "voxel")))
    lines.append(f"  table: {summary.get('files', {}).get('csv', '-')}")
    return lines


def _next(name: str, last: str) -> str:
    chain = [s.name for s in stages.chain(last)]
    return chain[chain.index(name) + 1]


def write_csv(path: Path, rows: list[dict]) -> Path:
    """The per-degree rows as CSV (every key any row has; floats to 6 significant digits)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def write_outputs(out: PipelineResult, scores: dict) -> None:
    """CSV table of the per-degree rows, the profiles JSON and each stage's plots."""
    rows = out.degrees
    if rows:
        out.files["csv"] = str(write_csv(out.workdir / CSV_FILE, rows))
    profiles: dict = {}
    for name, score in scores.items():
        if score.attrs.get("profiles") is not None:
            profiles[stages.get(name).pipeline_key] = score.attrs["profiles"]
        profiles.update(score.attrs.get("profiles_by_degree", {}))
        for plot in score.plots:
            out.files[PLOT_KEYS.get(plot.name, plot.stem)] = str(plot)
    if profiles:
        (out.workdir / "profiles.json").write_text(json.dumps(profiles))
        out.files["profiles"] = str(out.workdir / "profiles.json")


def log_pipeline(tracking_uri: str, artifact_root: Path | None, name: str, summary: dict, result: PipelineResult,
                 failed: PipelineFailed | None = None) -> str:
    """One MLflow run (experiment ``calib-pipeline``) with a nested run per stage (its
    metrics and files) and per row of a stage's per-degree record."""
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

    def child(run_name: str, metrics: dict, files=()) -> None:
        run = client.create_run(exp_id, run_name=run_name, tags={"mlflow.parentRunId": pid, "calib.role": "stage"})
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                client.log_metric(run.info.run_id, k, float(v))
        for folder, path in files:
            if path.exists():
                client.log_artifact(run.info.run_id, str(path), artifact_path=folder)
        client.set_terminated(run.info.run_id)

    for k, v in summary["table_s1"]["dried"].items():
        client.log_param(pid, f"dried.{k}", repr(v))
    for k, v in summary["table_s1"]["slurry"].items():
        client.log_param(pid, f"slurry.{k}", repr(v))
    for stage_name, runs in result.runs.items():
        record = result.records.get(stages.get(stage_name).pipeline_key)
        files = [(_artifact_folder(result.workdir, stage_name, r.workdir), r.workdir / f)
                 for r in runs for f in r.artifacts if not f.endswith(".data")]
        child(stage_name, record if isinstance(record, dict) else {}, files)
        for row in record if isinstance(record, list) else []:
            child(f"{stage_name}_{row['degree_pct']:g}pct", row)
    for k in ("csv", "profiles", "porosity_plot", "profile_plot", "characterisation_vs_degree"):
        if k in result.files:
            client.log_artifact(pid, result.files[k])
    client.log_text(pid, json.dumps(summary, indent=2, default=str), "pipeline.json")
    if failed is not None:
        client.set_tag(pid, "fail_reason", str(failed)[:5000])
    client.set_terminated(pid, status="FAILED" if failed else "FINISHED")
    return pid
