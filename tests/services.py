"""System services the tests start themselves (never skipped on the project's machines):
a PostgreSQL server, a single-node Slurm cluster and an MLflow tracking server on a temporary
directory, loopback only, stopped afterwards; and a headless Chromium (Selenium) to look at
the MLflow UI with."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PG_USER, PG_PASSWORD, PG_DB = "calib", "calib-test-pw", "calib"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


APT_LOCK = Path(tempfile.gettempdir()) / "calib-tests-apt.lock"


@contextmanager
def apt_lock():
    """One installer at a time across pytest-xdist workers: dpkg's own lock makes a second
    ``apt-get`` fail at once instead of waiting. Every ``ensure_*_installed`` checks and
    installs under it, so a worker that waited finds the packages the other installed."""
    with open(APT_LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def apt_install(*packages: str, recommends: bool = True) -> None:
    """``apt-get update`` then ``apt-get install -y`` of ``packages`` (call under ``apt_lock``)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]), *packages],
                   check=True, capture_output=True, env=env)


def ensure_postgres_installed() -> Path:
    """PostgreSQL's binaries (Debian ``postgresql``, installed with apt-get if missing; the
    package's own cluster is left stopped)."""
    with apt_lock():
        bindir = _pg_bin()
        if bindir is None:
            apt_install("postgresql")
            bindir = _pg_bin()
            if bindir is not None:  # the package may start its own cluster: stop it (this test starts its own)
                subprocess.run(["pg_ctlcluster", "--mode", "fast", bindir.parent.name, "main", "stop"],
                               capture_output=True)
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

    def __init__(self, max_connections: int = 100) -> None:
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
                    "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections={max_connections}", "start")
        self.base = f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}"
        self._as_pg(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DB,
                    env={"PGPASSWORD": PG_PASSWORD})
        self.url = f"{self.base}/{PG_DB}"

    def create_database(self, name: str) -> str:
        """A new database on this server; its SQLAlchemy URL."""
        self._as_pg(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name,
                    env={"PGPASSWORD": PG_PASSWORD})
        return f"{self.base}/{name}"

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


# --------------------------------------------------------------------------- Slurm


def ensure_slurm_installed() -> None:
    """Slurm's daemons and client commands plus munge (Debian ``slurm-wlm``, ``munge``),
    installed with apt-get if missing; the packages' own services are left stopped."""
    with apt_lock():
        if all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "munged")):
            return
        apt_install("slurm-wlm", "munge")
    for unit in ("slurmctld", "slurmd", "munge"):  # started by the package where systemd runs; not here
        subprocess.run(["service", unit, "stop"], capture_output=True)
    assert all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "munged")), "Slurm missing after install"


SLURM_CONF = """\
# A single-node Slurm for calib's tests: this host, its CPUs, loopback ports, no accounting.
ClusterName=calibtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters={scheduler_parameters}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmdTimeout=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=calib Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    """A throw-away single-node Slurm cluster: munged, slurmctld and slurmd for this host's
    name and CPU count, on free loopback ports, state in a temporary directory. ``env``
    (``SLURM_CONF``) points the client commands at it; ``stop`` cancels every job and stops
    the daemons."""

    def __init__(self, scheduler_parameters: str = "batch_sched_delay=0") -> None:
        """``scheduler_parameters``: slurm.conf's ``SchedulerParameters`` (default: start
        batch jobs at once; Slurm's own default, ``batch_sched_delay=3``, holds each new
        batch job up to 3 s)."""
        ensure_slurm_installed()
        self.dir = Path(tempfile.mkdtemp(prefix="calib_slurm_"))
        self.dir.chmod(0o755)
        self.host = socket.gethostname()
        self.cpus = os.cpu_count() or 1
        for sub in ("state", "spool", "munge"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "munge", "munge", "munge")
        conf = self.dir / "slurm.conf"
        conf.write_text(SLURM_CONF.format(host=self.host, cpus=self.cpus, dir=self.dir, ctld_port=_free_port(),
                                          d_port=_free_port(), scheduler_parameters=scheduler_parameters))
        self.env = {"SLURM_CONF": str(conf)}
        self._procs: list[str] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _run(self, *cmd: str, user: str | None = None) -> subprocess.CompletedProcess:
        argv = (["runuser", "-u", user, "--"] if user else []) + list(cmd)
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **self.env})
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def _start(self) -> None:
        m = self.dir / "munge"
        self._run("munged", f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid",
                  f"--seed-file={m}/munged.seed", f"--log-file={m}/munged.log", user="munge")
        self._run("slurmctld")
        self._run("slurmd")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                                 env={**os.environ, **self.env}).stdout.strip()
            if out in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not come up: {out!r}; see {self.dir}/slurmd.log")

    def stop_controller(self) -> None:
        """Stop slurmctld (its jobs run on under slurmd; the queue does not answer)."""
        pid = int((self.dir / "slurmctld.pid").read_text())
        os.kill(pid, 15)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)

    def start_controller(self) -> None:
        """Start slurmctld again (it recovers its jobs from its state directory)."""
        self._run("slurmctld")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run(["squeue", "-h"], capture_output=True, env={**os.environ, **self.env}).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError("slurmctld did not come back")

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--full", "--partition=calib"], capture_output=True, env=env)
        subprocess.run(["scontrol", "shutdown"], capture_output=True, env=env)
        for pidfile in (self.dir / "slurmd.pid", self.dir / "slurmctld.pid", self.dir / "munge" / "munged.pid"):
            try:
                pid = int(pidfile.read_text())
            except (OSError, ValueError):
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.2)
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        subprocess.run(["pkill", "-f", f"slurmstepd.*{self.dir}"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- MLflow server


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies not counted)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (a free port, one worker) with backend store
    ``backend_store_uri`` (default: a SQLite file under ``root``) serving its artifacts from
    ``root/artifacts`` (``--artifacts-destination``: clients log artifacts through the
    server). ``root`` defaults to a new temporary directory, removed by ``stop``. ``url``
    answers ``/health`` once the constructor returns."""

    def __init__(self, backend_store_uri: str | None = None, root: Path | None = None, timeout: float = 120) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="calib_mlflow_")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.root / "server.log"
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", self.backend_store_uri,
                 "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # without MLflow 3's job runner (huey consumers for GenAI jobs calib never
                # submits): each server started 3 to 4 of them, a minute of CPU a test run
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        try:
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self._proc.returncode}): "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not answer /health in {timeout:.0f} s: "
                           f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Stop the server and every process it started (its uvicorn worker and job
        consumers share its process group)."""
        try:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 15
            while _group_alive(self._proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _group_alive(self._proc.pid):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- Chromium

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def ensure_chromium_installed() -> None:
    """Debian's ``chromium`` and its matching ``chromium-driver``, installed with apt-get
    (without recommended packages) if missing. About 15 s on a 2-core machine (26 packages,
    ~130 MB) after a 2 s ``apt-get update``."""
    with apt_lock():
        if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
            apt_install("chromium", "chromium-driver", recommends=False)
    assert os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK), "chromium missing after install"


def chromium(width: int = 1600, height: int = 1000):
    """A Selenium WebDriver for a new headless Chromium (Debian's, installed if missing)
    whose page area (viewport, what screenshots show) is ``width`` x ``height``; the caller
    quits it."""
    ensure_chromium_installed()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--lang=en-US", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:  # headless Chromium keeps ~140 px of the window for its (invisible) toolbars
        extra_w, extra_h = driver.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
        driver.set_window_size(width + extra_w, height + extra_h)
    except BaseException:
        driver.quit()
        raise
    return driver


# --------------------------------------------------------------------------- TeX


PDFLATEX = "/usr/bin/pdflatex"


def ensure_tex_installed() -> None:
    """Debian's TeX Live base and recommended LaTeX packages (booktabs), installed with
    apt-get without recommended packages if missing: about 45 s and 75 MB on a 2-core
    machine, ``apt-get update`` included."""
    with apt_lock():
        if os.access(PDFLATEX, os.X_OK) and subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True,
                                                           text=True).stdout.strip():
            return
        apt_install("texlive-latex-base", "texlive-latex-recommended", recommends=False)
    assert os.access(PDFLATEX, os.X_OK), "pdflatex missing after install"
