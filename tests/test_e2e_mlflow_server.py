"""``--tracking-uri`` pointing at a real MLflow tracking server (started on loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import parse_json_stdout, run_calib, write_study

pytestmark = pytest.mark.lammps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                             "--artifacts-destination", str(store / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("mlflow server exited")
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not come up")
        yield url
    finally:
        import os
        import signal
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_optimize_logs_to_tracking_server(tmp_path: Path, mlflow_server: str):
    study = write_study(tmp_path, "served", trials=1, parallel=1)
    s = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                                    "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", mlflow_server, "--json",
                                    cwd=tmp_path))
    assert s["trials_complete"] == 1
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing went to the embedded store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("served")
    runs = client.search_runs([exp.experiment_id])
    trial = [r for r in runs if r.data.tags.get("calib.role") == "trial"]
    assert len(trial) == 1 and trial[0].data.tags["state"] == "COMPLETE"
    assert "density_g_cm3" in trial[0].data.metrics
    assert {"in.slurry", "log.lammps", "final.data"} <= {a.path for a in client.list_artifacts(trial[0].info.run_id)}
