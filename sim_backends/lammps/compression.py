"""Time compression of a protocol: run it in 1/k of the steps with settings that keep its
trajectory in scaled time (derivation: docs/model.md, "Compressing a protocol in time").

A protocol is an NPT run of ``steps`` steps of ``timestep_us`` under ``fix npt/sphere``
with a Nose-Hoover thermostat (target ``temperature_K``, damping ``tdamp_us``) and barostat
(damping ``pdamp_us``; LAMMPS sets the barostat mass W = (N_f + d) kB T Pdamp^2). Four laws:

- ``temperature``: T' = k^2 T, nothing else changed (the first guess of issue 26: in a
  creep whose speed the thermostat caps at sqrt(kB T / m), k times faster beads cover the
  same path in 1/k of the time).
- ``thermal``: the beads' motion in this model is thermostat-capped creep (kB T is 1e-5 of
  the LJ well depths, so the thermostat pins every bead's speed at sqrt(kB T / m) and the
  forces only steer it). Speeds k times higher cover the same path in 1/k of the time:
  T' = k^2 T (speed ~ sqrt(T)), Tdamp' = Tdamp / k and Pdamp' = Pdamp / k (the thermostat
  and barostat respond in the same scaled time), which leaves the barostat mass unchanged
  (W ~ T Pdamp^2); the step stays. It holds while k^2 kB T stays far below the well depths
  and the thermostat's Tdamp' stays many steps long.
- ``undamped`` (the default): Tdamp' = k^2 Tdamp, nothing else. The Nose-Hoover chain caps
  the thermostat's friction at about 1 / (Tdamp sqrt(N_f)), and that cap, not T, sets how
  fast the beads creep at k = 1. Lowering it k^2-fold takes the thermostat out of the
  compressed run's way, so the beads compact as fast as their inertia allows. Measured
  (docs/model.md): past Tdamp x k^1.5 the end density no longer depends on Tdamp (the
  inertial limit), and the error left against k = 1 is that limit's, -4 % at k = 10 and
  -22 % at k = 100 for Table S1; no law reaches the 2 % goal.
- ``timestep``: the same physical run with a k times longer step (exact in continuous
  time; only the integration error changes). It holds while k dt stays well below Tdamp
  and the contact, LJ and damping times.

Which law a study uses, and at which k, is decided by their measured error against k = 1
(``bench/compression.py``); ``k = 1`` returns the target protocol itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Law = Literal["undamped", "temperature", "thermal", "timestep"]
LAWS: tuple[str, ...] = ("undamped", "temperature", "thermal", "timestep")


@dataclass(frozen=True)
class NptProtocol:
    """An NPT run's length and ensemble settings (units micro: us; temperature in K)."""

    steps: int
    timestep_us: float
    temperature_K: float
    tdamp_us: float
    pdamp_us: float

    @property
    def duration_us(self) -> float:
        return self.steps * self.timestep_us


def compress(target: NptProtocol, k: int, law: Law = "undamped") -> NptProtocol:
    """``target`` run in ``target.steps / k`` steps under ``law``. Raises ``ValueError`` for
    k < 1, a non-integer k or a step count that k does not divide."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"compression must be an integer >= 1, got {k!r}")
    if target.steps % k:
        raise ValueError(f"compression {k} does not divide the protocol's {target.steps} steps")
    if law not in LAWS:
        raise ValueError(f"compression law must be one of {LAWS}, got {law!r}")
    if k == 1:
        return target
    steps = target.steps // k
    if law == "timestep":
        return replace(target, steps=steps, timestep_us=target.timestep_us * k)
    if law == "undamped":
        return replace(target, steps=steps, tdamp_us=target.tdamp_us * k * k)
    if law == "temperature":
        return replace(target, steps=steps, temperature_K=target.temperature_K * k * k)
    return replace(target, steps=steps, temperature_K=target.temperature_K * k * k,
                   tdamp_us=target.tdamp_us / k, pdamp_us=target.pdamp_us / k)


def barostat_mass_factor(p: NptProtocol) -> float:
    """T Pdamp^2 (K us^2): the barostat mass up to the constant (N_f + d) kB that a
    compression leaves alone."""
    return p.temperature_K * p.pdamp_us ** 2
