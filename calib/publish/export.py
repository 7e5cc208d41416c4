"""``calib export``: stored trials rendered as Table S1 (``calib.publish.table_s1``, rendered by
``calib.publish.table_s1_render``) and as LAMMPS include files with their provenance
(``calib.publish.provenance``). A study is read as a ``calib.publish.source.Source``; each
trial picked becomes a column (``calib.publish.trial_column``).

What is exported (``ExportRequest``):

- one study: its best trial (the lowest objective at the target fidelity), ``trial`` (any
  completed trial, manual ones included), the ``top`` K best, or the ``pareto`` front of a
  multi-objective study (non-dominated |errors|, ``calib.review.summary.pareto``), one column each;
- several studies: one column per stage, checked to be one lineage. The most downstream
  study (the one no other given study started from) gives its best trial (or ``trial``);
  every upstream column is the trial whose state that one started from (its ``lineage``
  attribute), whose state file, when still on disk, must still have the recorded sha256.

Every problem is an ``InputError`` raised before anything is written (exit 2): ``write``
is the only writer, and it first checks that none of its files exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from calib import ledger
from calib.core.errors import InputError
from calib.stages.upstream_state import STATE_FILE
from calib.review.summary import pareto
from calib.study.load import DEFAULT_DATA_ROOT
from calib.publish.provenance import sha256
from calib.publish.source import Source, open_source
from calib.publish.table_s1 import Table
from calib.publish.table_s1_render import FORMATS, SUFFIX, lammps_include, render
from calib.publish.trial_column import column


@dataclass(frozen=True)
class ExportRequest:
    """What ``calib export`` was asked for (see the module docstring)."""

    studies: tuple[str, ...]
    storage: str
    fmt: str = "markdown"
    top: int | None = None
    pareto: bool = False
    trial: int | None = None
    out: Path | None = None

    def check(self) -> None:
        """The options alone (no ledger read): ``InputError`` on a bad combination."""
        if self.fmt not in FORMATS:
            raise InputError("--format", "format", f"unknown format {self.fmt!r} (known: {', '.join(FORMATS)})")
        if not self.studies:
            raise InputError("--study", "study", "name at least one study")
        seen = [s for i, s in enumerate(self.studies) if s in self.studies[:i]]
        if seen:
            raise InputError("--study", "study", f"study {seen[0]!r} is given twice")
        picks = [o for o, on in (("--top", self.top is not None), ("--pareto", self.pareto),
                                 ("--trial", self.trial is not None)) if on]
        if len(picks) > 1:
            raise InputError(picks[1], picks[1].lstrip("-"), f"{' and '.join(picks)} pick the sets in different "
                                                             "ways: use one of them")
        if len(self.studies) > 1 and (self.top is not None or self.pareto):
            opt = "--top" if self.top is not None else "--pareto"
            raise InputError(opt, opt.lstrip("-"), f"{opt} picks sets of one study; with several studies the "
                                                   "columns are the stages of one lineage (give one --study)")
        if self.top is not None and self.top < 1:
            raise InputError("--top", "top", f"must be at least 1, got {self.top}")
        if self.trial is not None and self.trial < 0:
            raise InputError("--trial", "trial", f"must be at least 0, got {self.trial}")


@dataclass(frozen=True)
class Export:
    """The rendered table and the files ``--out`` writes (name -> text)."""

    table: Table
    text: str
    files: dict[str, str]


def _trial(src: Source, number: int, why: str = "--trial") -> FrozenTrial:
    """Completed trial ``number`` of ``src`` (``InputError`` naming ``why`` otherwise)."""
    trials = {t.number: t for t in src.study.get_trials(deepcopy=False)}
    field = why.lstrip("-")
    if number not in trials:
        last = max(trials) if trials else None
        span = f"its trials are 0 to {last}" if last is not None else "it has no trials"
        raise InputError(why, field, f"study {src.name!r} has no trial {number} ({span})")
    t = trials[number]
    if t.state != TrialState.COMPLETE:
        reason = t.user_attrs.get("fail_reason")
        raise InputError(why, field, f"trial {number} of study {src.name!r} did not complete "
                                     f"({t.state.name}{': ' + reason if reason else ''})")
    if t.user_attrs.get(ledger.STOPPED_ATTR):
        raise InputError(why, field, f"trial {number} of study {src.name!r} did not run its whole protocol: "
                                     f"{t.user_attrs[ledger.STOPPED_ATTR]}")
    return t


def _target(src: Source) -> str:
    return src.study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR, src.spec.fidelity)


def _none_complete(src: Source) -> InputError:
    return InputError("--study", "study", f"study {src.name!r} has no completed trial at its target fidelity "
                                          f"({_target(src)}) yet")


def _best(src: Source) -> FrozenTrial:
    best = ledger.best_trial(src.study)
    if best is None:
        raise _none_complete(src)
    return best


def _one_study(req: ExportRequest, src: Source) -> Table:
    """The columns of one study: best, ``--trial``, ``--top`` or ``--pareto``."""
    if req.pareto:
        names = sorted(src.spec.objective.targets)
        if len(names) < 2:
            raise InputError("--pareto", "pareto", f"study {src.name!r} has one objective ({names[0]}): it has no "
                                                   "Pareto front; use --top K")
        front = pareto(src.study)
        if not front:
            if not ledger.at_target(src.study):
                raise _none_complete(src)
            raise InputError("--pareto", "pareto", f"no completed trial of study {src.name!r} records its errors "
                                                   "per objective (objective_errors): not made by this calib?")
        by_number = {t.number: t for t in ledger.at_target(src.study)}
        picked = sorted((by_number[p["trial"]] for p in front), key=lambda t: t.value)
        cols = [column(src, t, f"trial {t.number}", f"on the Pareto front of {len(front)} over the |errors| of "
                                                     f"{', '.join(names)}") for t in picked]
        note = (f"The {len(front)} non-dominated trials of study {src.name} (over the absolute errors of "
                f"{', '.join(names)}), best objective first.")
        return Table(tuple(cols), f"Pareto sets of study {src.name}", (note,))
    if req.top is not None:
        ranked = sorted(ledger.at_target(src.study), key=lambda t: t.value)
        if not ranked:
            raise _none_complete(src)
        picked = ranked[:req.top]
        cols = [column(src, t, f"trial {t.number}", f"rank {i} of {len(ranked)} by objective")
                for i, t in enumerate(picked, start=1)]
        note = (f"The {len(picked)} best of the {len(ranked)} completed trials of study {src.name} at its target "
                f"fidelity ({_target(src)}), best first.")
        if req.top > len(ranked):
            note += f" (--top {req.top} asked for more than there are.)"
        return Table(tuple(cols), f"{len(picked)} best sets of study {src.name}", (note,))
    if req.trial is not None:
        t = _trial(src, req.trial)
        best = ledger.best_trial(src.study)
        why = "chosen with --trial" + (", also the best" if best is not None and best.number == t.number else "")
    else:
        t, why = _best(src), "the best trial"
    return Table((column(src, t, src.stage.column_title, why),),
                 f"study {src.name}, trial {t.number} (objective {t.value:.4g}), dataset {src.spec.dataset}, "
                 f"fidelity {t.user_attrs.get(ledger.FIDELITY_ATTR, src.spec.fidelity)}")


def _lineage(req: ExportRequest, data_root: Path) -> Table:
    """One column per stage of one lineage (see the module docstring). A given study that is
    not in ``--storage`` is looked for where the study that started from it says
    (``upstream.storage``)."""
    sources: dict[str, Source] = {}
    missing: dict[str, InputError] = {}
    for name in req.studies:
        try:
            sources[name] = open_source(name, req.storage, data_root)
        except InputError as exc:
            if exc.field != "study" or "no study named" not in exc.message:
                raise
            missing[name] = exc
    upstream_of = {n: (s.study.user_attrs.get("lineage") or {}).get("study") for n, s in sources.items()}
    for name, exc in missing.items():
        starts = [n for n, u in upstream_of.items() if u == name]
        up_storage = starts and sources[starts[0]].spec.upstream and sources[starts[0]].spec.upstream.storage
        if not up_storage:
            raise exc
        sources[name] = open_source(name, up_storage, data_root)
        upstream_of[name] = (sources[name].study.user_attrs.get("lineage") or {}).get("study")
    downstream = [n for n in req.studies if n not in upstream_of.values()]
    if not downstream:
        raise InputError("--study", "study", f"studies {', '.join(req.studies)} are not one lineage: they start "
                                             "from each other in a loop")
    if len(downstream) > 1:
        for n in downstream:
            up = upstream_of[n]
            if up is not None and up not in req.studies:
                raise InputError("--study", "study", f"studies {', '.join(req.studies)} are not one lineage: {n!r} "
                                                     f"started from study {up!r}, which is not given (add --study "
                                                     f"{up})")
        raise InputError("--study", "study", f"studies {', '.join(req.studies)} are not one lineage: "
                                             f"{' and '.join(repr(d) for d in downstream)} each end a chain (no given "
                                             "study started from them): export one chain at a time")
    src = sources[downstream[0]]
    if req.trial is not None:
        t = _trial(src, req.trial)
        why = "chosen with --trial"
    else:
        t, why = _best(src), "the best trial"
    chain = [(src, t, why)]
    remaining = [n for n in req.studies if n != src.name]
    notes = []
    while remaining:
        lin = t.user_attrs.get("lineage") or {}
        up = lin.get("study")
        if up not in remaining:
            began = (f"study {up!r} trial {lin.get('trial')}" if up else
                     f"the data file {lin['state_file']}" if lin else "nothing (it is a first stage)")
            raise InputError("--study", "study", f"studies {', '.join(req.studies)} are not one lineage: trial "
                                                 f"{t.number} of {src.name!r} started from {began}, not from "
                                                 f"{' or '.join(repr(r) for r in remaining)}")
        up_src = sources[up]
        up_t = _trial(up_src, int(lin["trial"]), "--study")
        notes += _check_state(src, t, up_src, up_t, lin)
        best_up = ledger.best_trial(up_src.study)
        if best_up is not None and best_up.number != up_t.number:
            notes.append(f"The {up_src.stage.column_title} column is trial {up_t.number} of {up}, the state "
                         f"{src.name} started from; trial {best_up.number} of {up} has a lower objective now.")
        chain.insert(0, (up_src, up_t, f"the state trial {t.number} of {src.name} started from"))
        remaining.remove(up)
        src, t = up_src, up_t
    titles = [s.stage.column_title for s, _, _ in chain]
    cols = [column(s, tr, title if titles.count(title) == 1 else f"{title} ({s.spec.stage})", why)
            for (s, tr, why), title in zip(chain, titles)]
    names = " -> ".join(s.name for s, _, _ in chain)
    return Table(tuple(cols), f"one lineage, studies {names}", tuple(notes))


def _check_state(down: Source, t: FrozenTrial, up: Source, up_t: FrozenTrial, lin: dict) -> list[str]:
    """Trial ``up_t`` of ``up`` must be the one whose state trial ``t`` of ``down`` started
    from: its recorded state file is that trial's, and, while the file is on disk, its
    sha256 is the one ``t`` recorded. Returns a note when the file is gone (not checked)."""
    workdir = up_t.user_attrs.get("calib_workdir")
    if not workdir:
        raise InputError("--study", "study", f"trial {up_t.number} of {up.name!r} records no trial directory: "
                                             "not made by calib?")
    state = Path(workdir) / STATE_FILE
    if Path(lin.get("state_file", "")).resolve() != state.resolve():
        raise InputError("--study", "study", f"trial {t.number} of {down.name!r} started from {lin.get('state_file')}, "
                                             f"not from trial {up_t.number} of {up.name!r} ({state})")
    if not state.is_file():
        return [f"The state trial {t.number} of {down.name} started from ({state}) is no longer on disk; its "
                f"sha256 ({lin.get('sha256')}) is the one recorded in the ledger, not checked again."]
    if sha256(state) != lin.get("sha256"):
        raise InputError("--study", "study", f"trial {up_t.number} of {up.name!r} is not the state {down.name!r} "
                                             f"started from: {state} has changed since (sha256 differs)")
    return []


def build(req: ExportRequest, data_root: Path = DEFAULT_DATA_ROOT) -> Export:
    """Everything ``calib export`` prints and writes, computed without writing anything."""
    req.check()
    if len(req.studies) == 1:
        table = _one_study(req, open_source(req.studies[0], req.storage, data_root))
    else:
        table = _lineage(req, data_root)
    if req.fmt == "lammps" and len(table.columns) > 1:
        raise InputError("--format", "format", f"lammps prints one include file, and this export has "
                                               f"{len(table.columns)} columns: use --out DIR (one file per column)")
    text = render(table, req.fmt)
    files: dict[str, str] = {}
    if req.out is not None:
        for c in table.columns:
            files[f"{c.stage}_trial{c.trial}.in"] = lammps_include(c)
        for fmt in FORMATS:
            if fmt != "lammps":
                files[f"table_s1.{SUFFIX[fmt]}"] = render(table, fmt)
    return Export(table, text, files)


def check_out(out: Path, names: list[str]) -> None:
    """``--out`` must be a writable folder, or one that can be created, holding none of
    ``names`` (not even as a dangling link)."""
    p = out
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    if not p.is_dir():
        what = "is a file" if p.exists() else "is a dangling link"
        raise InputError("--out", "out", f"{out} {what}, not a folder" if p == out
                         else f"{out} cannot be created: {p} {what}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError("--out", "out", f"{out} cannot be written: {p} is not writable")
    taken = [n for n in names if os.path.lexists(out / n)]
    if taken:
        raise InputError("--out", "out", f"{out / taken[0]} exists (export never overwrites: remove it or "
                                         "choose another folder)")


def write(export: Export, out: Path) -> list[Path]:
    """Write ``export.files`` into ``out`` (created if missing), each file created new
    (``O_EXCL``: never through a link, never over a file); on any failure the files written
    so far are removed and the error raised. Returns the paths."""
    check_out(out, list(export.files))
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    try:
        for name, text in export.files.items():
            path = out / name
            with open(path, "x", encoding="utf-8") as f:
                paths.append(path)
                f.write(text)
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise
    return paths
