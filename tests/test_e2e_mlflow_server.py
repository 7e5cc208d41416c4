"""``--tracking-uri`` pointing at a real MLflow tracking server started on loopback, with a
SQLite or a PostgreSQL backend store (the server mode of docs/operations.md, "On a cluster") and
an artifact root the server serves; unusable tracking URIs are refused up front."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import parse_json_stdout, run_calib, write_study
from mlflow_checks import assert_finished_lammps_log, assert_runs_match_ledger, data_file_atoms, download
from services import MlflowServer

pytestmark = pytest.mark.lammps


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def mlflow_server(request, tmp_path: Path):
    backend = None  # MlflowServer's default: SQLite in its directory
    if request.param == "postgresql":
        backend = request.getfixturevalue("postgres").create_database(f"mlflow_{uuid.uuid4().hex[:8]}")
    server = MlflowServer(backend_store_uri=backend, root=tmp_path / "server")
    yield server.url
    server.stop()


def test_optimize_logs_to_tracking_server(tmp_path: Path, mlflow_server: str):
    study = write_study(tmp_path, "served", trials=1, parallel=1)
    proc = run_calib("optimize", "--stage", "slurry", "--study", str(study), "--fidelity", "smoke",
                     "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", mlflow_server, "--json", cwd=tmp_path)
    s = parse_json_stdout(proc)
    assert s["trials_complete"] == 1
    # stderr carries calib's lines only: not MLflow's links at the end of each run, nor its INFO log
    assert "View run" not in proc.stderr and "View experiment" not in proc.stderr, proc.stderr
    assert " INFO " not in proc.stderr, proc.stderr
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing went to the embedded store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("served")
    runs = client.search_runs([exp.experiment_id])
    trial = [r for r in runs if r.data.tags.get("calib.role") == "trial"]
    assert len(trial) == 1 and trial[0].data.tags["state"] == "COMPLETE"
    assert "density_g_cm3" in trial[0].data.metrics
    assert {"in.slurry", "log.lammps", "final.data"} <= {a.path for a in client.list_artifacts(trial[0].info.run_id)}
    # the files came through the server whole: the trial's own deck, log and state
    rid, workdir, dl = trial[0].info.run_id, Path(trial[0].data.tags["calib.workdir"]), tmp_path / "dl"
    for name in ("in.slurry", "log.lammps", "final.data"):
        assert download(client, rid, name, dl).read_bytes() == (workdir / name).read_bytes(), name
    assert_finished_lammps_log((workdir / "log.lammps").read_text())
    assert data_file_atoms((workdir / "final.data").read_text()) == 200
    # the study ended: every run of it on the server FINISHED, one per ledger trial
    assert_runs_match_ledger(mlflow_server, "served", s["storage"])


@pytest.mark.parametrize("uri, says", [
    ("http://127.0.0.1:1", "no MLflow server answers at http://127.0.0.1:1"),
    ("foo://x", "MLflow has no tracking store for foo://"),
])
def test_an_unusable_tracking_uri_is_refused_writing_nothing(tmp_path: Path, uri: str, says: str):
    t0 = time.perf_counter()
    proc = run_calib("optimize", "--stage", "slurry", "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", uri,
                     cwd=tmp_path, check=False)
    assert proc.returncode == 2 and time.perf_counter() - t0 < 30
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("calib: error: --tracking-uri: uri: ") and says in line
    assert not (tmp_path / "runs").exists()


def test_the_probe_sends_the_credentials_mlflow_would(monkeypatch):
    """A server behind authentication answers the probe when MLflow's credential variables
    are set, and is refused (one line) when they are not."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from calib.core.errors import InputError
    from calib.review.tracking_uri import check_tracking_uri

    good = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            ok = self.headers.get("Authorization") == good
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b'{"experiments": []}' if ok else b"credentials required")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        with pytest.raises(InputError, match="HTTP 401: credentials required"):
            check_tracking_uri(url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
        check_tracking_uri(url)  # answers
    finally:
        server.shutdown()
