"""``calib pipeline`` after its input checks, with the stages stubbed (no LAMMPS): two
pipelines started in the same second get folders of their own, and an MLflow failure is a
warning, not a lost result (``pipeline.json`` is written, exit 0)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from conftest import DEFAULT_STUDY


def test_same_second_pipelines_get_their_own_folders_and_survive_mlflow(tmp_path: Path, monkeypatch) -> None:
    import calib.core.backend_registry
    import calib.execution.pipeline
    import sim_backends.lammps.install
    from calib.cli import app

    def fake_run(loaded, params, workdir, *args, **kwargs):
        return calib.execution.pipeline.PipelineResult(workdir)

    def broken_log(*args, **kwargs):
        raise RuntimeError("tracking server gone")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sim_backends.lammps.install, "locate_lammps", lambda: None)
    monkeypatch.setattr(calib.core.backend_registry, "make_backend", lambda resources, lammps: None)
    monkeypatch.setattr(calib.execution.pipeline, "run_pipeline", fake_run)
    monkeypatch.setattr(calib.execution.pipeline_outputs, "log_pipeline", broken_log)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    study = DEFAULT_STUDY.parent / "ssb_pipeline.yaml"
    folders = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["pipeline", "--study", str(study), "--fidelity", "smoke", "--json", "--placements", "1",
                                          "--tracking-uri", "sqlite:///mlflow.db"])
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert "calib: warning: the pipeline was not logged to MLflow (RuntimeError: tracking server gone)" \
            in result.stderr
        summary = json.loads(result.stdout)
        folder = Path(summary["workdir"])
        assert (folder / "pipeline.json").is_file() and "mlflow_run_id" not in summary
        folders.append(folder.name)
    assert folders == ["ssb_pipeline-smoke-20260101-000000", "ssb_pipeline-smoke-20260101-000000-2"]
