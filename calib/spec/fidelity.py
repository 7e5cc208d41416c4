"""Named fidelities: how big and how long one trial is.

``paper`` reproduces the seed's scale (5089 beads placed in 716 x 716 x 1000 um); ``dev``
and ``smoke`` keep the composition and the initial number density's shape but use fewer
beads, a denser start (``initial_box_scale`` < 1 shrinks each box edge) and fewer steps.
A study file may override some fields of a built-in fidelity (the rest stay) or define a
fidelity of its own (then every required field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator


class TransferMap(BaseModel):
    """The measured factor that maps a compressed rung's value of one target to the full
    protocol's (output space mapping): the rung's value times ``factor`` is what the study
    scores. ``factor`` is a ratio measured at a calibrated set (the mean of its full-protocol
    runs on fresh placements over its value at this rung: ``calib.optimize.confirmation``); ``source``
    says which runs. Only a confirmation at the full protocol shows that a mapped answer
    holds (docs/model.md, "Mapping a compressed rung to the full protocol")."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    factor: PositiveFloat
    """The full protocol's value over the rung's (dimensionless), measured at a calibrated set."""
    source: str = Field(min_length=1)
    """Which runs measured it: study, trials, placements, date, command (one line: runs of
    white space, newlines included, become one space)."""

    @field_validator("source")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return " ".join(v.split())  # it is printed in comment headers (an exported include file)


class Fidelity(BaseModel):
    """One fidelity. Steps are LAMMPS steps of ``timestep_us`` (us).

    Under the slurry's ``seed`` protocol (``slurry.protocol: seed``) a fidelity is a bead
    count, a time compression and a number of replicates: compression: k, the protocol runs
    in 1/k of its steps (``slurry.protocol_steps``) under the study's
    ``slurry.compression_law`` (``sim_backends/lammps/compression.py``; its measured error:
    docs/model.md); replicates: placements run per trial (their mean is the trial's density,
    their spread its uncertainty). The start is always the seed's dilute box scaled to
    ``n_beads``. The fields below drive the ``ramp_hold`` protocol (and the other stages);
    ``density_bias_rel`` is recorded with ``ramp_hold`` trials only (a seed-protocol trial
    records its protocol and compression instead; their measured error: docs/model.md).
    transfer: target name -> ``TransferMap``, the measured factor from this rung's value of
    the target to the full protocol's (seed protocol only; the value scored is the rung's
    times the factor, and the rung's own value is recorded beside it).

    n_beads: total bead count. initial_box_scale: edge scale of the seed's placement box
    (scaled to n_beads at the seed's number density); 1.0 = the seed's dilute start.
    equilibration_steps: NPT steps of the pressure ramp (0 -> P0, the public protocol).
    averaging_steps: steps at P0 whose block means the reported density averages (the last
    ones). density_window_steps: the plateau test's window (``convergence.plateau_test``;
    at most ``averaging_steps``). density_max_steps: most steps at P0; a run stops earlier
    once the density has converged (``slurry.early_stop``). density_bias_rel: this
    fidelity's measured relative density bias against a longer run of the same parameters
    (None: not measured), with ``density_bias_source`` saying how it was measured; recorded
    with every trial.
    block_steps: density block length; sample_every: sampling interval inside a block.
    neighbor_style: LAMMPS neighbour binning of the slurry run: ``bin``, ``multi``, or ``auto``
    (``multi`` when the LJ cutoffs of the bead types span more than a factor of 2, as the
    LAMMPS manual advises for such systems; measured by ``bench/deck_throughput.py``).
    shear_block_steps: -P_xy block length of the viscosity runs; shear_segment_blocks: the
    fewest blocks in a segment (a batch of the steady-state test; segments are otherwise
    sized by the study's ``viscosity.segment_strain``); shear_max_steps: most steps one shear
    rate may run (the seed ran 7e7 steps per rate). drying_steps: periodic NPT(z) steps
    after evaporation; drying_mount_steps: steps settling on the current collector;
    calender_hold_steps / calender_release_steps: steps held at the final plane position /
    after the plane is removed (the compression itself lasts distance / speed).
    calender_speed_um_per_us / calender_timestep_us: override the study's plane speed and
    step (None: the study's, i.e. the public 0.02 um/us and 1e-4 us); dev keeps the public
    speed at a 10x longer step, smoke also moves the plane 10x faster, each at a measured
    cost (docs/model.md, "Drying and calendering against the public protocols").
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    n_beads: PositiveInt
    compression: PositiveInt = 1
    replicates: PositiveInt = 1
    initial_box_scale: PositiveFloat = 1.0
    equilibration_steps: PositiveInt
    averaging_steps: PositiveInt
    density_window_steps: PositiveInt | None = None
    density_max_steps: PositiveInt | None = None
    density_bias_rel: float | None = None
    density_bias_source: str | None = None
    transfer: dict[str, TransferMap] = Field(default_factory=dict)
    block_steps: PositiveInt = 1000
    neighbor_style: Literal["auto", "bin", "multi"] = "auto"
    sample_every: PositiveInt = 10
    timestep_us: PositiveFloat = 0.001
    minimize_max_iter: PositiveInt = 200
    thermo_every: PositiveInt = 1000
    shear_block_steps: PositiveInt = 1000
    shear_segment_blocks: PositiveInt = 4
    shear_max_steps: PositiveInt = 240_000
    drying_steps: PositiveInt = 20_000
    drying_mount_steps: PositiveInt = 5_000
    calender_hold_steps: PositiveInt = 5_000
    calender_release_steps: PositiveInt = 10_000
    calender_speed_um_per_us: PositiveFloat | None = None
    calender_timestep_us: PositiveFloat | None = None

    @model_validator(mode="after")
    def _check(self) -> "Fidelity":
        if self.averaging_steps % self.block_steps or self.equilibration_steps % self.block_steps:
            raise ValueError("equilibration_steps and averaging_steps must be multiples of block_steps")
        if self.window_steps % self.block_steps or self.window_steps // self.block_steps < 4 \
                or (self.window_steps // self.block_steps) % 2:
            raise ValueError("density_window_steps must be an even number (>= 4) of blocks (block_steps)")
        if self.averaging_steps < self.window_steps:
            raise ValueError(f"averaging_steps ({self.averaging_steps}) is shorter than the convergence window "
                             f"density_window_steps ({self.window_steps})")
        if self.max_steps < self.averaging_steps or self.max_steps % self.block_steps:
            raise ValueError("density_max_steps must be a multiple of block_steps and at least averaging_steps")
        if self.block_steps % self.sample_every:
            raise ValueError("block_steps must be a multiple of sample_every")
        if self.shear_block_steps % self.sample_every or self.shear_block_steps <= self.sample_every:
            raise ValueError("shear_block_steps must be a multiple of sample_every, and larger")
        if self.shear_max_steps < self.shear_block_steps:
            raise ValueError("shear_max_steps must be at least shear_block_steps")
        return self

    @property
    def window_steps(self) -> int:
        """The density plateau test's window (default: the averaging window)."""
        return self.density_window_steps or self.averaging_steps

    @property
    def max_steps(self) -> int:
        """Most density steps at P0 (default: the averaging window, i.e. no extension)."""
        return self.density_max_steps or self.averaging_steps


_BIAS_SOURCE = ("measured 2026-12-01 with bench/density_convergence.py for the best set of the default study "
                "(eps_AM 1.068, sigma_AM 0.948, eps_SE 765.8, sigma_SE 1.039, eps_CBD 45.96): {this} against "
                "3.003 g/cm^3 after 640,000 steps at 500 beads, itself still rising (+0.15 % per 20,000 steps); "
                "the bias depends on the parameters (Table S1: -35 % at dev)")

BUILTIN_FIDELITIES: dict[str, Fidelity] = {
    "smoke": Fidelity(n_beads=200, compression=1000, initial_box_scale=0.25, equilibration_steps=10_000,
                      averaging_steps=10_000, density_window_steps=10_000, density_max_steps=10_000,
                      calender_speed_um_per_us=0.2, calender_timestep_us=0.001, density_bias_rel=-0.53,
                      density_bias_source=_BIAS_SOURCE.format(this="1.410 g/cm^3 at smoke (200 beads, 20,000 steps)")),
    "dev": Fidelity(n_beads=200, compression=200, initial_box_scale=0.3, equilibration_steps=20_000,
                    averaging_steps=20_000, density_window_steps=20_000, density_max_steps=40_000,
                    # the public drying protocol compressed k = 350 (drying.protocol: public): +0.49 and +1.47
                    # porosity points against its 7e7 steps on two slurry states; docs/model.md#electrode-protocols
                    shear_max_steps=600_000, drying_steps=200_000,
                    drying_mount_steps=10_000, calender_hold_steps=10_000, calender_release_steps=20_000,
                    # the public plane speed at a 10x longer step: within 0.6 porosity points of the
                    # public 0.02 um/us at 1e-4 us at 30 % and 50 % (0.2 um/us: +4.3 at 30 %);
                    # docs/model.md#electrode-protocols
                    calender_speed_um_per_us=0.02, calender_timestep_us=0.001, density_bias_rel=-0.37,
                    density_bias_source=_BIAS_SOURCE.format(this="1.884 g/cm^3 at dev (trial 3 of the study)")),
    "paper": Fidelity(n_beads=5089, initial_box_scale=1.0, equilibration_steps=1_000_000,
                      averaging_steps=200_000, density_window_steps=200_000, density_max_steps=19_000_000,
                      block_steps=10_000, sample_every=100,
                      thermo_every=10_000, shear_block_steps=10_000, shear_max_steps=70_000_000,
                      drying_steps=2_000_000, drying_mount_steps=200_000, calender_hold_steps=200_000,
                      calender_release_steps=500_000),
}
