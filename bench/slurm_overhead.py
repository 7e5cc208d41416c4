"""What Slurm costs: scheduling overhead per job on a single-node Slurm, and a 6-trial smoke
study on Slurm against the local backend, in one invocation. Prints figures; asserts nothing.

    .venv/bin/python bench/slurm_overhead.py [--jobs 20] [--trials 6] [--skip-study] [--json]

Two throw-away single-node clusters are started in turn (``tests/services.Slurm``: munged,
slurmctld, slurmd for this host's name and CPUs; needs root and Debian's ``slurm-wlm``,
installed if missing): one with Slurm's default ``batch_sched_delay`` (3 s) and one with 0,
as the tests' cluster runs.

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


CONFIGS = {"Slurm's default (batch_sched_delay=3)": "batch_sched_delay=3",
           "batch_sched_delay=0 (the tests' cluster)": "batch_sched_delay=0"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from services import Slurm

    out: dict = {"cores": os.cpu_count(), "configs": {}}
    with tempfile.TemporaryDirectory(prefix="calib_bench_slurm_") as d:
        root = Path(d)
        (root / "local").mkdir()
        over, together = turnaround(LocalBackend(), root / "local", args.jobs)
        out["local"] = {"overhead_median_s": statistics.median(over), "overhead_max_s": max(over),
                        "together_s": together}
        if not args.skip_study:
            out["local"]["study"] = study_wall(root, "bench_local", args.trials, "local", None)
        for i, (label, params) in enumerate(CONFIGS.items()):
            cluster = Slurm(scheduler_parameters=params)
            os.environ.update(cluster.env)
            try:
                (root / f"slurm{i}").mkdir()
                over, together = turnaround(SlurmBackend(SlurmOptions(poll_interval_s=0.1)), root / f"slurm{i}",
                                            args.jobs)
                row = {"overhead_median_s": statistics.median(over), "overhead_max_s": max(over),
                       "together_s": together}
                if not args.skip_study:
                    row["study_poll5"] = study_wall(root, f"bench_slurm{i}_5", args.trials, "slurm", None)
                    row["study_poll05"] = study_wall(root, f"bench_slurm{i}_05", args.trials, "slurm", 0.5)
                out["configs"][label] = row
            finally:
                cluster.stop()
                os.environ.pop("SLURM_CONF", None)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    loc = out["local"]
    print(f"Slurm against the local backend on this machine ({out['cores']} cores, single-node Slurm); "
          f"{args.jobs} 'true' jobs one after another (overhead: turnaround minus the job's own run) and together")
    print(f"  local{'':38s}: overhead per job {loc['overhead_median_s']:.3f} s median, {loc['overhead_max_s']:.3f} s "
          f"max; {args.jobs} together {loc['together_s']:.2f} s")
    for label, r in out["configs"].items():
        print(f"  slurm, {label:36s}: overhead per job {r['overhead_median_s']:.3f} s median, "
              f"{r['overhead_max_s']:.3f} s max; {args.jobs} together {r['together_s']:.2f} s")
    if not args.skip_study:
        base = loc["study"]["wall_s"]
        print(f"  {args.trials}-trial smoke study (parallel 2), calib optimize end to end:")
        print(f"    local{'':47s}: {base:6.1f} s ({loc['study']['complete']} complete)")
        for label, r in out["configs"].items():
            for key, poll in (("study_poll5", "poll 5 s"), ("study_poll05", "poll 0.5 s")):
                st = r[key]
                print(f"    slurm, {label:36s}, {poll:10s}: {st['wall_s']:6.1f} s ({st['complete']} complete; "
                      f"x{st['wall_s'] / base:.2f} of local)")


if __name__ == "__main__":
    main()
