"""What Slurm costs: scheduling overhead per job on a single-node Slurm, and a 6-trial smoke
study on Slurm against the local backend, in one invocation. Prints figures; asserts nothing.

    .venv/bin/python bench/slurm_overhead.py [--jobs 20] [--trials 6] [--skip-study] [--json]

Without ``SLURM_CONF`` in the environment a throw-away single-node cluster is started
(``tests/services.Slurm``: munged, slurmctld, slurmd for this host's name and CPUs; needs
root and Debian's ``slurm-wlm``, installed if missing) and stopped at the end.

- Overhead per job: ``--jobs`` trivial jobs (``true``), one after another, each submitted
  through the backend and polled until it is over: the driver-side turnaround minus the
  job's own run time (from its exit record), for ``SlurmBackend`` (polling every 0.1 s)
  and ``LocalBackend``; and the same jobs submitted all at once.
- The study: the default study's smoke fidelity, ``--trials`` trials two at a time
  (``parallel: 2``), ``calib optimize`` end to end (MLflow off), with ``--backend local``,
  with ``--backend slurm`` at the default ``poll_interval_s`` (5 s) and at 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sim_backends.backend import Task  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402
from sim_backends.slurm import SlurmBackend, SlurmOptions  # noqa: E402


def turnaround(backend, root: Path, n: int) -> tuple[list[float], float]:
    """Per-job overhead (s) of ``n`` sequential ``true`` jobs, and the wall time (s) of ``n``
    submitted together."""
    over = []
    for i in range(n):
        wd = root / f"seq_{i:03d}"
        wd.mkdir()
        t0 = time.perf_counter()
        h = backend.submit(Task(wd, ("true",), name=f"bench-{i}"))
        while not backend.poll(h).terminal:
            time.sleep(0.02)
        total = time.perf_counter() - t0
        own = backend.collect(h).wall_s
        over.append(total - own)
    handles = []
    t0 = time.perf_counter()
    for i in range(n):
        wd = root / f"par_{i:03d}"
        wd.mkdir()
        handles.append(backend.submit(Task(wd, ("true",), name=f"bench-par-{i}")))
    while not all(backend.poll(h).terminal for h in handles):
        time.sleep(0.02)
    return over, time.perf_counter() - t0


def study_wall(tmp: Path, name: str, trials: int, backend: str, poll_s: float | None) -> dict:
    spec = yaml.safe_load((ROOT / "studies" / "ssb_slurry.yaml").read_text())
    spec.update(name=name, trials=trials, parallel=2)
    resources = spec.get("resources") or {}
    resources["backend"] = backend
    if poll_s is not None:
        resources["slurm"] = {"poll_interval_s": poll_s}
    spec["resources"] = resources
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "calib.cli", "optimize", "--stage", "slurry", "--study", str(path),
                           "--fidelity", "smoke", "--runs-dir", str(tmp / "runs"), "--tracking-uri", "none",
                           "--json"], capture_output=True, text=True, env=env, cwd=tmp)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    s = json.loads(proc.stdout)
    return {"wall_s": wall, "complete": s["trials_complete"], "failed": s["trials_failed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cluster = None
    if "SLURM_CONF" not in os.environ:
        from services import Slurm

        cluster = Slurm()
        os.environ.update(cluster.env)
    out: dict = {"cores": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory(prefix="calib_bench_slurm_") as d:
            root = Path(d)
            for label, backend in (("local", LocalBackend()), ("slurm", SlurmBackend(SlurmOptions(poll_interval_s=0.1)))):
                (root / label).mkdir()
                over, together = turnaround(backend, root / label, args.jobs)
                out[f"{label}_overhead_s"] = {"median": statistics.median(over), "max": max(over)}
                out[f"{label}_{args.jobs}_together_s"] = together
            if not args.skip_study:
                out["study_local"] = study_wall(root, "bench_local", args.trials, "local", None)
                out["study_slurm_poll5"] = study_wall(root, "bench_slurm5", args.trials, "slurm", None)
                out["study_slurm_poll05"] = study_wall(root, "bench_slurm05", args.trials, "slurm", 0.5)
    finally:
        if cluster is not None:
            cluster.stop()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"Slurm against the local backend on this machine ({out['cores']} cores, single-node Slurm)")
    for label in ("local", "slurm"):
        o = out[f"{label}_overhead_s"]
        print(f"  {label:5s}: overhead per job {o['median']:.3f} s median, {o['max']:.3f} s max "
              f"({args.jobs} sequential 'true' jobs); {args.jobs} together: {out[f'{label}_{args.jobs}_together_s']:.2f} s")
    ratio = out["slurm_overhead_s"]["median"] / max(out["local_overhead_s"]["median"], 1e-9)
    print(f"  Slurm / local overhead per job: {ratio:.0f}x")
    if not args.skip_study:
        base = out["study_local"]["wall_s"]
        for key, label in (("study_local", "local"), ("study_slurm_poll5", "slurm, poll 5 s"),
                           ("study_slurm_poll05", "slurm, poll 0.5 s")):
            r = out[key]
            print(f"  {args.trials}-trial smoke study, {label:17s}: {r['wall_s']:6.1f} s "
                  f"({r['complete']} complete, {r['failed']} failed; x{r['wall_s'] / base:.2f} of local)")


if __name__ == "__main__":
    main()
