"""objectives/dataset.py load_dataset: shipped datasets and refusal of bad files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from objectives.dataset import Dataset, DatasetError, load_dataset

DATA_ROOT = Path(__file__).resolve().parent.parent / "experiments_data"

GOOD = textwrap.dedent("""\
    name: tiny
    title: "tiny test dataset"
    system:
      phases:
        AM:
          material: NMC622
          weight_fraction: 0.69
          density_g_cm3: 4.75
          slurry_diameter_factor: 1.14
          size_classes:
            - {diameter_um: 10.0, number_fraction: 1.0}
          provenance: {source: "seed", kind: measured}
        SE:
          material: Li6PS5Cl
          weight_fraction: 0.276
          density_g_cm3: 1.64
          size_classes:
            - {diameter_um: 2.0, number_fraction: 0.5}
            - {diameter_um: 4.0, number_fraction: 0.5}
          provenance: {source: "lit", kind: literature}
        CBD:
          material: CBD
          weight_fraction: 0.034
          density_g_cm3: 0.9
          size_classes:
            - {diameter_um: 7.5, number_fraction: 1.0}
          provenance: {source: "seed", kind: measured}
    targets:
      slurry_density:
        value: 1.90
        unit: g/cm^3
        uncertainty: null
        provenance:
          source: "seed paper"
          kind: measured
    """)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dataset.yaml"
    p.write_text(text)
    return p


def _replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def _refused(tmp_path: Path, text: str) -> DatasetError:
    p = _write(tmp_path, text)
    with pytest.raises(DatasetError) as info:
        load_dataset(p)
    exc = info.value
    assert str(p) in str(exc)
    assert exc.path == p
    return exc


@pytest.mark.parametrize("name", ["ssb_nmc622_lpscl", "lib_nmc111_nmp"])
def test_shipped_datasets_load_with_target_provenance(name):
    ds = load_dataset(DATA_ROOT / name / "dataset.yaml")
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert "slurry_density" in ds.targets
    for key, t in ds.targets.items():
        assert t.provenance is not None, key
        assert t.provenance.kind in ("measured", "synthetic"), key
        assert t.provenance.source.strip()


def test_shipped_ssb_dataset_values():
    ds = load_dataset(DATA_ROOT / "ssb_nmc622_lpscl" / "dataset.yaml")
    assert ds.targets["slurry_density"].value == 1.90
    assert ds.targets["slurry_density"].unit == "g/cm^3"
    phases = ds.system.phases
    assert phases["AM"].weight_fraction == 0.690
    assert phases["SE"].weight_fraction == 0.276
    assert phases["CBD"].weight_fraction == 0.034
    assert phases["CBD"].density_g_cm3 == 0.9
    assert [c.diameter_um for c in phases["SE"].size_classes] == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_good_tmp_dataset_loads(tmp_path):
    ds = load_dataset(_write(tmp_path, GOOD))
    assert ds.targets["slurry_density"].value == 1.90
    assert ds.targets["slurry_density"].uncertainty is None


def test_target_without_provenance(tmp_path):
    text = _replace('    provenance:\n      source: "seed paper"\n      kind: measured\n', "")
    exc = _refused(tmp_path, text)
    assert "targets.slurry_density.provenance" in exc.field
    assert "targets.slurry_density.provenance" in str(exc)


def test_target_provenance_kind_guess(tmp_path):
    exc = _refused(tmp_path, _replace("      kind: measured\n", "      kind: guess\n"))
    assert exc.field.startswith("targets.slurry_density.provenance")
    assert "targets.slurry_density.provenance" in str(exc)


def test_target_provenance_kind_literature_is_refused(tmp_path):
    # literature is allowed for system inputs, not for targets
    exc = _refused(tmp_path, _replace("      kind: measured\n", "      kind: literature\n"))
    assert exc.field.startswith("targets.slurry_density")
    assert "measured" in str(exc)


@pytest.mark.parametrize("density", ["0.0", "-1.64"])
def test_non_positive_density_names_phase(tmp_path, density):
    exc = _refused(tmp_path, _replace("density_g_cm3: 1.64", f"density_g_cm3: {density}"))
    assert exc.field.startswith("system.phases.SE")
    assert "density_g_cm3" in str(exc)


def test_number_fractions_not_summing_to_one(tmp_path):
    exc = _refused(tmp_path, _replace("{diameter_um: 4.0, number_fraction: 0.5}",
                                      "{diameter_um: 4.0, number_fraction: 0.4}"))
    assert exc.field == "system.phases.SE"
    assert "number_fraction" in str(exc)


def test_weight_fractions_not_summing_to_one(tmp_path):
    exc = _refused(tmp_path, _replace("weight_fraction: 0.034", "weight_fraction: 0.134"))
    assert exc.field == "system"
    assert "weight_fraction" in str(exc)


def test_empty_source(tmp_path):
    exc = _refused(tmp_path, _replace('source: "seed paper"', 'source: "   "'))
    assert exc.field == "targets.slurry_density.provenance.source"
    assert "targets.slurry_density.provenance.source" in str(exc)


def test_malformed_yaml(tmp_path):
    exc = _refused(tmp_path, GOOD + "targets: [unclosed\n  - : :\n")
    assert exc.field == "(file)"
    assert "YAML" in str(exc)


def test_not_a_mapping(tmp_path):
    exc = _refused(tmp_path, "- just\n- a list\n")
    assert exc.field == "(top level)"


def test_missing_file(tmp_path):
    p = tmp_path / "nowhere" / "dataset.yaml"
    with pytest.raises(DatasetError) as info:
        load_dataset(p)
    assert str(p) in str(info.value)
    assert info.value.field == "(file)"


def test_wrong_unit_for_slurry_density(tmp_path):
    exc = _refused(tmp_path, _replace("unit: g/cm^3", "unit: kg/m^3"))
    assert "targets.slurry_density.unit" in str(exc)
    assert "kg/m^3" in str(exc)


def test_wrong_unit_error_field_attribute(tmp_path):
    exc = _refused(tmp_path, _replace("unit: g/cm^3", "unit: kg/m^3"))
    assert exc.field == "targets.slurry_density.unit"


def test_non_positive_target_value_is_refused(tmp_path):
    src = yaml.safe_load((DATA_ROOT / "ssb_nmc622_lpscl" / "dataset.yaml").read_text())
    src["targets"]["slurry_density"]["value"] = 0.0
    p = tmp_path / "dataset.yaml"
    p.write_text(yaml.safe_dump(src))
    with pytest.raises(DatasetError) as exc:
        load_dataset(p)
    assert exc.value.field.startswith("targets.slurry_density") and "positive" in str(exc.value)


def test_lithium_ion_dataset_carries_its_two_viscosity_points():
    ds = load_dataset(DATA_ROOT / "lib_nmc111_nmp" / "dataset.yaml")
    c = ds.curve("viscosity_curve")
    assert c.shear_rate_per_s == (18.0, 125.0) and c.viscosity_pa_s == (7.48, 2.86)
    assert ds.curves["viscosity_curve"].provenance.kind == "measured"


def test_dataset_curve_from_csv_beside_it(tmp_path):
    (tmp_path / "rheo.csv").write_text("shear_rate [1/s],viscosity [mPa s]\n1,9000\n10,4000\n")
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({
        "name": "x", "title": "x",
        "curves": {"viscosity_curve": {"csv": "rheo.csv", "provenance": {"source": "model run 7", "kind": "synthetic"}}},
    }))
    ds = load_dataset(tmp_path / "dataset.yaml")
    assert ds.curve("viscosity_curve").viscosity_pa_s == pytest.approx((9.0, 4.0))


def test_dataset_curve_csv_error_names_csv_row(tmp_path):
    (tmp_path / "rheo.csv").write_text("shear_rate [1/s],viscosity [Pa s]\n1,9\n1,4\n")
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({
        "name": "x", "title": "x",
        "curves": {"viscosity_curve": {"csv": "rheo.csv", "provenance": {"source": "lab", "kind": "measured"}}},
    }))
    with pytest.raises(DatasetError) as e:
        load_dataset(tmp_path / "dataset.yaml")
    assert e.value.path == tmp_path / "rheo.csv" and e.value.field == "row 3"


def test_unknown_curve_name_is_refused(tmp_path):
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({
        "name": "x", "title": "x",
        "curves": {"yield_curve": {"points": [{"shear_rate": 1, "viscosity": 1}],
                                   "provenance": {"source": "lab", "kind": "measured"}}},
    }))
    with pytest.raises(DatasetError) as e:
        load_dataset(tmp_path / "dataset.yaml")
    assert e.value.field == "curves.yield_curve"
