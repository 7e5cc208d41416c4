"""Table S1 rendering (``calib.publish.table_s1_render``) of the seed's two columns, without a study: the
formats parse back to the seed's values, the LaTeX table compiles with pdflatex (TeX Live,
installed with apt if missing), and a LAMMPS include file is valid LAMMPS input whose pair
energies are the Lennard-Jones energies of the mixed coefficients, worked out here
independently. End-to-end exports of stored studies: ``test_e2e_electrode.py`` (a lineage)
and ``test_e2e_viscosity.py`` (``--top``, ``--pareto``)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SEED_DRIED, SEED_SLURRY, ssb_formulation, ssb_system
from services import PDFLATEX, ensure_tex_installed

from calib.publish.table_s1 import Column, Observable, Table, resolved
from calib.publish.table_s1_render import FORMATS, lammps_include, render
from sim_backends.lammps.beads import dried_system
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, TABLE_S1_SLURRY, pair_lines


@pytest.fixture(scope="module")
def table() -> Table:
    slurry = ssb_system(500)
    dried = dried_system(slurry, ssb_formulation())
    return Table((
        Column("slurry", TABLE_S1_SLURRY, slurry, stage="slurry", study="s", trial=3, objective=0.25,
               observables=(Observable("slurry_density", "g/cm^3", 1.9, 1.95, -0.02564),),
               provenance=(("study", "s"), ("trial", "3"))),
        Column("dried electrode", TABLE_S1_DRIED, dried, stage="drying", study="d", trial=1, objective=1e-4,
               observables=(Observable("dried_porosity", "", 0.41, 0.4, 0.025), Observable("viscosity_curve", error=0.3)),
               provenance=(("study", "d"), ("calibrated on state", "final.data (sha256 ab12)"))),
    ), title="seed values")


def _md_table(text: str, header_first: str) -> list[list[str]]:
    """The rows of the markdown pipe table whose header starts with ``header_first``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {header_first} |"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_markdown_has_both_seed_columns_in_seed_order(table):
    text = render(table, "markdown")
    rows = _md_table(text, "parameter")
    assert rows[0] == ["parameter", "unit", "slurry", "dried electrode"]
    body = rows[2:]
    assert [r[0] for r in body] == list(SEED_SLURRY)  # the seed's row order
    for r in body:
        assert float(r[2].split()[0]) == pytest.approx(SEED_SLURRY[r[0]], rel=1e-12), r
        assert float(r[3].split()[0]) == pytest.approx(SEED_DRIED[r[0]], rel=1e-12), r
    obs = {r[0]: r[2:] for r in _md_table(text, "observable")[2:]}
    assert obs["slurry_density"] == ["1.9 vs 1.95 (-2.56 %)", "-"]
    assert obs["dried_porosity"] == ["-", "0.41 vs 0.4 (+2.50 %)"]
    assert obs["viscosity_curve"] == ["-", "error 0.3"]
    assert obs["objective"] == ["0.25", "0.0001"]
    assert "- **dried electrode**\n    - study: d\n    - calibrated on state: final.data (sha256 ab12)\n" in text
    assert "1.378" in text and "0.959" in text and "sigma_CBD is printed" in text


def test_resolved_values_follow_the_type_diameters(table):
    slurry, dried = table.columns
    eps_am = resolved("eps_AM", TABLE_S1_SLURRY, slurry.system)
    assert [(r.label, r.value) for r in eps_am] == [("AM d=10 um", pytest.approx(1.0 * 10.0))]
    sigma_se = resolved("sigma_SE", TABLE_S1_SLURRY, slurry.system)
    assert len(sigma_se) == 5 and sigma_se[0].value == pytest.approx(0.99 * sigma_se[0].diameter_um)
    # the LJ diameter of CBD is its solid bead (3 um) in both columns
    assert [r.value for r in resolved("eps_CBD", TABLE_S1_DRIED, dried.system)] == [pytest.approx(400 * 3.0)]
    assert [(r.label, r.value) for r in resolved("kn", TABLE_S1_SLURRY, slurry.system)] == [("kn", 0.1)]
    rows = _md_table(render(table, "markdown"), "parameter | bead type")
    sig = [r for r in rows if r[0] == "sigma_SE"]
    assert len(sig) == 5 and all(float(r[3]) == pytest.approx(0.99 * float(r[1].split("=")[1].split()[0])) for r in sig)


def test_csv_is_tidy_and_holds_every_value(table):
    records = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    mult = {(r["column"], r["key"]): float(r["value"]) for r in records if r["section"] == "multiplier"}
    assert {k for c, k in mult if c == "slurry"} == set(SEED_SLURRY)
    assert all(mult[("slurry", k)] == v for k, v in SEED_SLURRY.items())
    assert all(mult[("dried electrode", k)] == v for k, v in SEED_DRIED.items())
    rc_se = [r for r in records if r["section"] == "resolved" and r["key"] == "rc_SE" and r["column"] == "slurry"]
    assert len(rc_se) == 5 and all(float(r["value"]) == pytest.approx(1.5 * float(r["diameter_um"])) for r in rc_se)
    (dens,) = [r for r in records if r["section"] == "observable" and r["key"] == "slurry_density"]
    assert (float(dens["value"]), float(dens["target"]), dens["trial"]) == (1.9, 1.95, "3")
    (curve,) = [r for r in records if r["section"] == "observable" and r["key"] == "viscosity_curve"]
    assert (curve["value"], curve["target"], float(curve["error"])) == ("", "", 0.3)
    (obj,) = [r for r in records if r["section"] == "objective" and r["column"] == "dried electrode"]
    assert float(obj["value"]) == 1e-4


def test_json_round_trips(table):
    doc = json.loads(render(table, "json"))
    assert doc["title"] == "seed values"
    slurry, dried = doc["columns"]
    assert slurry["params"] == TABLE_S1_SLURRY.as_dict() and dried["params"] == TABLE_S1_DRIED.as_dict()
    assert dried["kt"] == pytest.approx(1.378 * 100) and dried["gamma_t"] == pytest.approx(0.959 * 10)
    assert dried["provenance"]["calibrated on state"] == "final.data (sha256 ab12)"
    assert {"key": "kn", "unit": "pg um^-1 us^-2", "bead_type": "kn", "diameter_um": None, "value": 0.1} \
        in slurry["resolved"]
    assert slurry["observables"][0]["target"] == 1.95 and slurry["trial"] == 3
    # JSON has no NaN: a value that could not be measured is null
    nan = Table((replace(table.columns[0], observables=(Observable("slurry_density", "g/cm^3", math.nan, 1.95),)),))
    text = render(nan, "json")
    assert "NaN" not in text and json.loads(text)["columns"][0]["observables"][0]["simulated"] is None


def test_lammps_format_is_the_include_file_of_one_column(table):
    one = Table(table.columns[:1])
    assert render(one, "lammps") == lammps_include(table.columns[0])
    with pytest.raises(ValueError, match="one column; this table has 2"):
        render(table, "lammps")  # one LAMMPS input takes one force field
    inc = lammps_include(table.columns[0])
    commands = [ln for ln in inc.splitlines() if ln and not ln.startswith("#")]
    pair = [ln for ln in commands if ln.startswith("pair_")]
    assert pair == pair_lines(TABLE_S1_SLURRY, table.columns[0].system, "lj/cut")
    n_types = len(table.columns[0].system.types)
    assert len([ln for ln in pair if ln.startswith("pair_coeff") and "lj/cut" in ln]) == n_types * (n_types + 1) // 2
    assert commands[0] == "comm_modify vel yes"
    assert len([ln for ln in commands if ln.startswith("set type")]) == 2 * n_types
    assert "# calibrated on state: final.data (sha256 ab12)" in lammps_include(table.columns[1])
    assert "#   sigma_CBD = 0.97" in inc


def test_unknown_format_and_empty_table(table):
    with pytest.raises(ValueError, match="markdown"):
        render(table, "yaml")
    with pytest.raises(ValueError, match="at least one column"):
        render(Table(()), "csv")
    assert FORMATS == ("markdown", "csv", "json", "latex", "lammps")


# ------------------------------------------------------------------ LaTeX compiles

def _compile(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "table.tex").write_text(body)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{table}\n\\end{document}\n")
    return subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.latex
def test_latex_booktabs_table_compiles_with_pdflatex(table, tmp_path):
    ensure_tex_installed()
    text = render(replace(table, title="seed values, dataset ~/données/α_β 100% {x} -> y"), "latex")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert re.search(r"\\begin\{tabular\}\{llrr\}", text)
    proc = _compile(tmp_path, text)
    assert proc.returncode == 0, proc.stdout[-3000:]
    pdf = (tmp_path / "doc.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Missing $ inserted" not in log
    # the check can fail: a table that breaks TeX is refused
    bad = tmp_path / "broken"
    bad.mkdir()
    broken = _compile(bad, text.replace(r"\midrule", r"\midrul", 1))
    assert broken.returncode != 0


# ------------------------------------------------------------------ the include runs in LAMMPS


def _lj(eps: float, sigma: float, r: float) -> float:
    return 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)


def _mixed(params, a, b) -> tuple[float, float, float]:
    """eps, sigma, rc of types a and b, by the public inputs' mixing rules (geometric eps,
    arithmetic sigma and rc), from the Table S1 multipliers and the dry diameters."""
    def own(t):
        return tuple(getattr(params, f"{q}_{t.phase}") * t.dry_diameter_um for q in ("eps", "sigma", "rc"))
    (ea, sa, ra), (eb, sb, rb) = own(a), own(b)
    return math.sqrt(ea * eb), (sa + sb) / 2, (ra + rb) / 2


@pytest.mark.lammps
@pytest.mark.parametrize("which", [0, 1])
def test_the_include_file_is_lammps_input_with_the_mixed_energies(table, tmp_path, which):
    """Two pairs of beads in a 400 um box, each pair between contact and cut-off: after
    ``include``, LAMMPS's potential energy is the sum of the two LJ energies, and every
    bead has its type's diameter and mass."""
    from sim_backends.lammps.install import locate_lammps

    c = table.columns[which]
    types = {t.phase: t for t in c.system.types}  # the last type of each phase
    am, cbd = types["AM"], types["CBD"]
    se = c.system.types_of("SE")
    pairs = [(am, cbd), (se[0], se[-1])]
    atoms, expected = [], 0.0
    for k, (a, b) in enumerate(pairs):
        eps, sigma, rc = _mixed(c.params, a, b)
        contact = (a.diameter_um + b.diameter_um) / 2
        r = contact + 0.5 * (rc - contact)
        assert contact < r < rc
        expected += _lj(eps, sigma, r)
        x0 = 100.0 + 150.0 * k
        atoms += [(a.type_id, x0), (b.type_id, x0 + r)]
    n_types = len(c.system.types)
    data = ["tiny data file", "", f"{len(atoms)} atoms", f"{n_types} atom types", "",
            "0 400 xlo xhi", "0 400 ylo yhi", "0 400 zlo zhi", "", "Atoms # sphere", ""]
    data += [f"{i} {t} 1.0 1.0 {x} 200 200" for i, (t, x) in enumerate(atoms, start=1)]
    (tmp_path / "tiny.data").write_text("\n".join(data) + "\n")
    (tmp_path / "ff.in").write_text(lammps_include(c))
    (tmp_path / "in.check").write_text("\n".join([
        "units micro", "atom_style sphere", "atom_modify map array", "newton off", "read_data tiny.data", "include ff.in",
        "thermo_style custom step pe", "thermo_modify norm no", "run 0",
        'print "PE $(pe:%.12g)"',
        *[f'print "ATOM {i} $(2*radius[{i}]:%.12g) $(mass[{i}]:%.12g)"' for i in range(1, len(atoms) + 1)],
    ]) + "\n")
    inst = locate_lammps()
    proc = subprocess.run([str(inst.executable), "-in", "in.check", "-nocite"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, **inst.env}, timeout=120)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout, proc.stdout[-2000:]
    pe = float(re.search(r"^PE (\S+)$", proc.stdout, re.M).group(1))
    assert pe == pytest.approx(expected, rel=1e-5)
    assert expected != 0.0
    by_id = {t.type_id: t for t in c.system.types}
    found = list(re.finditer(r"^ATOM (\d+) (\S+) (\S+)$", proc.stdout, re.M))
    assert len(found) == len(atoms)
    for m in found:
        t = by_id[atoms[int(m.group(1)) - 1][0]]
        assert float(m.group(2)) == pytest.approx(t.diameter_um, rel=1e-9)
        assert float(m.group(3)) == pytest.approx(t.mass_pg, rel=1e-9)


def test_a_degree_series_reads_point_by_point():
    o = Observable("calendered_porosity", error=0.8, points=(("0 %", 0.5, 0.52), ("30 %", 0.41, 0.4)))
    assert o.text() == "0 %: 0.5 vs 0.52; 30 %: 0.41 vs 0.4 (error 0.8)"
    assert Observable("viscosity_curve", error=0.25).text() == "error 0.25"


# ------------------------------------------------------------------ the lineage's state check


def test_an_upstream_trial_must_be_the_state_its_downstream_trial_started_from(tmp_path):
    """``calib.publish.export._check_state``: the recorded state file must be the upstream trial's,
    with the recorded sha256 while it is on disk; a state since deleted gives a note."""
    import hashlib
    from types import SimpleNamespace

    from optuna.trial import create_trial

    from calib.core.errors import InputError
    from calib.publish.export import _check_state

    up_dir = tmp_path / "up" / "trial_00002"
    up_dir.mkdir(parents=True)
    state = up_dir / "final.data"
    state.write_text("a state\n")
    sha = hashlib.sha256(state.read_bytes()).hexdigest()
    up_t = create_trial(value=1.0, user_attrs={"calib_workdir": str(up_dir)})
    down_t = create_trial(value=2.0)
    up, down = SimpleNamespace(name="up"), SimpleNamespace(name="down")
    lin = {"study": "up", "trial": 2, "state_file": str(state), "sha256": sha}
    assert _check_state(down, down_t, up, up_t, lin) == []
    with pytest.raises(InputError, match="has changed since"):
        _check_state(down, down_t, up, up_t, {**lin, "sha256": "0" * 64})
    with pytest.raises(InputError, match="started from /elsewhere/final.data, not from trial"):
        _check_state(down, down_t, up, up_t, {**lin, "state_file": "/elsewhere/final.data"})
    with pytest.raises(InputError, match="records no trial directory"):
        _check_state(down, down_t, up, create_trial(value=1.0), lin)
    state.unlink()
    (note,) = _check_state(down, down_t, up, up_t, lin)
    assert "no longer on disk" in note and sha in note
