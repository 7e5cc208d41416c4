"""calib.publish.reproduce: the report object and its table, from a pipeline summary (pure)."""

from __future__ import annotations

from calib.publish.reproduce import SEED, reproduction, table


SLURRY_PROTOCOL = ("seed: 0 -> 1 atm over 20,000,000 steps of 0.001 us, 200 beads, compressed k = 1000 (undamped "
                   "law: 20,000 steps, T 300 K, Tdamp 2e+05 us, Pdamp 1000 us, dt 0.001 us); density at the end")
DRYING_PROTOCOL = ("NPT(z) 0.395 -> 1 atm over 20,000 steps of 0.001 us, then 5,000 settling on the collector; the "
                   "public in_evap_hom.run runs 70,000,000 steps (3,500x longer; this compression's error is not "
                   "measured)")
CAL_PROTOCOL = ("plane at 0.2 um/us with a 0.001 us step, held 5,000 steps, relaxed 10,000 (public in_cal.run: "
                "0.02 um/us at 1e-4 us)")


def _summary(por=(0.5, 0.4, 0.3), change=-0.1, sigma=(1e-4, 3e-4, 2e-4), tau=(3.0, 2.5, None)) -> dict:
    return {"fidelity": "smoke", "workdir": "/x", "bead_counts": {"AM": 12, "SE": 76, "CBD": 112},
            "solids_content": 0.67,
            "slurry": {"density_g_cm3": 2.0, "density_converged": False, "density_protocol": SLURRY_PROTOCOL},
            "dried": {"porosity": 0.45, "thickness_change_rel": change, "lz_converged": 1.0, "cbd_wt_pct": 3.37,
                      "protocol": DRYING_PROTOCOL},
            "degrees": [{"degree_pct": 10.0 * i, "porosity": p, "thickness_um": 40.0 - 4 * i, "fraction_AM": 0.1,
                         "protocol": CAL_PROTOCOL, "relaxed": i != 1,
                         "conductivity_s_m": c, "se_tortuosity": t, "se_diffusivity_rel": 0.03 * (i + 1),
                         "se_connected_fraction": 0.9, "ratio_normalised": (c / t if t else 0.0) / (3e-4 / 2.5),
                         "conductivity_converged": True, "se_converged": True}
                        for i, (p, c, t) in enumerate(zip(por, sigma, tau))]}


CHAR = {"conductivity_s_m", "se_tortuosity", "se_diffusivity_rel", "se_connected_fraction", "ratio_normalised",
        "conductivity_converged", "se_converged", "conductivity_method", "se_method", "placements",
        "conductivity_s_m_error",
        "se_diffusivity_rel_error", "se_tortuosity_error", "porosity_error", "se_connected_fraction_error",
        "ratio_normalised_error"}


def test_report_keys_and_values():
    rep = reproduction(_summary())
    assert rep["slurry_density_g_cm3"] == 2.0 and rep["dried_porosity"] == 0.45
    assert rep["drying_thickness_change_rel"] == -0.1 and rep["cbd_wt_pct_dried"] == 3.37
    assert rep["bead_counts"] == {"AM": 12, "SE": 76, "CBD": 112, "total": 200}
    assert {k: rep["degrees"][1][k] for k in ("degree_pct", "porosity", "thickness_um")} == {
        "degree_pct": 10.0, "porosity": 0.4, "thickness_um": 36.0}
    assert set(rep["degrees"][1]) == {"degree_pct", "porosity", "thickness_um", "relaxed"} | CHAR
    assert rep["degrees"][1]["conductivity_s_m"] == 3e-4 and rep["degrees"][2]["se_tortuosity"] is None
    assert rep["seed"] is SEED and rep["seed"]["slurry_density_g_cm3"] == 1.89
    assert rep["converged"] == {"slurry_density_g_cm3": False, "drying_thickness_change_rel": True,
                                "dried_porosity": True, "degrees": False}  # 10 % was still relaxing
    assert rep["protocols"] == {"slurry_density_g_cm3": SLURRY_PROTOCOL, "dried_porosity": DRYING_PROTOCOL,
                                "drying_thickness_change_rel": DRYING_PROTOCOL, "degrees": CAL_PROTOCOL}
    # tortuosity unknown at 20 % (the SE does not connect): its trend is not judged
    assert rep["trend_checks"] == {"film_thins_on_drying": True, "porosity_falls_with_degree": True,
                                   "se_tortuosity_falls_with_degree": None, "se_diffusivity_rises_with_degree": True,
                                   "conductivity_peak_degree_pct": 10.0, "conductivity_rises_then_falls": True,
                                   "ratio_peak_degree_pct": 10.0, "ratio_peak_stands_out": True,
                                   "ratio_peaks_at_30_to_50_pct": False}


def test_trends_that_fail_are_reported():
    rep = reproduction(_summary(por=(0.5, 0.52, 0.3), change=0.38, sigma=(1e-4, 2e-4, 3e-4), tau=(2.0, 2.5, 3.0)))
    checks = rep["trend_checks"]
    assert checks["film_thins_on_drying"] is False and checks["porosity_falls_with_degree"] is False
    assert checks["se_tortuosity_falls_with_degree"] is False and checks["conductivity_rises_then_falls"] is False
    assert checks["conductivity_peak_degree_pct"] == 20.0


def test_table_names_every_observable_and_the_seed():
    rows = table(reproduction(_summary()))
    text = "\n".join(rows)
    assert rows[0] == "| observable | calib | seed | converged | protocol |"
    assert "| slurry density (g/cm^3) | 2.000 | 1.89 | NO | seed, k = 1000 |" in text
    assert "| thickness change on drying | -10.0% | negative (no value) | yes | settings, public / 3,500 |" in text
    compressed = _summary()
    compressed["dried"]["protocol"] = ("NPT(z) 0.395 -> 1 atm over 200,000 steps ...; the public in_evap_hom.run "
                                       "(70,000,000 steps) compressed k = 350 under the undamped law; its error ...")
    assert "| yes | public, k = 350 (undamped) |" in "\n".join(table(reproduction(compressed)))
    assert "| beads AM / SE / CBD (total) | 12 / 76 / 112 (200) | total 5089 | exact | - |" in text
    assert sum(r.startswith("| porosity at ") for r in rows) == 3
    assert "| porosity at 10 % calendering (thickness 36.0 um) | 0.400 | falls; about 0 at 50 % | NO (still " \
           "relaxing) | plane 0.2 um/us |" in text
    assert "| at 20 %: conductivity (S/m), SE tortuosity, SE D_eff/D_0, ratio (normalised) | 0.0002; inf (SE not " \
           "connected); 0.09; 0.00 |" in text


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


def test_values_carry_their_error_bars_and_trends_count_only_beyond_them():
    s = _summary(sigma=(1e-4, 3e-4, 2e-4), tau=(3.0, 2.5, 2.0))
    s["slurry"].update(density_g_cm3_error=0.05, placements=2)
    for d, err in zip(s["degrees"], (1e-5, 1.5e-4, 1e-5)):  # the 10 % peak: 3e-4 +- 1.5e-4, within 20 %'s bar
        d.update(conductivity_s_m_error=err, placements=2)
    rep = reproduction(s)
    assert rep["errors"]["slurry_density_g_cm3"] == 0.05 and rep["placements"] == 2
    text = "\n".join(table(rep))
    assert "| slurry density (g/cm^3) | 2.000 +- 0.050 | 1.89 |" in text
    assert "| at 10 %: conductivity (S/m), SE tortuosity, SE D_eff/D_0, ratio (normalised) | 0.0003 +- 0.00015; 2.5;" \
           in text
    checks = rep["trend_checks"]
    assert checks["conductivity_peak_degree_pct"] == 10.0
    assert checks["conductivity_rises_then_falls"] == "unresolved"  # the fall to 20 % lies inside the peak's bar
    s["degrees"][1]["conductivity_s_m_error"] = 2e-5
    assert reproduction(s)["trend_checks"]["conductivity_rises_then_falls"] is True
