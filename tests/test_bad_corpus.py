"""The bad-input corpus: every bad input the ``calib`` CLI must refuse, one file per case
under ``tests/data/bad/<surface>/`` (surfaces: study, dataset, csv, state, cli, url), run by
one parametrised test.

The promise checked for every case: exit status 2, exactly one non-empty line on stderr,
``calib: error: <file, option or command>: <field>: <what>``, matching the case's expectation, nothing
on stdout, and nothing written: no path under the case's folder is added, removed, resized
or touched (size and mtime listing before and after), and no ``runs/``, ``calib.db`` or
``mlflow.db`` appears.

A case file is the bad input itself, with its command and expectation in a header of
``# key: value`` comment lines (YAML files), or in a sidecar ``<case>.expect`` (YAML: the
same keys) where the format has no comments (CSV, LAMMPS data files) or the case is only
options (``cli``, ``url``: then the ``.yaml`` file holds just the keys):

    args:    the command line (shell words); ``{case}`` is the case file's path in the folder
    expect:  a substring of the error line (``re:`` + a regular expression instead); repeat
             the key for several; ``{case}`` as in args
    place:   where the case file goes in the folder (default: its own file name), e.g.
             ``mydata/dataset.yaml`` to replace the fixtures' dataset

Each case runs in its own copy of the fixture folder (built once, ``FIXTURES``): a slurry
study ``study.yaml`` on the dataset copy ``mydata/dataset.yaml``, ``curve_study.yaml``
(also scoring the viscosity curve), ``drying.yaml`` (from ``slurry_state.data``),
``char.yaml`` (characterise, from ``dried_state.data``, on ``chardata/dataset.yaml`` with a
synthetic conductivity series), ``curve_ds_study.yaml`` (its dataset ``curvedata/dataset.yaml``
carries the curve as ``curvedata/curve.csv``), rheometer CSVs ``good.csv`` and ``mpas.csv`` (mPa s), and
``afile`` (a plain file, for folders that are files). Cases run in this process through
``typer.testing.CliRunner`` (the CLI's imports cost 2-3 s a subprocess);
``test_in_process_matches_the_real_cli`` runs one case per surface through
``python -m calib.cli`` to show the two agree.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "data" / "bad"
SURFACES = ("study", "dataset", "csv", "state", "cli", "url")
MIN_CASES = {"study": 80, "dataset": 38, "csv": 18, "state": 10, "cli": 50, "url": 8}
"""The fewest cases each surface must hold (files cannot silently vanish)."""
KEYS = ("args", "expect", "place")
ERROR_LINE = re.compile(r"^calib: error: (?P<where>.+?): (?P<field>.+?): (?P<what>.+)$")
STORES = ("runs", "calib.db", "mlflow.db", "mlartifacts")


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    surface: str
    path: Path
    args: str
    expect: tuple[str, ...]
    place: str

    @property
    def id(self) -> str:
        return f"{self.surface}/{self.path.name}"


def _header(path: Path) -> dict[str, list[str]]:
    """``# key: value`` lines at the top of a case file (a file of other bytes read as Latin-1)."""
    out: dict[str, list[str]] = {}
    for line in path.read_bytes().decode("latin-1").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep and key.strip() in KEYS:
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _sidecar(path: Path) -> dict[str, list[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and set(data) <= set(KEYS), f"{path}: keys {sorted(data)} (known: {KEYS})"
    return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}


def load_cases() -> list[Case]:
    cases = []
    for surface in SURFACES:
        for path in sorted((CORPUS / surface).iterdir()) if (CORPUS / surface).is_dir() else []:
            if path.suffix == ".expect":
                continue
            side = path.with_name(path.name + ".expect")
            if side.exists():
                meta = _sidecar(side)
            elif surface in ("cli", "url"):  # the file is only the keys
                meta = _sidecar(path)
            else:
                meta = _header(path)
            assert "args" in meta and "expect" in meta, f"{path}: no args/expect (header or {side.name})"
            only_keys = surface in ("cli", "url") and not side.exists()
            place = "" if only_keys else (meta.get("place") or [path.name])[0]
            cases.append(Case(surface, path, meta["args"][0], tuple(meta["expect"]), place))
    return cases


CASES = load_cases()


def test_corpus_size_by_surface() -> None:
    """Every surface keeps at least its share of cases; prints the counts (for reports)."""
    counts = Counter(c.surface for c in CASES)
    print("bad inputs in the corpus by surface:", dict(counts), "total", sum(counts.values()))
    short = {s: (counts[s], n) for s, n in MIN_CASES.items() if counts[s] < n}
    assert not short, f"surfaces with fewer cases than expected (have, want): {short}"
    strays = [p for p in CORPUS.rglob("*") if p.is_file() and p.parent.name not in SURFACES]
    assert not strays, f"files outside the surfaces {SURFACES}: {strays}"
    orphans = [p for p in CORPUS.rglob("*.expect") if not p.with_name(p.stem).exists()]
    assert not orphans, f".expect files without their case: {orphans}"


# --------------------------------------------------------------------------- fixtures

GOOD_CSV = "shear_rate [1/s],viscosity [Pa s]\n1,20\n18,7.48\n125,2.86\n"
MPAS_CSV = "shear_rate [1/s],viscosity [mPa s]\n1,20000\n18,7480\n125,2860\n"
SYNTHETIC_CONDUCTIVITY = {"unit": "S/m", "points": [{"degree_pct": 0.0, "value": 0.01},
                                                    {"degree_pct": 30.0, "value": 0.02}],
                          "provenance": {"source": "made up for a test of the input checks", "kind": "synthetic"}}


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def build_fixtures(root: Path) -> None:
    """The valid inputs every case starts from (see the module docstring)."""
    from conftest import random_state_file, ssb_formulation, ssb_system
    from sim_backends.lammps.beads import dried_system

    dataset = yaml.safe_load((REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml").read_text())
    _dump(root / "mydata" / "dataset.yaml", dataset)
    _dump(root / "chardata" / "dataset.yaml", {**dataset, "calendered_conductivity": SYNTHETIC_CONDUCTIVITY})
    study = yaml.safe_load((REPO / "studies" / "ssb_slurry.yaml").read_text())
    study["dataset"] = "mydata/dataset.yaml"
    _dump(root / "study.yaml", study)
    curve = {**study, "objective": {**study["objective"],
                                    "targets": {**study["objective"]["targets"], "viscosity_curve": 1.0}}}
    _dump(root / "curve_study.yaml", curve)
    _dump(root / "curvedata" / "dataset.yaml", {**dataset, "curves": {"viscosity_curve": {
        "csv": "curve.csv", "provenance": {"source": "made up for a test of the input checks", "kind": "synthetic"}}}})
    (root / "curvedata" / "curve.csv").write_text(GOOD_CSV)
    _dump(root / "curve_ds_study.yaml", {**curve, "dataset": "curvedata/dataset.yaml"})
    drying = yaml.safe_load((REPO / "studies" / "ssb_drying.yaml").read_text())
    drying.update(dataset="mydata/dataset.yaml", upstream={"data_file": "slurry_state.data"})
    _dump(root / "drying.yaml", drying)
    char = {**drying, "stage": "characterise", "name": "char", "dataset": "chardata/dataset.yaml",
            "upstream": {"data_file": "dried_state.data"},
            "objective": {"targets": {"calendered_conductivity": 1.0}}, "calendering": {"degrees_pct": [0.0, 30.0]},
            "parameters": {"base": "table-s1-dried", "free": {"eps_AM": {"low": 10.0, "high": 1000.0, "log": True}}}}
    _dump(root / "char.yaml", char)
    (root / "good.csv").write_text(GOOD_CSV)
    (root / "mpas.csv").write_text(MPAS_CSV)
    (root / "afile").write_text("a plain file, not a folder\n")
    random_state_file(root / "slurry_state.data", ssb_system(200))
    random_state_file(root / "dried_state.data", dried_system(ssb_system(200), ssb_formulation()))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_corpus_fixtures")
    build_fixtures(root)
    return root


def test_fixtures_are_valid(fixtures: Path, monkeypatch) -> None:
    """The fixture studies load and pass their upstream checks: each case fails on its own defect."""
    from calib.study.upstream import resolve_upstream
    from calib.study.load import load_study

    monkeypatch.chdir(fixtures)
    for name, csv in (("study.yaml", None), ("curve_study.yaml", Path("good.csv")), ("drying.yaml", None),
                      ("char.yaml", None), ("curve_ds_study.yaml", None)):
        loaded = load_study(Path(name), fidelity="smoke", viscosity_csv=csv)
        if loaded.spec.upstream is not None:
            loaded.stage.check_upstream(loaded, resolve_upstream(loaded, "sqlite:///unused.db"))
    assert load_study(Path("curve_study.yaml"), viscosity_csv=Path("mpas.csv")).curve is not None


# --------------------------------------------------------------------------- the harness


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (folders too) -> (size, mtime in ns); folders' size 0 (a
    folder's mtime changes when an entry is added or removed, even a temporary one)."""
    out = {"": (0, root.stat().st_mtime_ns)}
    for p in root.rglob("*"):
        st = p.lstat()
        out[str(p.relative_to(root))] = (0 if p.is_dir() else st.st_size, st.st_mtime_ns)
    return out


def prepare(case: Case, fixtures: Path, root: Path) -> tuple[list[str], list[str]]:
    """Copy the fixtures and the case into ``root``; the case's args and expectations with
    ``{case}`` filled in."""
    shutil.copytree(fixtures, root, dirs_exist_ok=True)
    if case.place:
        dest = root / case.place
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(case.path, dest)
    fill = {"case": case.place}
    args = [a.format(**fill) for a in shlex.split(case.args)]
    return args, [e.replace("{case}", re.escape(case.place) if e.startswith("re:") else case.place)
                  for e in case.expect]


def check_refusal(case: Case, root: Path, args: list[str], expect: list[str], code: int, stdout: str,
                  stderr: str, before: dict) -> str:
    """The promise (module docstring); returns the error line."""
    shown = f"{case.id}: calib {shlex.join(args)}\nexit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert code == 2, shown
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr; {shown}"
    line = lines[0]
    m = ERROR_LINE.match(line)
    assert m, f"not 'calib: error: <file or option>: <field>: <what>'; {shown}"
    where = m["where"]
    assert (where.startswith("--") or where == "calib" or where.startswith("calib ")
            or (root / where).resolve().is_relative_to(root.resolve())), \
        f"{where!r} names neither an option, nor the command, nor a file of the case; {shown}"
    for e in expect:
        if e.startswith("re:"):
            assert re.search(e[3:].strip(), line), f"no match for {e!r}; {shown}"
        else:
            assert e in line, f"{e!r} not in the line; {shown}"
    assert stdout == "", f"unexpected stdout; {shown}"
    after = listing(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])  # a folder's mtime too
    assert not (added or removed or changed), f"written: added {added}, removed {removed}, changed {changed}; {shown}"
    stores = [p for p in root.rglob("*") if p.name in STORES]
    assert not stores, f"stores created: {stores}"
    return line


@pytest.mark.parametrize("write", ["add", "touch", "temporary", "store"])
def test_the_harness_sees_every_write(tmp_path: Path, write: str) -> None:
    """A refusal that wrote anything fails the check: a new file, a rewritten one (same size,
    new mtime), a file made and removed again, a store folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    case = Case("cli", tmp_path / "c.yaml", "", (), "")
    before = listing(tmp_path)
    time.sleep(0.01)
    if write == "add":
        (tmp_path / "sub" / "g").write_text("")
    elif write == "touch":
        (tmp_path / "sub" / "f").write_text("y")
    elif write == "temporary":
        (tmp_path / "sub" / "t").write_text("")
        (tmp_path / "sub" / "t").unlink()
    else:
        (tmp_path / "sub" / "runs").mkdir()
    with pytest.raises(AssertionError, match="written"):
        check_refusal(case, tmp_path, [], [], 2, "", "calib: error: --x: x: bad\n", before)


@pytest.fixture
def clean_env(monkeypatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "OPTUNA_")):
            monkeypatch.delenv(key)
    root = tmp_path / "case"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(case: Case, fixtures: Path, clean_env: Path):
    from typer.testing import CliRunner

    from calib.cli import app

    root = clean_env
    args, expect = prepare(case, fixtures, root)
    before = listing(root)
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError(f"{case.id}: traceback:\n" + "".join(traceback.format_exception(result.exception)))
    check_refusal(case, root, args, expect, result.exit_code, result.stdout, result.stderr, before)


def _one_per_surface() -> list[Case]:
    seen: dict[str, Case] = {}
    for c in CASES:
        seen.setdefault(c.surface, c)
    return list(seen.values())


@pytest.mark.parametrize("case", _one_per_surface(), ids=lambda c: c.id)
def test_in_process_matches_the_real_cli(case: Case, fixtures: Path, clean_env: Path):
    """The harness's in-process runs stand for the real command: one case per surface through
    ``python -m calib.cli`` gives the same refusal."""
    root = clean_env
    args, expect = prepare(case, fixtures, root)
    before = listing(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "calib.cli", *args], cwd=root, capture_output=True, text=True,
                          env=env, timeout=120)
    check_refusal(case, root, args, expect, proc.returncode, proc.stdout, proc.stderr, before)
