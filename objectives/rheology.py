"""Rheometer data: viscosity-vs-shear-rate curves, their CSV import and the curve error.

CSV format: a header row naming the two columns with their units, then one row per point:

    shear_rate [1/s], viscosity [Pa s]
    0.1, 120.0
    ...

Units may instead come from the caller (the study file) when the header gives none. Known
shear-rate units: 1/s (s^-1, s-1, /s). Known viscosity units: Pa s (Pa.s, Pa*s), mPa s
(mPa.s, cP). Values are converted to 1/s and Pa s here, at import. An optional third column
gives the 1-sigma uncertainty of the viscosity in the viscosity's unit.

Text: UTF-8, else read as Windows-1252 (rheometer software often exports it); a file with
NUL bytes (UTF-16, binary) is refused. Validation (``CurveError`` names the file and the
row): at least one point, numbers only, no NaN or infinity, positive shear rates and
viscosities, strictly increasing shear rates, known units.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SHEAR_RATE_UNITS: dict[str, float] = {"1/s": 1.0, "s^-1": 1.0, "s-1": 1.0, "/s": 1.0}
"""Factor to 1/s."""

VISCOSITY_UNITS: dict[str, float] = {"pa s": 1.0, "pa.s": 1.0, "pa*s": 1.0, "pas": 1.0,
                                     "mpa s": 1e-3, "mpa.s": 1e-3, "mpa*s": 1e-3, "mpas": 1e-3, "cp": 1e-3}
"""Factor to Pa s (keys lower-case, spaces collapsed)."""


class CurveError(ValueError):
    """Invalid rheometer data; ``where`` is the file, ``row`` the 1-based CSV line (0: none)."""

    def __init__(self, where: Path | str, row: int, message: str) -> None:
        loc = f"row {row}" if row else "(file)"
        super().__init__(f"{where}: {loc}: {message}")
        self.where = str(where)
        self.row = row
        self.message = message


@dataclass(frozen=True)
class ViscosityCurve:
    """A measured curve in SI: shear rates (1/s, increasing), viscosities (Pa s) and optional
    1-sigma uncertainties (Pa s)."""

    shear_rate_per_s: tuple[float, ...]
    viscosity_pa_s: tuple[float, ...]
    uncertainty_pa_s: tuple[float, ...] | None = None


def normalise_unit(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().replace("·", " "))


def _unit_in(header: str) -> str | None:
    m = re.search(r"[\[(]([^\])]+)[\])]", header)
    return m.group(1).strip() if m else None


def _factor(unit: str, table: dict[str, float], what: str, where: Path | str) -> float:
    key = normalise_unit(unit) if table is VISCOSITY_UNITS else unit.strip().replace(" ", "")
    if key not in table:
        raise CurveError(where, 1, f"unknown {what} unit {unit!r} (known: {', '.join(sorted(set(table)))})")
    return table[key]


def load_rheometer_csv(path: Path, shear_rate_unit: str | None = None, viscosity_unit: str | None = None
                       ) -> ViscosityCurve:
    """Read and validate a rheometer CSV (see the module docstring); units from the header,
    else from the arguments; a header unit that disagrees with a given one is an error."""
    path = Path(path)
    if not path.is_file():
        raise CurveError(path, 0, "file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CurveError(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    if b"\0" in raw:  # UTF-16/32 text or a binary file: the 8-bit decodings below would read garbage
        what = "UTF-16 or UTF-32 text" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "NUL bytes (binary, UTF-16?)"
        raise CurveError(path, 0, f"not a text CSV file: {what}; save it as UTF-8 (or Windows-1252)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # rheometer software often exports Windows-1252
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise CurveError(path, 0, f"not a CSV file ({exc})") from exc
    rows = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not rows:
        raise CurveError(path, 0, "empty file")
    line, header = rows[0]
    if len(header) not in (2, 3):
        raise CurveError(path, line, f"expected 2 or 3 columns (shear rate, viscosity[, uncertainty]), got {len(header)}")
    units = []
    for col, given, table, what in ((0, shear_rate_unit, SHEAR_RATE_UNITS, "shear-rate"),
                                    (1, viscosity_unit, VISCOSITY_UNITS, "viscosity")):
        found = _unit_in(header[col])
        if found and given and _factor(found, table, what, path) != _factor(given, table, what, path):
            raise CurveError(path, line, f"{what} unit {found!r} in the header does not match {given!r}")
        unit = found or given
        if unit is None:
            raise CurveError(path, line, f"no {what} unit in the header and none given")
        units.append(_factor(unit, table, what, path))
    entries = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise CurveError(path, line, f"expected {len(header)} values, got {len(row)}")
        try:
            entries.append((line, [float(c) for c in row]))
        except ValueError:
            raise CurveError(path, line, f"not a number: {row}") from None
    if not entries:
        raise CurveError(path, 0, "no data rows")
    return _build_curve(entries, units[0], units[1], path)


def _build_curve(entries: Sequence[tuple[int, Sequence[float]]], rate_factor: float, eta_factor: float,
                 where: Path | str) -> ViscosityCurve:
    """Validate (row, [rate, eta(, sigma)]) entries and convert them to SI."""
    rates: list[float] = []
    etas: list[float] = []
    sigmas: list[float] = []
    for line, values in entries:
        if not all(math.isfinite(v) for v in values):
            raise CurveError(where, line, "NaN or infinite value")
        rate, eta = values[0] * rate_factor, values[1] * eta_factor
        if rate <= 0 or eta <= 0:
            raise CurveError(where, line, "shear rate and viscosity must be positive")
        if rates and rate <= rates[-1]:
            raise CurveError(where, line, "shear rates must increase strictly")
        if len(values) == 3:
            if values[2] <= 0:
                raise CurveError(where, line, "uncertainty must be positive")
            sigmas.append(values[2] * eta_factor)
        rates.append(rate)
        etas.append(eta)
    if sigmas and len(sigmas) != len(rates):
        raise CurveError(where, 0, "give an uncertainty for every point or for none")
    return ViscosityCurve(tuple(rates), tuple(etas), tuple(sigmas) if sigmas else None)


def curve_from_points(points: Sequence[tuple[float, float, float | None]], shear_rate_unit: str,
                      viscosity_unit: str, where: Path | str) -> ViscosityCurve:
    """A curve from (shear rate, viscosity, uncertainty or None) in the given units, with the
    CSV's validation (``CurveError`` row = 1-based point number)."""
    if not points:
        raise CurveError(where, 0, "no points")
    rf = _factor(shear_rate_unit, SHEAR_RATE_UNITS, "shear-rate", where)
    vf = _factor(viscosity_unit, VISCOSITY_UNITS, "viscosity", where)
    entries = [(i + 1, [float(r), float(v)] + ([float(u)] if u is not None else [])) for i, (r, v, u) in enumerate(points)]
    return _build_curve(entries, rf, vf, where)


def loglog_interpolate(x: Sequence[float], y: Sequence[float], at: Sequence[float]) -> list[float]:
    """Piecewise-linear interpolation of log y over log x, evaluated at ``at``; outside the
    range of ``x`` the end segments are extended (with one point: constant)."""
    lx = [math.log(v) for v in x]
    ly = [math.log(v) for v in y]
    out = []
    for a in at:
        la = math.log(a)
        if len(lx) == 1:
            out.append(float(y[0]))
            continue
        k = 1
        while k < len(lx) - 1 and la > lx[k]:
            k += 1
        t = (la - lx[k - 1]) / (lx[k] - lx[k - 1])
        out.append(math.exp(ly[k - 1] + t * (ly[k] - ly[k - 1])))
    return out


@dataclass(frozen=True)
class CurveErrorResult:
    """Per-rate log errors and their root mean square.

    log_errors: ln(eta_sim / eta_exp) at each experimental rate, divided by the relative
    experimental uncertainty (sigma / eta) where given; rms: sqrt(mean(log_errors^2)).
    ``name`` and ``error`` (= rms) make it one objective for ``objectives.scalarise``.
    """

    name = "viscosity_curve"

    shear_rate_per_s: tuple[float, ...]
    simulated_pa_s: tuple[float, ...]
    measured_pa_s: tuple[float, ...]
    log_errors: tuple[float, ...]
    rms: float
    log_error_sd: tuple[float | None, ...] | None = None
    """Standard deviation of each log error implied by the simulation's standard errors of
    the viscosity (same normalisation; None where not measured)."""

    @property
    def error(self) -> float:
        return self.rms

    @property
    def residuals(self) -> tuple[float, ...]:
        """The signed residual components the composite optimiser models: one per rate."""
        return self.log_errors

    @property
    def residual_sd(self) -> tuple[float | None, ...]:
        return self.log_error_sd if self.log_error_sd is not None else (None,) * len(self.log_errors)

    def metrics(self) -> dict[str, float]:
        """Tracking metric: the scored error, the root mean square of the (normalised) ln errors."""
        return {f"{self.name}_rms_ln_error": self.error}

    def as_dict(self) -> dict:
        return {"rms_log_error": self.rms, "error": self.error, "shear_rate_per_s": list(self.shear_rate_per_s),
                "simulated_pa_s": list(self.simulated_pa_s), "measured_pa_s": list(self.measured_pa_s),
                "log_errors": list(self.log_errors)}

    def report(self) -> dict:
        return {f"{self.name}_rms_log_error": self.rms}

    def line(self) -> str:
        return f"{self.name}: rms log error {self.rms:.3g} over {len(self.log_errors)} measured rates"


def curve_error(sim_rate_per_s: Sequence[float], sim_eta_pa_s: Sequence[float], measured: ViscosityCurve,
                sim_sem_pa_s: Sequence[float] | None = None) -> CurveErrorResult:
    """Error in log viscosity over the measured shear rates; the simulated curve is
    interpolated log-log where the rates differ. ``sim_sem_pa_s``: the simulation's
    standard errors (Pa s); their relative size, interpolated the same way, gives the
    standard deviation of each log error (sd of ln eta ~ sem / eta)."""
    if len(sim_rate_per_s) != len(sim_eta_pa_s) or not sim_rate_per_s:
        raise ValueError("simulated rates and viscosities must be non-empty and of equal length")
    if any(not (v > 0 and math.isfinite(v)) for v in (*sim_rate_per_s, *sim_eta_pa_s)):
        raise ValueError("simulated rates and viscosities must be positive and finite")
    order = sorted(range(len(sim_rate_per_s)), key=lambda i: sim_rate_per_s[i])
    sim = loglog_interpolate([sim_rate_per_s[i] for i in order], [sim_eta_pa_s[i] for i in order],
                             measured.shear_rate_per_s)
    errs = []
    for k, (s, m) in enumerate(zip(sim, measured.viscosity_pa_s)):
        e = math.log(s / m)
        if measured.uncertainty_pa_s is not None:
            e /= measured.uncertainty_pa_s[k] / m
        errs.append(e)
    rms = math.sqrt(sum(e * e for e in errs) / len(errs))
    sds: tuple[float | None, ...] | None = None
    if sim_sem_pa_s is not None:
        rel = [sim_sem_pa_s[i] / sim_eta_pa_s[i] for i in order]
        if all(r > 0 and math.isfinite(r) for r in rel):
            rel_at = loglog_interpolate([sim_rate_per_s[i] for i in order], rel, measured.shear_rate_per_s)
            unc = ([u / m for u, m in zip(measured.uncertainty_pa_s, measured.viscosity_pa_s)]
                   if measured.uncertainty_pa_s is not None else [1.0] * len(rel_at))
            sds = tuple(r / u for r, u in zip(rel_at, unc))
    return CurveErrorResult(measured.shear_rate_per_s, tuple(sim), measured.viscosity_pa_s, tuple(errs), rms, sds)
