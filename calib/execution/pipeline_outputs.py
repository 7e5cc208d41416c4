"""What ``calib pipeline`` leaves: the JSON summary's and the CSV table's file names, the
printed summary lines, the CSV of per-degree rows, the plots of a finished chain and its
MLflow run with nested runs per stage and degree."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from calib import stages
from calib.core.plots import POROSITY_PLOT, PROFILE_PLOT
from calib.execution.pipeline_model import PipelineFailed, PipelineResult
from calib.review.tracking_records import NOTE_TAG, shown

CSV_FILE = "pipeline.csv"


SUMMARY_FILE = "pipeline.json"


PLOT_KEYS = {POROSITY_PLOT: "porosity_plot", PROFILE_PLOT: "profile_plot"}
"""``files`` keys of the plots (others: the file's stem)."""


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
    metrics and files) and per row of a stage's per-degree record. As for a study's runs
    (``calib.review.tracking_records.shown``): metrics to 6 significant digits, parameters
    as ``.6g``, and a description (what ``calib pipeline`` printed) on the parent run;
    ``pipeline.json`` among its artifacts keeps every value in full."""
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
                client.log_metric(run.info.run_id, k, shown(v))
        for folder, path in files:
            if path.exists():
                client.log_artifact(run.info.run_id, str(path), artifact_path=folder)
        client.set_terminated(run.info.run_id)

    for part in ("dried", "slurry"):
        for k, v in summary["table_s1"][part].items():
            client.log_param(pid, f"{part}.{k}", param_text(v))
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
    client.set_tag(pid, NOTE_TAG, pipeline_note(name, summary, failed))
    client.set_terminated(pid, status="FAILED" if failed else "FINISHED")
    return pid


def param_text(value) -> str:
    """A Table S1 value as an MLflow parameter: a number as ``.6g`` (as a study's trial
    parameters), anything else as written."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


NOTE_REASON_CHARS = 2000
"""The failure's reason in the description is cut here (its tag ``fail_reason`` holds 5,000
characters; MLflow 3.17 keeps 8,000 of a tag)."""


def pipeline_note(name: str, summary: dict, failed: PipelineFailed | None) -> str:
    """The parent run's description (markdown): the parameter set, the fidelity, what
    ``calib pipeline`` printed, and where the full values are."""
    head = (f"**calib pipeline `{name}`**: parameters `{summary['params']}`, fidelity {summary['fidelity']}."
            + (f"\n\n**Failed** at stage {failed.stage}: {failed.reason[:NOTE_REASON_CHARS]}"
               if failed is not None else ""))
    lines = "\n".join(f"    {line}" for line in summary_lines(name, summary))
    return (f"{head}\n\n{lines}\n\n- A nested run per stage, and per calendering degree (`characterise_<d>pct`), "
            "holds its metrics and files.\n- Metrics show 6 significant digits; `pipeline.json` (artifact) keeps "
            "every value in full.")


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
