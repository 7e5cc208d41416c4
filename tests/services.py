"""System services the tests start themselves (never skipped on the project's machines):
a PostgreSQL server on a temporary directory, loopback only, stopped afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_USER, PG_PASSWORD, PG_DB = "calib", "calib-test-pw", "calib"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_postgres_installed() -> Path:
    """PostgreSQL's binaries (Debian ``postgresql``, installed with apt-get if missing; the
    package's own cluster is left stopped)."""
    bindir = _pg_bin()
    if bindir is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, capture_output=True, env=env)
        bindir = _pg_bin()
        if bindir is not None:  # the package may start its own cluster: stop it (this test starts its own)
            subprocess.run(["pg_ctlcluster", "--mode", "fast", bindir.parent.name, "main", "stop"], capture_output=True)
    assert bindir is not None, "PostgreSQL binaries not found after installing postgresql"
    return bindir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``) owned by the ``postgres``
    system user, listening on 127.0.0.1 only, with password authentication; ``url`` is a
    SQLAlchemy URL of its ``calib`` database."""

    def __init__(self) -> None:
        self.bin = ensure_postgres_installed()
        self.dir = Path(tempfile.mkdtemp(prefix="calib_pg_"))
        self.port = _free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        pw = self.dir / "pw"
        pw.write_text(PG_PASSWORD + "\n")
        shutil.chown(pw, "postgres", "postgres")
        self._as_pg(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", PG_USER, f"--pwfile={pw}",
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256")
        self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                    "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start")
        self.base = f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}"
        self._as_pg(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DB,
                    env={"PGPASSWORD": PG_PASSWORD})
        self.url = f"{self.base}/{PG_DB}"

    def _as_pg(self, *cmd: str, env: dict | None = None) -> None:
        proc = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, cwd=self.dir)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def stop(self) -> None:
        try:
            self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
