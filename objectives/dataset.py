"""Experimental datasets: targets with value, unit, uncertainty and provenance, plus the
material system (formulation, densities, sizes) they were measured on.

A dataset is ``experiments_data/<name>/dataset.yaml``. Every target and every system input
carries a provenance (source, optional DOI, kind). A target whose provenance is missing or
whose kind is neither ``measured`` nor ``synthetic`` is refused at load time
(``DatasetError`` naming the file and field).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from .rheology import (SHEAR_RATE_UNITS, VISCOSITY_UNITS, CurveError, ViscosityCurve, curve_from_points,
                       load_rheometer_csv, normalise_unit)
from .yamlfile import first_error, load_yaml_model

TARGET_KINDS = ("measured", "synthetic")

KNOWN_TARGETS: dict[str, str] = {"slurry_density": "g/cm^3", "dried_porosity": "1"}
"""Observables calib can compare with, and the unit their targets must be given in."""

KNOWN_CURVES = ("viscosity_curve",)
"""Curve targets calib can compare with (``curves.<name>`` in a dataset)."""


class DatasetError(ValueError):
    """A dataset file is missing or invalid; ``path`` and ``field`` say where."""

    def __init__(self, path: Path, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path = path
        self.field = field
        self.message = message


class _Model(BaseModel):
    """Base of the dataset models: unknown keys are refused, numbers must be finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Provenance(_Model):
    """Where a number comes from. ``kind``: measured / synthetic for targets; inputs may also
    be ``literature`` (a handbook value) or ``assumed`` (a modelling choice)."""

    source: str
    doi: str | None = None
    kind: Literal["measured", "literature", "assumed", "synthetic"]
    note: str | None = None

    @field_validator("source")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class Target(_Model):
    """One experimental target: value in ``unit``, optional 1-sigma uncertainty (same unit),
    and optionally the simulation protocol under which a model's value is comparable with it
    (e.g. ``seed`` for the slurry density the seed read at the end of its protocol); a study
    scoring it under another protocol is refused unless it consents."""

    value: float
    unit: str
    uncertainty: float | None = None
    protocol: str | None = None
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "Target":
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError("value must be positive and finite (errors are taken relative to it)")
        if self.uncertainty is not None and not (self.uncertainty > 0):
            raise ValueError("uncertainty must be positive when given")
        if self.provenance.kind not in TARGET_KINDS:
            raise ValueError(f"provenance.kind of a target must be one of {TARGET_KINDS}")
        return self


class CurvePoint(_Model):
    """One measured point: shear rate, viscosity and optional 1-sigma uncertainty (the
    curve's units)."""

    shear_rate: float
    viscosity: float
    uncertainty: float | None = None


class CurveSpec(_Model):
    """A measured viscosity-vs-shear-rate curve: inline ``points`` or a rheometer ``csv``
    (path relative to the dataset file; see ``objectives.rheology``), with its provenance.
    Units: ``shear_rate_unit`` and ``viscosity_unit`` (Pa s, mPa s, cP); for ``points`` they
    default to 1/s and Pa s; for a CSV they are taken from its header when not given, and
    must agree with the header when both are."""

    points: tuple[CurvePoint, ...] | None = None
    csv: str | None = None
    shear_rate_unit: str | None = None
    viscosity_unit: str | None = None
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "CurveSpec":
        if (self.points is None) == (self.csv is None):
            raise ValueError("give exactly one of points and csv")
        if self.provenance.kind not in TARGET_KINDS:
            raise ValueError(f"provenance.kind of a curve must be one of {TARGET_KINDS}")
        return self

    @field_validator("shear_rate_unit")
    @classmethod
    def _rate_unit(cls, v: str | None) -> str | None:
        if v is not None and v.strip().replace(" ", "") not in SHEAR_RATE_UNITS:
            raise ValueError(f"unknown shear-rate unit {v!r} (known: {', '.join(SHEAR_RATE_UNITS)})")
        return v

    @field_validator("viscosity_unit")
    @classmethod
    def _eta_unit(cls, v: str | None) -> str | None:
        if v is not None and normalise_unit(v) not in VISCOSITY_UNITS:
            raise ValueError(f"unknown viscosity unit {v!r} (known: {', '.join(sorted(VISCOSITY_UNITS))})")
        return v


class SizeClassSpec(_Model):
    diameter_um: float
    number_fraction: float


class PhaseSpec(_Model):
    """One phase of the formulation (see sim_backends.lammps.beads.Phase for meanings)."""

    material: str
    weight_fraction: float = Field(gt=0, le=1)
    density_g_cm3: PositiveFloat
    slurry_diameter_factor: PositiveFloat | None = None
    """Slurry bead diameter / dry particle diameter: the solvent shell (seed: AM and SE
    1.14). Required for AM and SE; a phase with a solid bead (CBD) gives its wet slurry
    diameter directly in ``size_classes``."""
    dried_diameter_factor: PositiveFloat | None = None
    """AM/SE bead diameter after drying / dry diameter (None: the public inputs' 1.02)."""
    size_classes: tuple[SizeClassSpec, ...] | None = None
    dried_diameter_um: PositiveFloat | None = None
    """Solid bead diameter (um; seed: CBD 7.5 -> 3.0 on drying): the bead is counted at this
    size and density (public convention) and carries solvent in the slurry."""
    dried_density_g_cm3: PositiveFloat | None = None
    """Solid bead density (g cm^-3; solid CBD = bulk x (1 - nanoporosity))."""
    nanoporosity: float = Field(default=0.0, ge=0, lt=1)
    """Volume fraction of pores inside the dried phase (seed: CBD 0.5); counted as pore
    volume in the porosity."""
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "PhaseSpec":
        if (self.dried_diameter_um is None) != (self.dried_density_g_cm3 is None):
            raise ValueError("give dried_diameter_um and dried_density_g_cm3 together")
        if self.size_classes is not None:
            if not self.size_classes:
                raise ValueError("size_classes must not be empty")
            if any(not (c.diameter_um > 0) or not (c.number_fraction > 0) for c in self.size_classes):
                raise ValueError("size_classes need positive diameter_um and number_fraction")
            total = sum(c.number_fraction for c in self.size_classes)
            if abs(total - 1) > 1e-6:
                raise ValueError(f"size_classes number_fraction must sum to 1 (got {total:.6g})")
        return self


class SystemSpec(_Model):
    description: str | None = None
    phases: dict[Literal["AM", "SE", "CBD"], PhaseSpec]

    @model_validator(mode="after")
    def _check(self) -> "SystemSpec":
        total = sum(p.weight_fraction for p in self.phases.values())
        if abs(total - 1) > 1e-3:
            raise ValueError(f"phase weight_fraction values must sum to 1 (got {total:.6g})")
        return self


class PorosityPoint(_Model):
    """Porosity (volume fraction, 0..1) of the electrode calendered by ``degree_pct`` % of
    its thickness, with an optional 1-sigma uncertainty."""

    degree_pct: float = Field(ge=0, lt=60)
    porosity: float = Field(gt=0, lt=1)
    uncertainty: PositiveFloat | None = None


def _check_degree_points(degrees: list[float], provenance: Provenance) -> None:
    """Measured points against calendering degree: at least one, degrees strictly
    increasing, a target kind of provenance."""
    if not degrees:
        raise ValueError("points: give at least one point")
    if any(b <= a for a, b in zip(degrees, degrees[1:])):
        raise ValueError("points: degree_pct must increase strictly")
    if provenance.kind not in TARGET_KINDS:
        raise ValueError(f"provenance.kind must be one of {TARGET_KINDS}")


class CalenderedPorosity(_Model):
    """Measured porosity against calendering degree, with its provenance."""

    points: tuple[PorosityPoint, ...]
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "CalenderedPorosity":
        _check_degree_points([p.degree_pct for p in self.points], self.provenance)
        return self


class DegreePoint(_Model):
    """A measured value at calendering degree ``degree_pct`` (%), with an optional 1-sigma
    uncertainty (same unit)."""

    degree_pct: float = Field(ge=0, lt=60)
    value: float = Field(gt=0)
    uncertainty: PositiveFloat | None = None


class DegreeSeries(_Model):
    """A measured electrode property against calendering degree (``unit``), with its
    provenance: ``calendered_conductivity`` (S/m, effective electronic conductivity) or
    ``calendered_se_tortuosity`` (1, geometric tortuosity of the solid electrolyte)."""

    unit: str
    points: tuple[DegreePoint, ...]
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "DegreeSeries":
        _check_degree_points([p.degree_pct for p in self.points], self.provenance)
        return self


DEGREE_SERIES_UNITS: dict[str, str] = {"calendered_conductivity": "S/m", "calendered_se_tortuosity": "1"}
"""Degree series a dataset may carry, with the unit each must be in."""


class Dataset(_Model):
    """A named experimental dataset."""

    name: str
    title: str
    system: SystemSpec | None = None
    targets: dict[str, Target] = Field(default_factory=dict)
    curves: dict[str, CurveSpec] = Field(default_factory=dict)
    calendered_porosity: CalenderedPorosity | None = None
    calendered_conductivity: DegreeSeries | None = None
    calendered_se_tortuosity: DegreeSeries | None = None

    def curve(self, name: str) -> ViscosityCurve:
        """The curve ``name`` in SI (validated at load time)."""
        return self._curves[name]

    _curves: dict[str, ViscosityCurve] = PrivateAttr(default_factory=dict)


def _describe(exc: ValidationError) -> tuple[str, str]:
    """(field, message) of a dataset's first validation error (``first_error``); a missing
    field says what every target needs."""
    field, msg = first_error(exc)
    if exc.errors()[0]["type"] == "missing":
        msg = "field required (every target needs value, unit and provenance)" if "targets" in field else "field required"
    return field, msg


def load_dataset(path: Path) -> Dataset:
    """Load and validate ``dataset.yaml``; raise ``DatasetError`` naming file and field."""
    path = Path(path)
    dataset = load_yaml_model(path, Dataset, partial(DatasetError, path), "dataset file not found",
                              describe=_describe)
    for key, t in dataset.targets.items():
        if key in KNOWN_TARGETS and t.unit != KNOWN_TARGETS[key]:
            raise DatasetError(path, f"targets.{key}.unit", f"must be {KNOWN_TARGETS[key]!r}, got {t.unit!r}")
    for key, unit in DEGREE_SERIES_UNITS.items():
        series = getattr(dataset, key)
        if series is not None and series.unit != unit:
            raise DatasetError(path, f"{key}.unit", f"must be {unit!r}, got {series.unit!r}")
    for key, c in dataset.curves.items():
        if key not in KNOWN_CURVES:
            raise DatasetError(path, f"curves.{key}", f"unknown curve (known: {', '.join(KNOWN_CURVES)})")
        try:
            if c.csv is not None:
                dataset._curves[key] = load_rheometer_csv(path.parent / c.csv, c.shear_rate_unit, c.viscosity_unit)
            else:
                dataset._curves[key] = curve_from_points(
                    [(p.shear_rate, p.viscosity, p.uncertainty) for p in c.points or ()],
                    c.shear_rate_unit or "1/s", c.viscosity_unit or "Pa s",
                    where=f"{path}: curves.{key}.points")
        except CurveError as exc:
            if c.csv:
                raise DatasetError(Path(exc.where), f"row {exc.row}" if exc.row else "(file)", exc.message) from exc
            raise DatasetError(path, f"curves.{key}.points" + (f" (point {exc.row})" if exc.row else ""),
                               exc.message) from exc
    return dataset

