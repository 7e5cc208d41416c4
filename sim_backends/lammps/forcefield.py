"""Force field: Table S1 keys -> LAMMPS ``pair_style`` / ``pair_coeff`` lines.

Source: seed paper Table S1 and Sec. 2.3; MODEL_NOTES.md (../shared/reference).

- Per-phase Lennard-Jones: ``eps_X``, ``sigma_X`` and ``rc_X`` are multipliers of one
  diameter d per type (um), the same in every stage: the dry particle for AM and SE, the
  solid (dried, 3.0 um) bead for CBD (``BeadType.lj_diameter_um``; docs/model.md), so eps = eps_X * d (pg um^2 us^-2), sigma = sigma_X * d (um),
  rc = rc_X * d (um). Table S1 prints sigma_CBD as a bare number; it is read as a multiplier
  of d_CBD like every other sigma (the group's public inputs use sigma = 0.89 d for CBD).
- Cross terms (pub-code mixing): eps_ij = sqrt(eps_i eps_j), sigma_ij = (sigma_i+sigma_j)/2,
  rc_ij = (rc_i + rc_j)/2.
- One granular Hertzian law for all pairs (``gran/hertz/history``): kn (pg um^-1 us^-2),
  kt = 1.378 kn, gamma_n (um^-1 us^-1), gamma_t = 0.959 gamma_n, friction xu.
- LJ and granular forces are overlaid (``pair_style hybrid/overlay``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .beads import BeadSystem, BeadType

TABLE_S1_KEYS: tuple[str, ...] = (
    "eps_AM", "sigma_AM", "rc_AM",
    "eps_SE", "sigma_SE", "rc_SE",
    "eps_CBD", "sigma_CBD", "rc_CBD",
    "kn", "gamma_n", "xu",
)
"""The twelve force-field keys of the seed's Table S1, in the order AM, SE, CBD, contact (the
printed table lists CBD first; ``calib.publish.table_s1`` orders and ``calib.publish.table_s1_render`` renders it)."""

KT_OVER_KN = 1.378
"""Tangential / normal elastic constant ratio [seed, Sec. S4]."""

GAMMAT_OVER_GAMMAN = 0.959
"""Tangential / normal damping ratio [seed, Sec. S4]."""

LJ_STYLES = ("lj/cut", "lj/smooth/linear")

SIGMA_CBD_NOTE = (
    "sigma_CBD is printed in Table S1 as a bare number (um); it is read here as a multiplier "
    "of d_CBD like every other sigma, as in the group's public inputs (sigma = 0.89 d)."
)


@dataclass(frozen=True)
class ForceFieldParams:
    """The twelve Table S1 parameters. LJ entries are multipliers of the bead diameter;
    kn in pg um^-1 us^-2, gamma_n in um^-1 us^-1, xu dimensionless."""

    eps_AM: float
    sigma_AM: float
    rc_AM: float
    eps_SE: float
    sigma_SE: float
    rc_SE: float
    eps_CBD: float
    sigma_CBD: float
    rc_CBD: float
    kn: float
    gamma_n: float
    xu: float

    @classmethod
    def from_mapping(cls, values: dict[str, float]) -> "ForceFieldParams":
        unknown = set(values) - set(TABLE_S1_KEYS)
        missing = set(TABLE_S1_KEYS) - set(values)
        if unknown or missing:
            raise KeyError(f"unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        return cls(**{k: float(values[k]) for k in TABLE_S1_KEYS})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def lj_multipliers(self, phase: str) -> tuple[float, float, float]:
        """(eps, sigma, rc) multipliers of ``phase``."""
        return (getattr(self, f"eps_{phase}"), getattr(self, f"sigma_{phase}"), getattr(self, f"rc_{phase}"))


TABLE_S1_SLURRY = ForceFieldParams(
    eps_AM=1.0, sigma_AM=0.99, rc_AM=1.5,
    eps_SE=10.5, sigma_SE=0.99, rc_SE=1.5,
    eps_CBD=0.88, sigma_CBD=0.97, rc_CBD=2.2,
    kn=0.1, gamma_n=55.0, xu=0.016,
)
"""Table S1, slurry column [seed]."""

TABLE_S1_DRIED = ForceFieldParams(
    eps_AM=100.0, sigma_AM=0.93, rc_AM=1.2,
    eps_SE=200.0, sigma_SE=0.93, rc_SE=1.2,
    eps_CBD=400.0, sigma_CBD=0.89, rc_CBD=2.2,
    kn=100.0, gamma_n=10.0, xu=12.5,
)
"""Table S1, dried-electrode column [seed]."""

NAMED_PARAMETER_SETS: dict[str, ForceFieldParams] = {
    "table-s1-slurry": TABLE_S1_SLURRY,
    "table-s1-dried": TABLE_S1_DRIED,
}


@dataclass(frozen=True)
class LJCoeff:
    """Resolved LJ coefficients of one type pair: eps (pg um^2 us^-2), sigma (um), rc (um)."""

    i: int
    j: int
    eps: float
    sigma: float
    rc: float


def resolve_type(params: ForceFieldParams, bead: BeadType) -> tuple[float, float, float]:
    """Resolved (eps, sigma, rc) of one bead type: multiplier x the type's LJ diameter
    (``BeadType.lj_diameter_um``: dry AM/SE particle, solid CBD bead; the same in every stage,
    as the group's public inputs scale sigma with the dry diameter)."""
    m_eps, m_sigma, m_rc = params.lj_multipliers(bead.phase)
    d = bead.lj_diameter_um
    return (m_eps * d, m_sigma * d, m_rc * d)


def lj_pair_coeffs(params: ForceFieldParams, system: BeadSystem) -> list[LJCoeff]:
    """LJ coefficients for every type pair i <= j, cross terms by the pub-code mixing rules."""
    resolved = {t.type_id: resolve_type(params, t) for t in system.types}
    out = []
    ids = sorted(resolved)
    for a, i in enumerate(ids):
        for j in ids[a:]:
            ei, si, ri = resolved[i]
            ej, sj, rj = resolved[j]
            out.append(LJCoeff(i, j, math.sqrt(ei * ej), 0.5 * (si + sj), 0.5 * (ri + rj)))
    return out


def pair_lines(params: ForceFieldParams, system: BeadSystem, lj_style: str = "lj/cut") -> list[str]:
    """``pair_style``/``pair_coeff`` lines for LJ + granular Hertz overlaid."""
    if lj_style not in LJ_STYLES:
        raise ValueError(f"lj_style must be one of {LJ_STYLES}, got {lj_style!r}")
    coeffs = lj_pair_coeffs(params, system)
    rc_max = max(c.rc for c in coeffs)
    kt = KT_OVER_KN * params.kn
    gamma_t = GAMMAT_OVER_GAMMAN * params.gamma_n
    lines = [
        f"pair_style hybrid/overlay {lj_style} {rc_max:.6g} "
        f"gran/hertz/history {params.kn:.6g} {kt:.6g} {params.gamma_n:.6g} {gamma_t:.6g} {params.xu:.6g} 1",
    ]
    for c in coeffs:
        lines.append(f"pair_coeff {c.i} {c.j} {lj_style} {c.eps:.6g} {c.sigma:.6g} {c.rc:.6g}")
    lines.append("pair_coeff * * gran/hertz/history")
    return lines


@dataclass(frozen=True)
class WallContact:
    """Hertzian contact law of a granular wall (``fix wall/gran hertz/history``): kn in
    pg um^-1 us^-2, gamma_n in um^-1 us^-1, friction xu; tangential terms by the same
    ratios as the pair law. The seed's walls use the trial's own Table S1 contact values
    (``WallContact.of(params)``)."""

    kn: float
    gamma_n: float
    xu: float

    @classmethod
    def of(cls, params: ForceFieldParams) -> "WallContact":
        return cls(params.kn, params.gamma_n, params.xu)

    def args(self) -> str:
        """The ``hertz/history ...`` arguments of ``fix wall/gran`` (dampflag 1)."""
        return (f"hertz/history {self.kn:.6g} {KT_OVER_KN * self.kn:.6g} {self.gamma_n:.6g} "
                f"{GAMMAT_OVER_GAMMAN * self.gamma_n:.6g} {self.xu:.6g} 1")
