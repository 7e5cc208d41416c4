"""Tests for calib.export: Table S1 rendering (seed paper Table S1). No LAMMPS run."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from conftest import SEED_DRIED, SEED_SLURRY, ssb_system

from calib.table_s1 import FORMATS, ExportContext, render, table_rows
from sim_backends.lammps.forcefield import TABLE_S1_DRIED, TABLE_S1_SLURRY, pair_lines


@pytest.fixture(scope="module")
def system():
    return ssb_system(500)


def _markdown_multipliers(text: str) -> dict[str, float]:
    """Parse the pipe table: key -> leading number of the multiplier column."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("parameter", "---"):
            out[cells[0]] = float(cells[2].split()[0])
    return out


@pytest.mark.parametrize("params, seed, column", [
    (TABLE_S1_SLURRY, SEED_SLURRY, "slurry"),
    (TABLE_S1_DRIED, SEED_DRIED, "dried electrode"),
])
def test_markdown_has_seed_values(system, params, seed, column):
    text = render(params, ExportContext(system, column=column), "markdown")
    assert f"{column} (multiplier)" in text
    got = _markdown_multipliers(text)
    assert list(got) == list(seed)  # seed row order
    for key, value in seed.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_markdown_notes(system):
    from sim_backends.lammps.forcefield import SIGMA_CBD_NOTE
    text = render(TABLE_S1_SLURRY, ExportContext(system, lj_style="lj/smooth/linear"), "markdown")
    assert SIGMA_CBD_NOTE in text
    assert "1.378" in text and "0.959" in text and "lj/smooth/linear" in text


def test_resolved_values(system):
    rows = {r.key: r for r in table_rows(TABLE_S1_SLURRY, system)}
    eps_am = dict(rows["eps_AM"].resolved)
    assert list(eps_am) == ["AM d=10 um"]  # the dry AM diameter, in every stage
    assert abs(eps_am["AM d=10 um"] - 1.0 * 10.0) < 1e-9
    sigma_se = dict(rows["sigma_SE"].resolved)
    assert len(sigma_se) == 5
    assert abs(sigma_se["SE d=2 um"] - 0.99 * 2.0) < 1e-9
    assert dict(rows["eps_CBD"].resolved) == {"CBD d=3 um": pytest.approx(0.88 * 3.0)}  # the solid CBD bead
    assert rows["kn"].resolved == (("kn", 0.1),)
    assert rows["eps_AM"].unit == "pg um^2 us^-2" and rows["kn"].unit == "pg um^-1 us^-2"
    assert rows["xu"].unit == "" and rows["rc_CBD"].expression == "2.2 x d_CBD"


def test_csv_and_json_parse(system):
    ctx = ExportContext(system, title="study ssb_slurry, trial 17")
    n_entries = sum(len(r.resolved) for r in table_rows(TABLE_S1_SLURRY, system))
    records = list(csv.DictReader(io.StringIO(render(TABLE_S1_SLURRY, ctx, "csv"))))
    assert len(records) == n_entries == 3 * 1 + 3 * 1 + 3 * 5 + 3
    assert set(records[0]) == {"key", "unit", "multiplier", "type", "diameter_um", "resolved_value"}
    se = [r for r in records if r["key"] == "rc_SE" and r["type"] == "SE d=2 um"]
    assert float(se[0]["resolved_value"]) == pytest.approx(1.5 * 2.0)

    doc = json.loads(render(TABLE_S1_SLURRY, ctx, "json"))
    assert doc["params"] == TABLE_S1_SLURRY.as_dict()
    assert doc["title"] == "study ssb_slurry, trial 17" and doc["column"] == "slurry"
    assert doc["kt"] == pytest.approx(1.378 * 0.1) and doc["gamma_t"] == pytest.approx(0.959 * 55)
    kn_row = next(r for r in doc["rows"] if r["key"] == "kn")
    assert kn_row["resolved"] == [{"label": "kn", "diameter_um": None, "value": 0.1}]


def test_lammps_lines(system):
    text = render(TABLE_S1_SLURRY, ExportContext(system, title="t17"), "lammps")
    lines = text.splitlines()
    assert lines[0] == "# t17"
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body == pair_lines(TABLE_S1_SLURRY, system, "lj/cut")
    assert "#   sigma_CBD=0.97" in lines

    (am,) = system.types_of("AM")
    (cbd,) = system.types_of("CBD")
    i, j = sorted((am.type_id, cbd.type_id))
    (line,) = [ln for ln in body if ln.startswith(f"pair_coeff {i} {j} lj/cut ")]
    eps, sigma, rc = (float(x) for x in line.split()[4:7])
    assert eps == pytest.approx(math.sqrt(1.0 * 10.0 * 0.88 * 3.0), rel=1e-5)
    assert sigma == pytest.approx((0.99 * 10.0 + 0.97 * 3.0) / 2, rel=1e-5)
    assert rc == pytest.approx((1.5 * 10.0 + 2.2 * 3.0) / 2, rel=1e-5)


def test_latex(system):
    text = render(TABLE_S1_DRIED, ExportContext(system, column="dried electrode"), "latex")
    assert "\\begin{tabular}" in text and "\\toprule" in text and "\\end{tabular}" in text
    assert "eps\\_AM" in text and "gamma\\_n" in text
    assert "400 x d\\_CBD" in text


def test_unknown_format(system):
    with pytest.raises(ValueError, match="markdown"):
        render(TABLE_S1_SLURRY, ExportContext(system), "yaml")
    assert FORMATS == ("markdown", "csv", "json", "latex", "lammps")
