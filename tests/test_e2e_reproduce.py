"""``calib reproduce --fidelity smoke --json`` end to end (real LAMMPS): the seed's Table S1
through slurry -> drying -> calendering, reported next to the seed's values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import parse_json_stdout, run_calib

pytestmark = pytest.mark.lammps

KEYS = {"slurry_density_g_cm3", "dried_porosity", "drying_thickness_change_rel", "cbd_wt_pct_dried", "bead_counts",
        "degrees", "seed"}


def test_reproduce_smoke_json(tmp_path: Path):
    proc = run_calib("reproduce", "--fidelity", "smoke", "--json", "--placements", "2",
                     "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, timeout=1500)
    rep = parse_json_stdout(proc)
    assert KEYS <= set(rep) and set(rep["seed"]) >= KEYS - {"seed"}
    assert rep["seed"]["slurry_density_g_cm3"] == 1.89 and rep["seed"]["dried_porosity"] == 0.5
    assert rep["seed"]["cbd_wt_pct_dried"] == 3.4 and rep["seed"]["bead_counts"]["total"] == 5089
    counts = rep["bead_counts"]
    assert counts == {"AM": 12, "SE": 76, "CBD": 112, "total": 200}  # the public convention at 200 beads
    assert rep["cbd_wt_pct_dried"] == pytest.approx(3.4, abs=0.1)  # within one bead of 3.4 wt%
    assert 0.66 < rep["solids_content"] < 0.68
    assert 0.5 < rep["slurry_density_g_cm3"] < 6 and 0 < rep["dried_porosity"] < 1
    assert [d["degree_pct"] for d in rep["degrees"]] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    optional = {"se_tortuosity_finite_placements"}  # where the SE spans on only some placements
    assert all(set(d) - optional == {"degree_pct", "porosity", "thickness_um", "relaxed", "conductivity_s_m",
                                     "se_tortuosity", "se_diffusivity_rel", "se_connected_fraction",
                                     "ratio_normalised", "conductivity_converged",
                                     "se_converged", "conductivity_method", "se_method", "placements",
                                     "conductivity_s_m_error",
                                     "se_diffusivity_rel_error", "se_tortuosity_error", "porosity_error",
                                     "se_connected_fraction_error", "ratio_normalised_error"} for d in rep["degrees"])
    # two placements (issue 27): each value the mean of two films, with its error bar
    assert rep["placements"] == 2 and all(d["placements"] == 2 for d in rep["degrees"])
    assert all(d["conductivity_method"] == "network" and d["se_method"] == "network" for d in rep["degrees"])
    assert rep["errors"]["slurry_density_g_cm3"] > 0 and rep["errors"]["dried_porosity"] > 0
    work = Path(rep["workdir"])
    films = {}
    for seed in (1, 2):
        rows = json.loads((work / f"placement_{seed}" / "pipeline.json").read_text())["degrees"]
        films[seed] = {r["degree_pct"]: r for r in rows}
    for d in rep["degrees"]:
        a, b = films[1][d["degree_pct"]]["porosity"], films[2][d["degree_pct"]]["porosity"]
        assert a != b  # two different placements
        assert d["porosity"] == pytest.approx((a + b) / 2)
        assert d["porosity_error"] == pytest.approx(abs(a - b) / 2)  # sd |a - b| / sqrt 2, over sqrt 2
        if d["se_tortuosity"] is not None and d["se_tortuosity_error"] is not None:
            assert d["se_tortuosity_error"] > 0
    assert all(d["conductivity_s_m"] >= 0 for d in rep["degrees"])
    assert rep["trend_checks"]["ratio_peak_degree_pct"] in (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)
    assert isinstance(rep["converged"]["slurry_density_g_cm3"], bool)
    assert isinstance(rep["converged"]["drying_thickness_change_rel"], bool)
    # the seed's trends as checked: under the seed protocol compressed 1000-fold Table S1's
    # slurry is packed far past the seed's 1.89 g/cm^3, and its film swells on drying (docs/model.md)
    assert rep["trend_checks"]["film_thins_on_drying"] is (rep["drying_thickness_change_rel"] < 0)
    por = [d["porosity"] for d in rep["degrees"]]
    assert rep["trend_checks"]["porosity_falls_with_degree"] == all(b < a for a, b in zip(por, por[1:]))
    assert rep["trend_checks"]["porosity_falls_with_degree"] is True
    # every value carries the protocol it was read under (issue 26)
    pr = rep["protocols"]
    assert pr["slurry_density_g_cm3"].startswith("seed: 0 -> 1 atm over 20,000,000 steps") \
        and "compressed k = 1000" in pr["slurry_density_g_cm3"]
    assert pr["dried_porosity"] == pr["drying_thickness_change_rel"] and "in_evap_hom.run" in pr["dried_porosity"]
    assert pr["degrees"].startswith("plane at 0.2 um/us")
    vs = rep["slurry_density_vs_seed"]
    assert Path(vs["plot"]).is_file() and Path(vs["plot"]).stat().st_size > 10_000
    at = vs["passes_seed_value_at_fraction"]
    assert (at is None) == (rep["slurry_density_g_cm3"] <= 1.89) and (at is None or 0 < at <= 1)
    saved = json.loads((Path(rep["workdir"]) / "reproduce.json").read_text())
    assert saved["slurry_density_g_cm3"] == rep["slurry_density_g_cm3"]
