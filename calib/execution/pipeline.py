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
This module runs the chain (and its placements); ``pipeline_model`` holds its inputs and
results, ``pipeline_outputs`` what it writes and logs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from sim_backends.backend import Backend
from sim_backends.lammps.install import LammpsInstall

from calib import stages
from calib.core.plots import POROSITY_PLOT
from calib.execution.pipeline_model import PipelineFailed, PipelineParams, PipelineResult
from calib.execution.pipeline_outputs import CSV_FILE, SUMMARY_FILE, write_csv, write_outputs
from calib.execution.runner import Runner, TrialExecution
from calib.stages import TrialContext
from calib.stages.calendering import PIPELINE_DEGREES_PCT
from calib.stages.upstream_state import Lineage, sha256_of
from calib.study.load import LoadedStudy

LAST_STAGE = "characterise"
"""The stage the pipeline runs to (and every stage upstream of it)."""


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


def _next(name: str, last: str) -> str:
    chain = [s.name for s in stages.chain(last)]
    return chain[chain.index(name) + 1]


