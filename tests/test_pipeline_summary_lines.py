"""What ``calib pipeline`` prints (``calib.execution.pipeline.summary_lines``): every value with its
error bar and a line saying what the errors hold (pure)."""

from __future__ import annotations

from calib.execution.pipeline_outputs import summary_lines


def _summary(err: bool) -> dict:
    row = {"degree_pct": 30.0, "thickness_um": 32.0, "thickness_held_um": 31.0, "thickness_before_um": 45.0,
           "porosity": 0.2, "conductivity_s_m": 6.3e-3, "se_tortuosity": 2.0, "se_diffusivity_rel": 0.1,
           "se_connected_fraction": 0.97, "conductivity_method": "network", "se_method": "network"}
    if err:
        row.update(porosity_error=0.004, conductivity_s_m_error=4e-4, se_tortuosity_error=0.09,
                   se_diffusivity_rel_error=0.008)
    return {"slurry": {"density_g_cm3": 1.9, **({"density_g_cm3_error": 0.02, "placements": 2} if err else {})},
            "dried": {"porosity": 0.36, **({"porosity_error": 0.005} if err else {})},
            "degrees": [row], "files": {"csv": "/x/pipeline.csv"}}


def test_two_placements_print_value_plus_minus_error_and_say_what_the_errors_hold():
    lines = summary_lines("p", _summary(True))
    assert lines[0] == "pipeline p: slurry density 1.9000 +- 0.0200 g/cm^3, dried porosity 36.0 +- 0.5 %"
    assert ("porosity 20.0 +- 0.4 %; conductivity 0.0063 +- 0.0004 S/m, SE tortuosity 2 +- 0.09, "
            "SE D_eff/D_0 0.1 +- 0.008, SE voxels connected 97 %") in lines[1]
    assert lines[2].startswith("  errors: the standard error over 2 placements;")
    assert "contact network" in lines[2]
    assert lines[3] == "  table: /x/pipeline.csv"


def test_one_placement_says_the_spread_is_not_measured():
    lines = summary_lines("p", _summary(False))
    assert lines[0] == "pipeline p: slurry density 1.9000 g/cm^3, dried porosity 36.0 %"
    assert "one placement: the spread is not measured" in lines[2]


def test_the_errors_line_counts_the_placements_combined_not_those_asked_for():
    s = _summary(False)
    s["placements"] = [{"seed": 1, "workdir": "/x/placement_1"}]  # a second placement failed
    assert "one placement: the spread is not measured" in summary_lines("p", s)[2]
