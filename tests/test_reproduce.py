"""calib.reproduce: the report object and its table, from a pipeline summary (pure)."""

from __future__ import annotations

from calib.reproduce import SEED, reproduction, table


def _summary(por=(0.5, 0.4, 0.3), change=-0.1) -> dict:
    return {"fidelity": "smoke", "workdir": "/x", "bead_counts": {"AM": 12, "SE": 76, "CBD": 112},
            "solids_content": 0.67,
            "slurry": {"density_g_cm3": 2.0, "density_converged": False},
            "dried": {"porosity": 0.45, "thickness_change_rel": change, "lz_converged": 1.0, "cbd_wt_pct": 3.37},
            "degrees": [{"degree_pct": 10.0 * i, "porosity": p, "thickness_um": 40.0 - 4 * i, "fraction_AM": 0.1}
                        for i, p in enumerate(por)]}


def test_report_keys_and_values():
    rep = reproduction(_summary())
    assert rep["slurry_density_g_cm3"] == 2.0 and rep["dried_porosity"] == 0.45
    assert rep["drying_thickness_change_rel"] == -0.1 and rep["cbd_wt_pct_dried"] == 3.37
    assert rep["bead_counts"] == {"AM": 12, "SE": 76, "CBD": 112, "total": 200}
    assert rep["degrees"][1] == {"degree_pct": 10.0, "porosity": 0.4, "thickness_um": 36.0}
    assert rep["seed"] is SEED and rep["seed"]["slurry_density_g_cm3"] == 1.89
    assert rep["converged"] == {"slurry_density_g_cm3": False, "drying_thickness_change_rel": True,
                                "dried_porosity": True, "degrees": None}
    assert rep["trend_checks"] == {"film_thins_on_drying": True, "porosity_falls_with_degree": True}


def test_trends_that_fail_are_reported():
    rep = reproduction(_summary(por=(0.5, 0.52, 0.3), change=0.38))
    assert rep["trend_checks"] == {"film_thins_on_drying": False, "porosity_falls_with_degree": False}


def test_table_names_every_observable_and_the_seed():
    rows = table(reproduction(_summary()))
    text = "\n".join(rows)
    assert rows[0] == "| observable | calib | seed | converged |"
    assert "| slurry density (g/cm^3) | 2.000 | 1.89 | NO |" in text
    assert "| thickness change on drying | -10.0% | negative (no value) | yes |" in text
    assert "| beads AM / SE / CBD (total) | 12 / 76 / 112 (200) | total 5089 | exact |" in text
    assert sum(r.startswith("| porosity at ") for r in rows) == 3


def test_partial_results_keep_their_failure():
    s = _summary()
    s["failed"] = {"stage": "calendering", "reason": "boom"}
    s["degrees"] = []
    rep = reproduction(s)
    assert rep["failed"]["stage"] == "calendering" and rep["trend_checks"]["porosity_falls_with_degree"] is None
    assert rep["failed_degrees"] == {}


def test_degrees_left_out_are_named_with_their_reason():
    s = _summary()
    s["failed_degrees"] = {"50": "2 bead(s) escaped through the calendering wall"}
    rep = reproduction(s)
    assert rep["failed_degrees"] == {"50": "2 bead(s) escaped through the calendering wall"}
    assert [d["degree_pct"] for d in rep["degrees"]] == [0.0, 10.0, 20.0]
