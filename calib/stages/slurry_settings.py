"""The slurry stage's settings and protocol (seed Sec. 2.1, 3.1-3.2): the ``slurry``
(``SlurrySettings``) and ``viscosity`` (``ViscositySettings``) sections, the seed protocol at a
fidelity's compression and the checks that a study's fidelities, transfers and targets fit it
(``check_protocol``), whether the study scores the viscosity curve and at which experimental
shear rates (1/s), and the fidelity fields the stage reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from sim_backends.lammps.beads import BeadSystem
from sim_backends.lammps.compression import LAWS, NptProtocol, compress
from sim_backends.lammps.forcefield import ForceFieldParams, resolve_type
from sim_backends.lammps.slurry import SEED_BLOCKS

from calib.core.errors import InputError
from calib.spec.fidelity import Fidelity
from calib.spec.study_file import SpecModel

if TYPE_CHECKING:
    from calib.spec.study_file import StudyBase
    from calib.stages.base import StudyView


class SlurrySettings(SpecModel):
    """Physics settings of the slurry stage (seed: 300 K, 1 atm; thermostat, barostat and
    ramp as the group's public ``Slurry/in_slurry.run``: ``npt/sphere temp 300 300 0.2 iso 0
    100 1000``).

    protocol: ``seed`` (the seed's and the public inputs': the pressure ramped
    linearly to P0 over the whole run of ``protocol_steps`` from the seed's dilute start, the
    density read at the end, as the mean of the last 1 % of the run) or ``ramp_hold`` (a
    ramp of the fidelity's ``equilibration_steps``, then P0 held until the plateau test
    passes; kept as a named alternative: it does not converge at 1 atm, docs/stages/slurry.md).
    protocol_steps: the seed
    protocol's length at k = 1 (public: 2e7 steps of 0.001 us); a fidelity's
    ``compression`` k runs it in protocol_steps / k steps under ``compression_law``.
    allow_protocol_mismatch: score a target whose dataset names another protocol anyway.
    early_stop_band_rel: protocol ``seed`` only: stop a calibration trial's run at the first
    density block above target x (1 + band) (the density only rises along the protocol, so
    the run cannot end inside the band; ``SEED_MONOTONE_NOTE``). The trial keeps that block's
    density as a lower bound and is scored on a forecast of its end density
    (``END_FORECAST_EXPONENT``): data for the proposer, never the study's answer. None (the
    default): every trial runs the whole protocol. Confirmations never stop early.

    pressure_start_atm: start of the pressure ramp (public: 0). tdamp_us, pdamp_us:
    Nose-Hoover thermostat and barostat damping (public: 0.2 and 1000 us).
    density_tolerance_rel: the plateau test's tolerance on the density's relative change
    across the fidelity's window. early_stop: end the run at the first passing window.
    not_converged: ``penalty`` keeps a trial whose density never converged and adds
    ``penalty`` to its scalarised objective (0: flag it only); ``fail`` makes it FAIL with
    the reason.
    """

    protocol: Literal["seed", "ramp_hold"] = "seed"
    protocol_steps: PositiveInt = 20_000_000
    compression_law: Literal[LAWS] = "undamped"  # type: ignore[valid-type]
    allow_protocol_mismatch: bool = False
    early_stop_band_rel: PositiveFloat | None = None
    temperature_K: PositiveFloat = 300.0
    pressure_atm: PositiveFloat = 1.0
    pressure_start_atm: float = Field(default=0.0, ge=0)
    tdamp_us: PositiveFloat = 0.2
    pdamp_us: PositiveFloat = 1000.0
    neighbor_skin_um: PositiveFloat = 1.0
    density_tolerance_rel: PositiveFloat = 0.01
    early_stop: bool = True
    not_converged: Literal["penalty", "fail"] = "penalty"
    penalty: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    IDENTITY_OMIT_DEFAULTS: ClassVar[dict[str, Any]] = {"early_stop_band_rel": None}  # studies before it existed

    @model_validator(mode="after")
    def _band(self) -> "SlurrySettings":
        if self.early_stop_band_rel is not None and self.protocol != "seed":
            raise ValueError("early_stop_band_rel: stops the seed protocol's rising density; this study runs "
                             "protocol ramp_hold")
        return self


class ViscositySettings(SpecModel):
    """How the slurry's viscosity curve is simulated (seed Sec. 3.2; docs/stages/slurry.md).

    shear_rates_per_s: the experimental shear rates (1/s) at which to simulate, strictly
    increasing; default: the rates of the measured curve. rate_scale: the mapping from
    experimental to simulated rates, simulated = rate_scale x experimental (default 1:
    physical rates). The simulated viscosity -P_xy / simulated rate is compared, in Pa s,
    at the experimental rate it maps to. A run is cut into segments of at least
    ``segment_strain``; the steady-state window is the last ``window_segments`` segment
    means, and may start only after ``min_strain``; it passes when its two halves agree
    within ``z`` standard errors and its mean is known to ``precision`` (relative standard
    error). early_stop: end each run at the first passing window; otherwise, and at the
    latest, runs end at ``max_strain`` (or the fidelity's ``shear_max_steps``), and a run
    that never passed has not converged.
    not_converged: ``penalty`` keeps the trial and adds penalty x (fraction of rates not
    converged) to its scalarised objective; ``fail`` makes such a trial FAIL. tdamp_us:
    SLLOD thermostat damping time. csv (+ units): a rheometer CSV, relative to the study
    file, that replaces the dataset's curve (``--viscosity-csv`` overrides it); csv_kind:
    its provenance kind (``synthetic`` for model-generated data), recorded with the study.
    """

    shear_rates_per_s: tuple[PositiveFloat, ...] | None = None
    rate_scale: PositiveFloat = 1.0
    min_strain: float = Field(default=1.0, ge=0)
    max_strain: PositiveFloat = 10.0
    segment_strain: PositiveFloat = 0.5
    window_segments: int = Field(default=6, ge=4)
    precision: PositiveFloat = 0.05
    early_stop: bool = True
    z: PositiveFloat = 2.0
    not_converged: Literal["penalty", "fail"] = "penalty"
    penalty: PositiveFloat = 1.0
    tdamp_us: PositiveFloat = 1.0
    csv: str | None = None
    csv_shear_rate_unit: str | None = None
    csv_viscosity_unit: str | None = None
    csv_kind: Literal["measured", "synthetic"] = "measured"

    @model_validator(mode="after")
    def _check(self) -> "ViscositySettings":
        rates = self.shear_rates_per_s
        if rates is not None:
            if not rates:
                raise ValueError("shear_rates_per_s: give at least one rate (or leave it out)")
            if any(b <= a for a, b in zip(rates, rates[1:])):
                raise ValueError("shear_rates_per_s: rates must increase strictly")
        if self.min_strain > self.max_strain:
            raise ValueError("min_strain: must not exceed max_strain")
        if self.window_segments % 2:
            raise ValueError("window_segments: must be even (the test compares the window's two halves)")
        return self


def neighbor_style(fidelity: Fidelity, params: ForceFieldParams, system: BeadSystem) -> str:
    """The fidelity's neighbour binning; ``auto``: ``multi`` when the types' LJ cutoffs span
    more than a factor of 2 (polydisperse beads), else ``bin``."""
    if fidelity.neighbor_style != "auto":
        return fidelity.neighbor_style
    cut = [resolve_type(params, t)[2] for t in system.types]
    return "multi" if max(cut) > 2 * min(cut) else "bin"


def seed_protocol(settings: SlurrySettings, fidelity: Fidelity) -> NptProtocol:
    """The seed protocol at the fidelity's compression (``compress``; ValueError if k does
    not divide ``protocol_steps`` into whole blocks)."""
    target = NptProtocol(steps=settings.protocol_steps, timestep_us=fidelity.timestep_us,
                         temperature_K=settings.temperature_K, tdamp_us=settings.tdamp_us, pdamp_us=settings.pdamp_us)
    run = compress(target, fidelity.compression, settings.compression_law)
    if run.steps % SEED_BLOCKS:
        raise ValueError(f"protocol_steps / compression = {run.steps} steps is not a multiple of the "
                         f"{SEED_BLOCKS} density blocks of a seed-protocol run")
    return run


TRANSFERABLE = ("slurry_density",)
"""Targets a fidelity's ``transfer`` may map: those read at the end of the compressed seed
protocol."""


def transfer_problem(settings: SlurrySettings, fidelity: Fidelity) -> str | None:
    """Why ``fidelity.transfer`` cannot apply to the study's slurry protocol, or None."""
    if not fidelity.transfer:
        return None
    unknown = sorted(set(fidelity.transfer) - set(TRANSFERABLE))
    if unknown:
        return (f"maps {', '.join(unknown)}, which the slurry stage does not read at the end of a compressed "
                f"protocol (it may map: {', '.join(TRANSFERABLE)})")
    if settings.protocol != "seed":
        return "maps a compressed seed protocol to the full one, but the study runs slurry.protocol: ramp_hold"
    if fidelity.compression == 1:
        return "maps a compressed rung to the full protocol, but this fidelity runs it uncompressed (compression: 1)"
    return None


def protocol_problem(settings: SlurrySettings, fidelity: Fidelity) -> str | None:
    """Why ``fidelity`` cannot run the study's slurry protocol, or None."""
    if settings.protocol != "seed":
        return None
    try:
        seed_protocol(settings, fidelity)
    except ValueError as exc:
        return str(exc)
    return None


def protocol_label(settings: SlurrySettings, fidelity: Fidelity) -> str:
    """The protocol a density was read under, in words (recorded with every value)."""
    if settings.protocol == "ramp_hold":
        return (f"ramp_hold: 0 -> {settings.pressure_atm:g} atm over {fidelity.equilibration_steps:,} steps, then "
                f"held up to {fidelity.max_steps:,} steps (not the seed's protocol; does not converge at 1 atm)")
    k = fidelity.compression
    run = seed_protocol(settings, fidelity)
    how = "uncompressed" if k == 1 else (f"compressed k = {k} ({settings.compression_law} law: {run.steps:,} steps, "
                                         f"T {run.temperature_K:.4g} K, Tdamp {run.tdamp_us:.3g} us, "
                                         f"Pdamp {run.pdamp_us:.4g} us, dt {run.timestep_us:.3g} us)")
    return (f"seed: 0 -> {settings.pressure_atm:g} atm over {settings.protocol_steps:,} steps of "
            f"{fidelity.timestep_us:g} us, {fidelity.n_beads} beads, {how}; density at the end"
            + ("" if k == 1 else "; the compression's measured error: docs/model.md#compression")
            + (f"; scored mapped to the full protocol: x {m.factor:.4g} (docs/model.md#transfer)"
               if (m := fidelity.transfer.get("slurry_density")) is not None else ""))


def check_protocol(loaded: "StudyView") -> None:
    """Every ladder fidelity can run the study's protocol, and every scored target that names
    the protocol it is comparable under names the study's (unless the study consents:
    ``slurry.allow_protocol_mismatch``). ``InputError`` otherwise."""
    spec, where = loaded.spec, str(loaded.path)
    for name in spec.ladder:
        problem = protocol_problem(spec.slurry, spec.fidelity_spec(name))
        if problem:
            raise InputError(where, f"fidelities.{name}.compression", problem)
        problem = transfer_problem(spec.slurry, spec.fidelity_spec(name))
        if problem:
            raise InputError(where, f"fidelities.{name}.transfer", problem)
    if spec.slurry.early_stop_band_rel is not None:
        if "slurry_density" not in spec.objective.targets:
            raise InputError(where, "slurry.early_stop_band_rel", "stops a run whose density is out of band, but "
                                                                  "this study does not score slurry_density")
        if uses_viscosity(spec):
            raise InputError(where, "slurry.early_stop_band_rel", "not with viscosity_curve: a stopped trial's "
                                                                  "shear runs would start from a slurry that did not "
                                                                  "finish its protocol")
    for t in spec.objective.targets:
        target = loaded.dataset.targets.get(t)
        theirs = getattr(target, "protocol", None)
        if theirs is not None and theirs != spec.slurry.protocol and not spec.slurry.allow_protocol_mismatch:
            raise InputError(where, "slurry.protocol",
                             f"target {t} of dataset {spec.dataset} is comparable only under protocol {theirs!r}, "
                             f"this study runs {spec.slurry.protocol!r}: use {theirs!r}, or set "
                             "slurry.allow_protocol_mismatch: true to score it anyway")


def uses_viscosity(spec: "StudyBase") -> bool:
    """The study scores the viscosity curve (so its trials run the shear rates)."""
    return "viscosity_curve" in spec.objective.targets


def simulated_rates_per_s(loaded: "StudyView") -> tuple[float, ...]:
    """Experimental-scale shear rates to simulate (1/s): the study's, else the curve's."""
    v = loaded.spec.viscosity
    if v.shear_rates_per_s is not None:
        return tuple(v.shear_rates_per_s)
    assert loaded.curve is not None
    return loaded.curve.shear_rate_per_s


SLURRY_FIDELITY_FIELDS = ("n_beads", "initial_box_scale", "equilibration_steps", "averaging_steps",
                          "density_window_steps", "density_max_steps", "neighbor_style")
SEED_PROTOCOL_FIDELITY_FIELDS = ("timestep_us", "minimize_max_iter", "n_beads", "compression", "replicates",
                                 "neighbor_style", "transfer")
SHEAR_FIDELITY_FIELDS = ("shear_block_steps", "shear_segment_blocks", "shear_max_steps")
