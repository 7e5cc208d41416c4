"""Drying and calendering protocols against the public (target) protocols, on the same states.
Prints the error of each cheap protocol against the target; asserts nothing.

    .venv/bin/python bench/electrode_protocols.py --fidelity dev --drying-steps 40000 200000 2000000
    .venv/bin/python bench/electrode_protocols.py --fidelity dev --drying-steps 70000000   # the public target: hours
    .venv/bin/python bench/electrode_protocols.py --fidelity dev --drying-steps 70000000 --chunk-steps 5000000 \
        --degrees --speeds                                       # the same in 14 resumable segments
    .venv/bin/python bench/electrode_protocols.py --fidelity dev --drying-steps --degrees 30 50 --speeds 0.5 0.2 0.05 0.02
    .venv/bin/python bench/electrode_protocols.py --fidelity dev --drying-steps --speeds 0.02 --calender-timestep 1e-4
    .venv/bin/python bench/electrode_protocols.py --report

Table S1 parameters with the settings of ``studies/ssb_pipeline.yaml``, through the loop's
runner and the local backend, one LAMMPS run at a time (so wall times are not shared):

1. One slurry state: the pipeline's slurry stage, run once per fidelity and seed (or
   ``--slurry-state FILE``); every drying run starts from it (its sha256 is recorded).
2. Drying at each of ``--drying-steps`` (the fidelity's ``drying_steps`` replaced; the rest
   of the fidelity as it is). The public ``Drying_homogeneous/in_evap_hom.run`` runs
   70,000,000 NPT(z) steps: that is the target, added explicitly since it takes hours. The
   report gives porosity and thickness against the longest run present (and says whether it
   is the public 7e7), the stage's film-height plateau verdict, how much the film height
   still moved over the last 10 % of the run, and the drift of the dried porosity between
   consecutive step counts against the plateau test's tolerance.
3. Calendering from one dried state (that of ``--calender-from-steps``, default the longest
   drying run done) at each of ``--degrees`` and each plane speed of ``--speeds`` (um/us),
   at ``--calender-timestep`` (default: the fidelity's). The public ``Calendering/in_cal.run``
   moves the plane at 0.02 um/us with a 1e-4 us step: that is the target; the report gives
   each run's error against the 0.02 um/us run of the same degree (at 1e-4 us when there is
   one, else at the same step).

Every run is kept in ``--results`` (one JSON line per run), keyed by its settings and the sha256
of the state it started from, and a run already there is not repeated, so a long measurement
continues across invocations; a failed run is kept with its reason (delete its line to retry).
The states live in ``--work`` (default ``bench/out/electrode_protocols``, git-ignored): keep it
between invocations, since calendering needs the dried state file and a fresh slurry run would
be a new state (new sha256: every drying run again). ``--report`` prints the tables from the
results alone. Runs have no time limit unless ``--timeout-s`` (the study's 1800 s would stop
the long drying runs).

``--chunk-steps N`` runs each drying run longer than N NPT(z) steps as segments of N steps (N a
multiple of the fidelity's ``block_steps``), one LAMMPS run each, chained by restart files
(``ChunkedDryingTrial``; the decks: ``sim_backends.lammps.drying.drying_segment_deck``). Its
folder, ``drying_<steps>_chunks<N>``, keeps which segment finished last: rerunning the same
command after an interruption (a session that ended, Ctrl-C) continues from that segment's
restart, losing at most the segment that was running (``--timeout-s`` then limits each
segment), or the run-on past the end (the drift verdict's, one LAMMPS run of 10 % of the
steps after the last segment: 7e6 steps for the public protocol, run again whole if cut); a
stopped chunked run is not recorded, so the same command resumes it. The finished run is measured as a single one (same files, same code) and recorded
under the same key, with ``chunk_steps``, ``segments`` and ``session_starts`` (the segment each
invocation began at) added; ``wall_s`` and ``run_wall_s`` add up all invocations' segments.
A restarted run is statistically equivalent to the single one, not bit-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from results_log import append_result, load_results  # noqa: E402

from calib import stages  # noqa: E402
from calib.stages.upstream_state import Lineage, sha256_of, state_bead_count  # noqa: E402
from calib.execution.pipeline import run_pipeline  # noqa: E402
from calib.execution.pipeline_model import params_from  # noqa: E402
from calib.execution.runner import Runner, TrialExecution  # noqa: E402
from calib.stages import Run  # noqa: E402
from calib.stages.calendering import CalenderingTrial  # noqa: E402
from calib.stages.drying import PUBLIC_DRYING_STEPS, DryingTrial  # noqa: E402
from calib.stages.film_structure import study_or_fidelity  # noqa: E402
from calib.study.load import load_study  # noqa: E402
from sim_backends.jsonsafe import json_safe  # noqa: E402
from sim_backends.lammps.calendering import CALENDER_STATUS, CALENDERED_DATA  # noqa: E402
from sim_backends.lammps.compression import LAWS, NptProtocol, compress  # noqa: E402
from sim_backends.lammps.drying import (DRIED_DATA, DRYING_HOLD_DECK, DRYING_HOLD_LOG, DRYING_LOG,  # noqa: E402
                                        DRYING_STATUS, LZ_FILE, UPSTREAM_DATA, DryingSegment, drying_hold_deck,
                                        drying_segment_deck, drying_segments)
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.lammps.outputs import SimulationFailed, checked_log, read_ave_time, read_status  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402

STUDY = REPO / "studies" / "ssb_pipeline.yaml"
RESULTS = REPO / "bench" / "results" / "electrode_protocols.jsonl"
WORK = REPO / "bench" / "out" / "electrode_protocols"
PARAMS = "table-s1"
PUBLIC_SPEED_UM_PER_US = 0.02
PUBLIC_CALENDER_TIMESTEP_US = 1e-4
"""The public ``Calendering/in_cal.run``'s plane speed and step (calib.stages.calendering)."""
TRAJECTORY_POINTS = 100
"""The film height (lz) along a drying run is kept as means over this many equal parts."""


# ---------------------------------------------------------------------------------------- results

def key_of(r: dict) -> tuple:
    if r["kind"] == "slurry":
        return ("slurry", r["fidelity"], r["seed"], r["params"], r["sha256"])
    if r["kind"] == "drying":
        return ("drying", r["fidelity"], r["seed"], r["params"], r["slurry_sha256"], r["drying_steps"],
                r["mount_steps"], r["timestep_us"], r.get("hold_steps", 0), r.get("drying_law", "none"))
    return ("calendering", r["fidelity"], r["seed"], r["params"], r["dried_sha256"], r["degree_pct"],
            r["speed_um_per_us"], r["timestep_us"], r["hold_steps"], r["release_steps"], r["release"])


def load(path: Path) -> dict[tuple, dict]:
    return load_results(path, key_of)


def append(path: Path, done: dict[tuple, dict], rec: dict) -> None:
    append_result(path, rec)
    done[key_of(rec)] = rec


def _execute(trial, loaded, lammps, timeout_s: float | None, name: str):
    """Run one stage trial to its end (one LAMMPS run at a time); (outcome, execution, wall s)."""
    ex = TrialExecution(trial, Runner(LocalBackend(), lammps, loaded.spec.resources, timeout_s), name)
    t0 = time.perf_counter()
    outcome = ex.run()
    return outcome, ex, time.perf_counter() - t0


def _finite(x) -> float | None:
    """``x`` as a float, None if it is None or not finite (``json_safe``)."""
    return None if x is None else json_safe(float(x))


# ---------------------------------------------------------------------------------------- runs

def slurry_state(args, loaded, lammps, group: Path, done: dict) -> tuple[Path, str]:
    """The slurry state every drying run starts from: ``--slurry-state``, else the one in the
    work folder, else the pipeline's slurry stage run now (its record appended)."""
    if args.slurry_state is not None:
        path = args.slurry_state.resolve()
        sha = sha256_of(path)
        stages.get("drying").check_upstream(loaded.with_stage("drying"),
                                            Lineage("slurry", None, None, None, str(path), sha))
        print(f"# slurry state {path} (given), sha256 {sha[:12]}", flush=True)
        return path, sha
    wd = group / "pipeline"
    path = wd / "slurry" / "final.data"
    if path.exists():
        sha = sha256_of(path)
        print(f"# slurry state {path} (work folder), sha256 {sha[:12]}", flush=True)
        return path, sha
    if wd.exists():
        shutil.rmtree(wd)  # an interrupted slurry run
    wd.mkdir(parents=True)
    print(f"# slurry stage ({args.fidelity}, seed {args.seed}) ...", flush=True)
    t0 = time.perf_counter()
    res = run_pipeline(loaded, params_from(PARAMS, "sqlite:///unused.db"), wd, LocalBackend(), lammps,
                       seed=args.seed, last="slurry")
    wall = time.perf_counter() - t0
    sha = sha256_of(path)
    rec = {"kind": "slurry", "fidelity": args.fidelity, "seed": args.seed, "params": PARAMS, "sha256": sha,
           "n_beads": state_bead_count(path), "density_g_cm3": _finite(res.slurry.get("density_g_cm3")),
           "density_converged": res.slurry.get("density_converged"), "wall_s": round(wall, 1),
           "run_wall_s": {k: round(v, 1) for k, v in res.wall_s.items()}, "state": str(path),
           "measured": time.strftime("%Y-%m-%d")}
    append(args.results, done, rec)
    print(f"# slurry: {rec['n_beads']} beads, density {rec['density_g_cm3']}, sha256 {sha[:12]}, {wall:.0f} s",
          flush=True)
    return path, sha


def lz_summary(workdir: Path) -> dict:
    """The periodic film height along the NPT(z) run: means over equal parts, and its change
    over the last 10 % of the run (last part's mean against the part ending at 90 %)."""
    _, lz = read_ave_time(workdir / LZ_FILE)
    if len(lz) < 2:
        return {}
    parts = [float(np.mean(p)) for p in np.array_split(lz, min(TRAJECTORY_POINTS, len(lz)))]
    i90 = max(0, round(0.9 * len(parts)) - 1)
    return {"lz_blocks": len(lz), "lz_parts_um": [round(x, 5) for x in parts],
            "lz_change_last_10pct_rel": parts[-1] / parts[i90] - 1.0}


SEGMENT_PROGRESS = "segments.json"
"""A chunked drying run's progress in its folder (``ChunkedDryingTrial``)."""


class ChunkedDryingTrial(DryingTrial):
    """A drying trial whose NPT(z) run goes through LAMMPS in segments of ``chunk_steps``
    (``sim_backends.lammps.drying.drying_segments``), one job after the other, each ending with
    a restart file. Its progress (segments done, the film-height and status files' sizes then,
    each segment's wall time) is kept in ``segments.json`` in its folder: a new trial on the
    same folder, with the same decks and slurry state, continues after the last completed
    segment (the files a cut segment had begun are rewound to that point); any other folder
    content is cleared and the run starts over. Once the last segment has written
    ``final.data``, the segments' logs are joined into ``log.lammps`` and the trial measures and
    scores exactly as ``DryingTrial`` (same files, same code)."""

    def __init__(self, workdir: Path, loaded, fidelity, params, seed: int, lineage: Lineage,
                 chunk_steps: int) -> None:
        super().__init__(workdir, loaded, fidelity, params, seed, lineage)
        self.chunk_steps = chunk_steps
        spec = self.run_spec()
        self.segments: list[DryingSegment] = drying_segments(spec, chunk_steps)
        self.decks = {s.deck: drying_segment_deck(self.slurry_system, self.system, self.params, spec, s)
                      for s in self.segments}
        if spec.hold_steps > 0:  # the run-on after the last segment
            self.decks[DRYING_HOLD_DECK] = drying_hold_deck(self.system, self.params, spec)
        h = hashlib.sha256(lineage.sha256.encode())
        for name, text in self.decks.items():
            h.update(f"\0{name}\0{text}".encode())
        self.fingerprint = h.hexdigest()
        self.progress = self._resume() or self._fresh()
        self.first_segment = self.progress["done"]
        self._current: DryingSegment | None = None
        self._t0 = 0.0

    # -- progress in the work folder
    def _save(self) -> None:
        tmp = self.workdir / (SEGMENT_PROGRESS + ".tmp")
        tmp.write_text(json.dumps(self.progress, indent=1))
        os.replace(tmp, self.workdir / SEGMENT_PROGRESS)

    def _size(self, name: str) -> int:
        path = self.workdir / name
        return path.stat().st_size if path.exists() else 0

    def _resume(self) -> dict | None:
        """The progress in the folder, the files rewound to it; None if there is none to use."""
        path = self.workdir / SEGMENT_PROGRESS
        try:
            prog = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        done = prog.get("done")
        if not isinstance(done, int) or not 0 <= done <= len(self.segments):
            return None
        if prog.get("fingerprint") != self.fingerprint and not self._done_decks_unchanged(prog, done):
            return None
        if 0 < done < len(self.segments) and not (self.workdir / self.segments[done - 1].restart).exists():
            return None
        if done == len(self.segments) and not (self.workdir / DRIED_DATA).exists():
            return None
        sizes = prog.get("sizes") or {}
        if not all(isinstance(sizes.get(n), int) and self._size(n) >= sizes[n] for n in (LZ_FILE, DRYING_STATUS)):
            return None
        for name in (LZ_FILE, DRYING_STATUS):  # drop what a cut segment appended
            if (self.workdir / name).exists():
                with open(self.workdir / name, "r+b") as fh:
                    fh.truncate(sizes[name])
        for seg in self.segments[done:]:  # a cut segment's log, restart or state
            for name in (seg.log, seg.restart or DRIED_DATA):
                (self.workdir / name).unlink(missing_ok=True)
        for name in (DRYING_LOG, DRYING_HOLD_LOG):  # the end state (DRYING_END_RESTART) stays for the run-on
            (self.workdir / name).unlink(missing_ok=True)
        ran = {seg.deck for seg in self.segments[:done]}
        for name, text in self.decks.items():  # the decks still to run, as this code writes them
            if name not in ran:
                (self.workdir / name).write_text(text)
        prog["fingerprint"] = self.fingerprint
        return prog

    def _done_decks_unchanged(self, prog: dict, done: int) -> bool:
        """Whether a run whose decks changed since it began may continue: the same slurry
        state and segments, and the decks of the segments done identical to those on disk
        (what changed is in segments still to run, e.g. a run-on added after the last)."""
        if prog.get("slurry_sha256") != self.lineage.sha256 or prog.get("chunk_steps") != self.chunk_steps \
                or prog.get("segments") != len(self.segments):
            return False
        for seg in self.segments[:done]:
            path = self.workdir / seg.deck
            if not path.exists() or path.read_text() != self.decks[seg.deck]:
                return False
        return True

    def _fresh(self) -> dict:
        """Clear the folder, place the slurry state and the decks; nothing done."""
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        shutil.copyfile(self.lineage.state_file, self.workdir / UPSTREAM_DATA)
        for name, text in self.decks.items():
            (self.workdir / name).write_text(text)
        self.progress = {"fingerprint": self.fingerprint, "slurry_sha256": self.lineage.sha256,
                         "chunk_steps": self.chunk_steps, "segments": len(self.segments), "done": 0,
                         "sizes": {LZ_FILE: 0, DRYING_STATUS: 0}, "wall_s": [], "session_starts": []}
        self._save()
        return self.progress

    # -- the runs
    def _run(self, seg: DryingSegment) -> list[Run]:
        self._current, self._t0 = seg, time.perf_counter()
        return [Run(f"drying_seg{seg.index:03d}", self.workdir, seg.deck, seg.log, (seg.deck, seg.log),
                    label=f"drying segment {seg.index + 1} of {seg.count}")]

    def first_runs(self) -> list[Run]:
        done = self.progress["done"]
        self.progress["session_starts"].append(done)
        self._save()
        return self._run(self.segments[done]) if done < len(self.segments) else []

    def _complete(self, seg: DryingSegment) -> None:
        """Check a finished segment's log and outputs, then record it as done."""
        text = checked_log(self.workdir, seg.log)
        if not seg.is_first:
            if "Unused restart file" in text:
                raise SimulationFailed(f"segment {seg.index + 1}: part of the restart state went unused "
                                       "(a fix or the contact history not re-created under its ID)", self.workdir)
            if "fix ID: dry_npt" not in text:
                raise SimulationFailed(f"segment {seg.index + 1}: the barostat state was not restored", self.workdir)
        if not (self.workdir / (seg.restart or DRIED_DATA)).exists():
            raise SimulationFailed(f"segment {seg.index + 1} ended without writing {seg.restart or DRIED_DATA}",
                                   self.workdir)
        self.progress["done"] = seg.index + 1
        self.progress["sizes"] = {n: self._size(n) for n in (LZ_FILE, DRYING_STATUS)}
        self.progress["wall_s"].append(round(time.perf_counter() - self._t0, 1))
        self._save()
        if seg.restart_in is not None:  # the next segment starts from this one's restart
            (self.workdir / seg.restart_in).unlink(missing_ok=True)

    def next_runs(self) -> list[Run]:
        if self._current is not None:
            seg, self._current = self._current, None
            self._complete(seg)
            if not seg.is_last:
                return self._run(self.segments[seg.index + 1])
        # every segment done: one log, as the single run's, for the measurement; then the run-on
        (self.workdir / DRYING_LOG).write_text("".join(
            (self.workdir / s.log).read_text(errors="replace") for s in self.segments))
        return super().next_runs()

    @property
    def segments_wall_s(self) -> float:
        return float(sum(self.progress["wall_s"]))


def drying_law_of(args, steps: int) -> str:
    """The compression law a drying run of ``steps`` runs under: ``--drying-law``, except for
    the public protocol itself (k = 1: no law)."""
    return "none" if steps == PUBLIC_DRYING_STEPS else args.drying_law


def compressed_drying(loaded, fid, steps: int, law: str):
    """The study with its drying settings compressed from the public protocol (7e7 steps of
    the fidelity's step) to ``steps`` under ``law`` (``sim_backends.lammps.compression``),
    and the compressed protocol (None for ``none``: the settings as they are)."""
    if law == "none":
        return loaded, None
    d = loaded.spec.drying
    k = PUBLIC_DRYING_STEPS // steps
    if k * steps != PUBLIC_DRYING_STEPS:
        raise SystemExit(f"--drying-law {law}: {steps:,} steps is not the public {PUBLIC_DRYING_STEPS:,} / an integer")
    run = compress(NptProtocol(PUBLIC_DRYING_STEPS, fid.timestep_us, d.temperature_K, d.tdamp_us, d.pdamp_us), k, law)
    if run.timestep_us != fid.timestep_us:
        raise SystemExit(f"--drying-law {law} changes the step: not supported here")
    return loaded.with_section("drying", temperature_K=run.temperature_K, tdamp_us=run.tdamp_us,
                               pdamp_us=run.pdamp_us), run


def one_drying(args, loaded, fid, lammps, steps: int, slurry: Path, slurry_sha: str, group: Path) -> dict:
    fd = fid.model_copy(update={"drying_steps": steps})
    law = drying_law_of(args, steps)
    loaded, _ = compressed_drying(loaded, fid, steps, law)
    dry_loaded = loaded.with_stage("drying")
    params = params_from(PARAMS, "sqlite:///unused.db").dried
    lineage = Lineage("slurry", None, None, None, str(slurry), slurry_sha)
    chunk = args.chunk_steps if args.chunk_steps is not None and steps > args.chunk_steps else None
    if chunk is not None:  # resumable: the folder keeps its progress (ChunkedDryingTrial)
        trial = ChunkedDryingTrial(group / f"drying_{steps}_chunks{chunk}{_law_suffix(law)}", dry_loaded, fd,
                                   params, args.seed, lineage, chunk)
        wd = trial.workdir
    else:
        wd = group / f"drying_{steps}{_law_suffix(law)}"
        if wd.exists():
            shutil.rmtree(wd)  # an interrupted run, or one whose state was made from another slurry state
        wd.mkdir(parents=True)
        trial = DryingTrial(wd, dry_loaded, fd, params, args.seed, lineage)
    spec = trial.run_spec()
    rec = {"kind": "drying", "fidelity": args.fidelity, "seed": args.seed, "params": PARAMS,
           "slurry_sha256": slurry_sha, "drying_steps": steps, "mount_steps": spec.mount_steps,
           "timestep_us": spec.timestep_us, "public_steps": PUBLIC_DRYING_STEPS,
           "window_blocks": spec.window_blocks, "block_steps": spec.block_steps, "tolerance_rel": spec.tolerance_rel,
           "hold_steps": spec.hold_steps, "drying_law": law, "temperature_K": spec.temperature_K,
           "tdamp_us": spec.tdamp_us, "pdamp_us": spec.pdamp_us,
           "drift_tolerance_rel": dry_loaded.spec.drying.drift_tolerance_rel, "measured": time.strftime("%Y-%m-%d")}
    if isinstance(trial, ChunkedDryingTrial):
        n, first = len(trial.segments), trial.first_segment
        print(f"# drying {steps:,} steps in {n} segments of {chunk:,} ({wd}) "
              + (f"continuing after segment {first} ..." if first else "..."), flush=True)
        before = trial.segments_wall_s  # the segments run by earlier invocations
        outcome, ex, wall = _execute(trial, dry_loaded, lammps, args.timeout_s, f"bench-drying-{steps}")
        rec.update({"chunk_steps": chunk, "segments": n, "session_starts": trial.progress["session_starts"]})
        rec["wall_s"] = round(before + wall, 1)
        rec["run_wall_s"] = round(trial.segments_wall_s, 1)
    else:
        print(f"# drying {steps:,} steps ...", flush=True)
        outcome, ex, wall = _execute(trial, dry_loaded, lammps, args.timeout_s, f"bench-drying-{steps}")
        rec["wall_s"] = round(wall, 1)
        rec["run_wall_s"] = round(ex.wall_s.get("drying", math.nan), 1)
    if outcome.score is None:  # failed before it could be scored
        rec["error"] = outcome.why
        return rec
    s, st = trial.structure, trial.status
    assert s is not None and st is not None
    rec.update({"porosity": float(s.porosity), "thickness_um": float(s.thickness_um),
                "height_converged": bool(st.converged), "lz_change_rel_last_window": _finite(st.change_rel_last_window),
                "lz_start_um": st.lz_start_um, "lz_end_um": st.lz_end_um,
                "thickness_change_rel": st.thickness_change_rel, "verdict": outcome.score.attrs.get("drying_convergence"),
                "lz_hold_um": st.lz_hold_um,
                "porosity_past_end": _finite(outcome.score.observables.get("porosity_past_end")),
                "porosity_drift_rel_past_end": _finite(outcome.score.observables.get("porosity_drift_rel_past_end")),
                "atom_steps_per_s": _finite(outcome.score.observables.get("atom_steps_per_s")),
                "dried_sha256": sha256_of(trial.state_file), "state": str(trial.state_file)})
    if outcome.failed:  # scored, but failed by the study's policy (not_converged: fail)
        rec["error"] = outcome.why
    rec.update(lz_summary(wd))
    return rec


def _law_suffix(law: str) -> str:
    return "" if law == "none" else f"_{law}"


def calender_status_words(d: Path) -> dict[str, float]:
    """``calender_status.txt`` as name -> value (read here too: the stage raises on a bead
    through the plane instead of returning the count)."""
    try:
        return read_status(d, CALENDER_STATUS, "no calendering status", float)
    except SimulationFailed:  # no status file
        return {}


def one_calendering(args, loaded, fid, lammps, dried: dict, degree: float, speed: float, dt: float,
                    folder: Path) -> dict:
    fc = fid.model_copy(update={"calender_speed_um_per_us": speed, "calender_timestep_us": dt})
    cal_loaded = loaded.with_stage("calendering")
    wd = folder / f"v{speed:g}_dt{dt:g}_d{degree:g}"
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    state = Path(dried["state"])
    trial = CalenderingTrial(wd, cal_loaded, fc, params_from(PARAMS, "sqlite:///unused.db").dried, args.seed,
                             Lineage("drying", None, None, None, str(state), dried["dried_sha256"]), (degree,),
                             keep_going=True)
    spec = trial.run_spec(degree)
    if not (math.isclose(spec.speed_um_per_us, speed) and math.isclose(spec.timestep_us, dt)):
        raise SystemExit(f"the study file sets the calendering speed or step explicitly ({spec.speed_um_per_us:g} um/us, "
                         f"{spec.timestep_us:g} us), so the fidelity's override to {speed:g}, {dt:g} does not apply")
    rec = {"kind": "calendering", "fidelity": args.fidelity, "seed": args.seed, "params": PARAMS,
           "dried_sha256": dried["dried_sha256"], "from_drying_steps": dried["drying_steps"], "degree_pct": degree,
           "speed_um_per_us": spec.speed_um_per_us, "timestep_us": spec.timestep_us, "hold_steps": spec.hold_steps,
           "release_steps": spec.release_steps, "release": spec.release, "gap_um": spec.gap_um,
           "measured": time.strftime("%Y-%m-%d")}
    print(f"# calendering {degree:g} % at {speed:g} um/us, dt {dt:g} us (from the {dried['drying_steps']:,}-step "
          "dried state) ...", flush=True)
    outcome, ex, wall = _execute(trial, cal_loaded, lammps, args.timeout_s, f"bench-calender-{degree:g}-{speed:g}")
    rec["wall_s"] = round(wall, 1)
    rec["run_wall_s"] = round(ex.wall_s.get("calender_00", math.nan), 1)
    d = trial.degree_dir(0)
    words = calender_status_words(d)
    if "beyond" in words:
        rec["beads_through_plane"] = int(max(words["beyond"], words.get("beyond_end", 0)))
    if "t0" in words:  # steps of the plane's descent, as the deck computes them
        t0 = words["t0"]
        rec["compress_steps"] = math.ceil((t0 + spec.gap_um - (1 - degree / 100) * t0) / (speed * dt))
    if trial.results:
        r = trial.results[0]
        rec.update({"porosity": float(r.porosity), "thickness_um": float(r.thickness_um),
                    "thickness_before_um": float(r.thickness_before_um), "thickness_held_um": float(r.thickness_held_um),
                    "plane_um": _finite(r.plane_um), "relaxed": bool(r.relaxed),
                    "relax_change_rel": _finite(r.relax_change_rel), "state_sha256": sha256_of(d / CALENDERED_DATA)})
    if outcome.failed:
        rec["error"] = trial.failed.get(degree) or outcome.why
    return rec


# ---------------------------------------------------------------------------------------- report

def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _signed_pct(x: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if x is None else f"{100 * x:+.{digits}f}{unit}"


def report(done: dict[tuple, dict]) -> None:
    recs = list(done.values())
    slurries = [r for r in recs if r["kind"] == "slurry"]
    if slurries:
        print("\n## Slurry states (pipeline slurry stage, Table S1)")
        print("| fidelity | seed | sha256 | beads | density g/cm^3 | converged | wall s |")
        print("|---|---|---|---|---|---|---|")
        for r in sorted(slurries, key=lambda r: (r["fidelity"], r["seed"])):
            dens = "-" if r.get("density_g_cm3") is None else f"{r['density_g_cm3']:.4f}"
            print(f"| {r['fidelity']} | {r['seed']} | {r['sha256'][:12]} | {r['n_beads']} | {dens} | "
                  f"{r.get('density_converged')} | {r['wall_s']:.0f} |")

    dryings = [r for r in recs if r["kind"] == "drying"]
    groups: dict[tuple, list[dict]] = {}
    for r in dryings:
        groups.setdefault((r["fidelity"], r["seed"], r["slurry_sha256"], r["mount_steps"], r["timestep_us"]), []).append(r)
    for (fidelity, seed, sha, mount, dt), rows in sorted(groups.items()):
        # a run repeated with a run-on (issue 26) replaces the one without: the same dried state
        latest: dict[tuple, dict] = {}
        for r in rows:
            k = (r["drying_steps"], r.get("drying_law", "none"))
            rank = (r.get("porosity") is not None, r.get("hold_steps", 0))
            if k not in latest or rank > (latest[k].get("porosity") is not None, latest[k].get("hold_steps", 0)):
                latest[k] = r
        rows = list(latest.values())
        rows.sort(key=lambda r: (r.get("drying_law", "none") != "none", r.get("drying_law", "none"),
                                 r["drying_steps"], r.get("hold_steps", 0)))
        ok = [r for r in rows if r.get("porosity") is not None and r.get("drying_law", "none") == "none"]
        ref = max(ok, key=lambda r: (r["drying_steps"], r.get("hold_steps", 0))) if ok else None
        print(f"\n## Drying from slurry state {sha[:12]} ({fidelity}, seed {seed}; {mount:,} mounting steps, "
              f"dt {dt:g} us)")
        if ref is not None:
            public = ref["drying_steps"] == ref.get("public_steps", PUBLIC_DRYING_STEPS)
            print(f"Reference: the {ref['drying_steps']:,}-step run, the longest present"
                  + (" = the public in_evap_hom.run protocol." if public else
                     f" (NOT the public {PUBLIC_DRYING_STEPS:,} steps; errors below are against it, "
                     "a lower bound on the error against the target)."))
        print("| drying steps | law (Tdamp, Pdamp us) | porosity % | vs ref (pp) | thickness um | vs ref | "
              "height plateau (last window) | lz change, last 10 % of run | run-on past the end: porosity % "
              "(drift) | wall s | dried sha256 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            law = r.get("drying_law", "none")
            law_txt = "none" if law == "none" else f"{law} ({r['tdamp_us']:g}, {r['pdamp_us']:g})"
            if r.get("porosity") is None:
                print(f"| {r['drying_steps']:,} | {law_txt} | FAILED: {r.get('error', '')} | | | | | | | "
                      f"{r['wall_s']:.0f} | |")
                continue
            run_on = "-" if r.get("porosity_past_end") is None else (
                f"{_pct(r['porosity_past_end'])} ({_signed_pct(r['porosity_drift_rel_past_end'], 2, ' %')} over "
                f"{r['hold_steps']:,} steps, tol {100 * r['drift_tolerance_rel']:.2g} %)")
            dp = dt_rel = None
            if ref is not None and r is not ref:
                dp = r["porosity"] - ref["porosity"]
                dt_rel = r["thickness_um"] / ref["thickness_um"] - 1
            plateau = (f"{'yes' if r['height_converged'] else 'NO'} ({_signed_pct(r.get('lz_change_rel_last_window'), 2, ' %')} "
                       f"over {r['window_blocks'] * r['block_steps']:,} steps, tol {100 * r['tolerance_rel']:.2g} %)")
            is_ref = "ref" if r is ref else None
            chunks = f" ({r['segments']} segments)" if r.get("segments") else ""
            print(f"| {r['drying_steps']:,}{chunks} | {law_txt} | {_pct(r['porosity'])} | {is_ref or _signed_pct(dp)} | "
                  f"{r['thickness_um']:.2f} | "
                  f"{is_ref or _signed_pct(dt_rel, 1, ' %')} | {plateau} | {_signed_pct(r.get('lz_change_last_10pct_rel'), 2, ' %')} | "
                  f"{run_on} | {r['wall_s']:.0f} | {r['dried_sha256'][:12]} |")
        ok = sorted({r["drying_steps"]: r for r in ok}.values(), key=lambda r: r["drying_steps"])
        if len(ok) > 1:
            print("\nDrift of the dried porosity between consecutive step counts (law none; relative change "
                  "against the height plateau test's tolerance):")
            print("| from steps | to steps | porosity change (pp) | relative | beyond tolerance |")
            print("|---|---|---|---|---|")
            for a, b in zip(ok, ok[1:]):
                rel = b["porosity"] / a["porosity"] - 1
                print(f"| {a['drying_steps']:,} | {b['drying_steps']:,} | {100 * (b['porosity'] - a['porosity']):+.2f} | "
                      f"{100 * rel:+.2f} % | {'YES' if abs(rel) > b['tolerance_rel'] else 'no'} |")

    cals = [r for r in recs if r["kind"] == "calendering"]
    cgroups: dict[tuple, list[dict]] = {}
    for r in cals:
        cgroups.setdefault((r["fidelity"], r["seed"], r["dried_sha256"], r["hold_steps"], r["release_steps"],
                            r["release"]), []).append(r)
    for (fidelity, seed, sha, hold, rel_steps, release), rows in sorted(cgroups.items()):
        rows.sort(key=lambda r: (r["degree_pct"], -r["speed_um_per_us"], -r["timestep_us"]))
        print(f"\n## Calendering from dried state {sha[:12]} ({fidelity}, seed {seed}; dried "
              f"{rows[0]['from_drying_steps']:,} steps; hold {hold:,} steps, relax {rel_steps:,} steps "
              f"{'without' if release else 'with'} the plane)")
        print(f"Reference: per degree, the {PUBLIC_SPEED_UM_PER_US:g} um/us run (public in_cal.run), at "
              f"{PUBLIC_CALENDER_TIMESTEP_US:g} us (public step) when present, else at the run's own step.")
        print("| degree % | speed um/us | dt us | plane steps | T0 um | held um | final um | porosity % | vs ref (pp) | "
              "thickness vs ref | relaxed (change) | beads through plane | reference | wall s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        refs = {}
        for r in rows:
            if math.isclose(r["speed_um_per_us"], PUBLIC_SPEED_UM_PER_US) and r.get("porosity") is not None:
                refs[(r["degree_pct"], r["timestep_us"])] = r
        for r in rows:
            ref = refs.get((r["degree_pct"], PUBLIC_CALENDER_TIMESTEP_US)) or refs.get((r["degree_pct"], r["timestep_us"]))
            ref_label = "-" if ref is None else "(this run)" if ref is r else \
                f"{ref['speed_um_per_us']:g} um/us @ {ref['timestep_us']:g} us"
            steps = f"{r['compress_steps']:,}" if "compress_steps" in r else "-"
            through = r.get("beads_through_plane", "-")
            if r.get("porosity") is None:
                print(f"| {r['degree_pct']:g} | {r['speed_um_per_us']:g} | {r['timestep_us']:g} | {steps} | | | | "
                      f"FAILED: {r.get('error', '')} | | | | {through} | {ref_label} | {r['wall_s']:.0f} |")
                continue
            dp = dth = None
            if ref is not None and ref is not r:
                dp = r["porosity"] - ref["porosity"]
                dth = r["thickness_um"] / ref["thickness_um"] - 1
            relaxed = f"{'yes' if r['relaxed'] else 'NO'} ({_signed_pct(r.get('relax_change_rel'), 2, ' %')})"
            print(f"| {r['degree_pct']:g} | {r['speed_um_per_us']:g} | {r['timestep_us']:g} | {steps} | "
                  f"{r['thickness_before_um']:.2f} | {r['thickness_held_um']:.2f} | {r['thickness_um']:.2f} | "
                  f"{_pct(r['porosity'])} | {_signed_pct(dp)} | {_signed_pct(dth, 1, ' %')} | {relaxed} | {through} | "
                  f"{ref_label} | {r['wall_s']:.0f} |")


# ---------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelity", default="dev")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slurry-state", type=Path, help="start every drying run from this slurry state")
    ap.add_argument("--drying-law", choices=("none", *(law for law in LAWS if law != "timestep")), default="none",
                    help="run each drying run shorter than the public 7e7 steps as the public protocol compressed "
                         "under this law (sim_backends/lammps/compression.py; k = 7e7 / steps), instead of the "
                         "same settings in fewer steps (none)")
    ap.add_argument("--drying-steps", type=int, nargs="*", default=[40_000, 200_000, 2_000_000],
                    help=f"NPT(z) steps of each drying run (public target: {PUBLIC_DRYING_STEPS}); "
                         "give the option alone to run none")
    ap.add_argument("--calender-from-steps", type=int,
                    help="calender the dried state of this drying run (default: the longest one done)")
    ap.add_argument("--degrees", type=float, nargs="*", default=[30.0, 50.0])
    ap.add_argument("--speeds", type=float, nargs="*", default=[0.5, 0.2, 0.05, 0.02],
                    help=f"plane speeds, um/us (public target: {PUBLIC_SPEED_UM_PER_US:g})")
    ap.add_argument("--calender-timestep", type=float,
                    help=f"calendering step, us (default: the fidelity's; public: {PUBLIC_CALENDER_TIMESTEP_US:g})")
    ap.add_argument("--timeout-s", type=float, help="wall limit of each run (default: none)")
    ap.add_argument("--chunk-steps", type=int,
                    help="run each drying run longer than this many NPT(z) steps in segments of this many, "
                         "resumable: rerun the same command after an interruption (default: one run)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--work", "--keep", type=Path, default=WORK,
                    help="the states and run folders (keep between invocations)")
    ap.add_argument("--report", action="store_true", help="print the tables from --results, run nothing")
    args = ap.parse_args()
    t_start = time.perf_counter()
    done = load(args.results)
    if not args.report:
        run_all(args, done)
    report(done)
    print(f"\n# wall time of this invocation: {time.perf_counter() - t_start:.0f} s")


def run_all(args, done: dict) -> None:
    loaded = load_study(STUDY, fidelity=args.fidelity)
    fid = loaded.spec.fidelity_spec()
    if args.chunk_steps is not None and (args.chunk_steps <= 0 or args.chunk_steps % fid.block_steps):
        raise SystemExit(f"--chunk-steps must be a positive multiple of the fidelity's block_steps ({fid.block_steps})")
    lammps = locate_lammps()
    group = args.work.resolve() / f"{args.fidelity}_s{args.seed}"
    group.mkdir(parents=True, exist_ok=True)
    print(f"# work folder {group}; results {args.results}", flush=True)
    slurry, slurry_sha = slurry_state(args, loaded, lammps, group, done)
    if args.slurry_state is None and ("slurry", args.fidelity, args.seed, PARAMS, slurry_sha) not in done:
        print("# (the slurry state in the work folder has no record in the results: not recorded here)")

    def drying_key(steps: int) -> tuple:
        hold = round(loaded.spec.drying.drift_hold_fraction * steps)
        return ("drying", args.fidelity, args.seed, PARAMS, slurry_sha, steps, fid.drying_mount_steps, fid.timestep_us,
                hold, drying_law_of(args, steps))

    for steps in sorted(set(args.drying_steps)):  # every compression valid before the first run
        compressed_drying(loaded, fid, steps, drying_law_of(args, steps))
    for steps in sorted(set(args.drying_steps)):
        if drying_key(steps) in done:
            continue
        rec = one_drying(args, loaded, fid, lammps, steps, slurry, slurry_sha, group)
        if "error" in rec and args.chunk_steps is not None and steps > args.chunk_steps:
            # a chunked run keeps its progress: not recorded as done, the same command resumes it
            print(f"# drying {steps:,} steps stopped ({rec['error']}); rerun the command to continue", flush=True)
            continue
        append(args.results, done, rec)
        print(f"# dried {steps:,} steps: porosity {_pct(rec.get('porosity'))} %, thickness "
              f"{rec.get('thickness_um', math.nan):.2f} um, height converged {rec.get('height_converged')}"
              f"{'; ' + rec['error'] if 'error' in rec else ''}; {rec['wall_s']:.0f} s", flush=True)

    if not args.degrees or not args.speeds:
        return
    mine = [r for k, r in done.items() if k[0] == "drying" and k[1:5] == (args.fidelity, args.seed, PARAMS, slurry_sha)
            and k[6:8] == (fid.drying_mount_steps, fid.timestep_us) and k[9] == "none" and r.get("dried_sha256")]
    if args.calender_from_steps is not None:
        mine = [r for r in mine if r["drying_steps"] == args.calender_from_steps]
    if not mine:
        print("# no dried state to calender (run drying first, or check --calender-from-steps)")
        return
    dried = max(mine, key=lambda r: r["drying_steps"])
    state = Path(dried["state"])
    if not state.exists() or sha256_of(state) != dried["dried_sha256"]:
        raise SystemExit(f"the dried state of the {dried['drying_steps']:,}-step run is not in the work folder "
                         f"({state}): give the --work that ran it, or delete that run's line from {args.results}")
    dt = args.calender_timestep if args.calender_timestep is not None else \
        study_or_fidelity(loaded.spec.calendering, "timestep_us", fid.calender_timestep_us)
    folder = group / f"calender_from_{dried['drying_steps']}_{dried['dried_sha256'][:8]}"
    for degree in sorted(set(args.degrees)):
        for speed in sorted(set(args.speeds), reverse=True):  # fastest (cheapest) first
            key = ("calendering", args.fidelity, args.seed, PARAMS, dried["dried_sha256"], degree, speed, dt,
                   fid.calender_hold_steps, fid.calender_release_steps, loaded.spec.calendering.release)
            if key in done:
                continue
            rec = one_calendering(args, loaded, fid, lammps, dried, degree, speed, dt, folder)
            append(args.results, done, rec)
            print(f"# calendered {degree:g} % at {speed:g} um/us: porosity {_pct(rec.get('porosity'))} %, relaxed "
                  f"{rec.get('relaxed')}, beads through the plane {rec.get('beads_through_plane')}"
                  f"{'; ' + rec['error'] if 'error' in rec else ''}; {rec['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
