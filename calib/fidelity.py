"""Named fidelities: how big and how long one trial is.

``paper`` reproduces the seed's scale (5089 beads placed in 716 x 716 x 1000 um); ``dev``
and ``smoke`` keep the composition and the initial number density's shape but use fewer
beads, a denser start (``initial_box_scale`` < 1 shrinks each box edge) and fewer steps.
A study file may override some fields of a built-in fidelity (the rest stay) or define a
fidelity of its own (then every required field).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, model_validator


class Fidelity(BaseModel):
    """One fidelity. Steps are LAMMPS steps of ``timestep_us`` (us).

    n_beads: total bead count. initial_box_scale: edge scale of the seed's placement box
    (scaled to n_beads at the seed's number density); 1.0 = the seed's dilute start.
    equilibration_steps / averaging_steps: NPT steps before / during density averaging.
    block_steps: density block length; sample_every: sampling interval inside a block.
    shear_block_steps: -P_xy block length of the viscosity runs; shear_segment_blocks: the
    fewest blocks in a segment (a batch of the steady-state test; segments are otherwise
    sized by the study's ``viscosity.segment_strain``); shear_max_steps: most steps one shear
    rate may run (the seed ran 7e7 steps per rate). drying_steps: periodic NPT(z) steps
    after evaporation; drying_mount_steps: steps settling on the current collector;
    calender_hold_steps / calender_release_steps: steps held at the final plane position /
    after the plane is removed (the compression itself lasts distance / speed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_beads: PositiveInt
    initial_box_scale: PositiveFloat = 1.0
    equilibration_steps: PositiveInt
    averaging_steps: PositiveInt
    block_steps: PositiveInt = 1000
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

    @model_validator(mode="after")
    def _check(self) -> "Fidelity":
        if self.averaging_steps % self.block_steps:
            raise ValueError("averaging_steps must be a multiple of block_steps")
        if self.block_steps % self.sample_every:
            raise ValueError("block_steps must be a multiple of sample_every")
        if self.shear_block_steps % self.sample_every or self.shear_block_steps <= self.sample_every:
            raise ValueError("shear_block_steps must be a multiple of sample_every, and larger")
        if self.shear_max_steps < self.shear_block_steps:
            raise ValueError("shear_max_steps must be at least shear_block_steps")
        return self


BUILTIN_FIDELITIES: dict[str, Fidelity] = {
    "smoke": Fidelity(n_beads=200, initial_box_scale=0.25, equilibration_steps=20_000,
                      averaging_steps=10_000),
    "dev": Fidelity(n_beads=500, initial_box_scale=0.3, equilibration_steps=40_000,
                    averaging_steps=20_000, shear_max_steps=600_000, drying_steps=40_000,
                    drying_mount_steps=10_000, calender_hold_steps=10_000, calender_release_steps=20_000),
    "paper": Fidelity(n_beads=5089, initial_box_scale=1.0, equilibration_steps=1_000_000,
                      averaging_steps=200_000, block_steps=10_000, sample_every=100,
                      thermo_every=10_000, shear_block_steps=10_000, shear_max_steps=70_000_000,
                      drying_steps=2_000_000, drying_mount_steps=200_000, calender_hold_steps=200_000,
                      calender_release_steps=500_000),
}
