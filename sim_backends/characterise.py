"""Characterisation of an electrode film state (seed Sec. 2.4, Fig. 3d, Fig. 4, Fig. S4),
runnable as a backend job:

    python -m sim_backends.characterise characterise.json

reads the spec (``CharacteriseSpec`` as JSON), writes ``characterisation.json`` next to
it and logs to ``characterise.log``; on failure the log's last line is ``ERROR: <reason>``
and the exit status is 1.

Steps: the state's spheres are voxelised (``microstructure.film_voxels``: solid radii,
x and y periodic, the collector at the box's bottom); the rough top of the film is cut
where a layer's solid (non-pore) area fraction falls below ``surface_solid_fraction_rel``
x the film's median layer solid fraction (the analysed slab is the electrode between the
collector and that surface; docs/stages/characterise.md); on that slab:
the electronic conductivity (AM and CBD conducting, SE and pores insulating) of the
beads' contact network (``particle_network.network_conductivity``, cut by the radical planes
of their neighbours; ``conductivity_method: network``, the default) and of the voxel image
(``transport.effective_conductivity``, reported as the cross-check, or as the value with
``conductivity_method: voxel``); the SE's D_eff/D_0 from the same contact network with the SE
conducting (``se_method: network``, the default; cut with ``ION_KEPT_EXPONENT``) and from the
voxel image (``transport.se_relative_diffusivity``, the cross-check, or the value with
``se_method: voxel``, then with its two-grid resolution error), ``geometric_tortuosity`` of
the SE phase, ``networks.phase_network`` of the SE and ``networks.pore_network`` of the pores.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .jsonsafe import json_safe
from .lammps.placement import read_sphere_data
from .microstructure import GridTooLarge, film_voxels
from .particle_network import network_conductivity
from .transport import SOR_ITER_LIMIT

COARSE_RATIO = 1.25
"""The SE values' resolution error comes from a second solve on a grid this many times
coarser (``se_resolution_error``)."""
SAFETY_FACTOR = 3.0
"""Roache's factor of safety for a grid-convergence index from two grids (an order assumed,
not observed); 1.25 is his factor when three grids give the order."""
ION_KEPT_EXPONENT = 0.5
"""How the contact network scales an SE bead's conductance by the fraction of its sphere the
AM and CBD beads overlapping it leave (kept ^ exponent). The electronic network keeps 1
(``particle_network``, chosen on a 30 % film, within 3.3 % on four films). For the SE, 1 read 3-12 %
low against converged voxel solves on dev films (SE beads are cut by AM beads larger than
them, the conductors mostly by SE beads smaller than them). 0.5 was chosen from 0, 0.5 and 1
on the first four films of ``bench/se_network.py`` (the dev series' placement 1 at 30-50 %
and placement 2 at 30 %); the other four films were measured after the choice
(docs/stages/characterise.md#se-transport)."""
RESULT_FILE = "characterisation.json"
LOG_FILE = "characterise.log"
SPEC_FILE = "characterise.json"


@dataclass(frozen=True)
class CharacteriseSpec:
    """One characterisation. state_file: LAMMPS sphere data (relative to the spec's folder
    or absolute); phase_of_type, solid_radius_um_of_type: per atom type (str keys in JSON);
    nanoporosity: per phase (counted in the porosity, not in the image); resolution_um:
    voxel edge; conductivity_s_m: per conducting phase (seed: AM 0.005, CBD 15.93 S/m);
    ion_phase: the phase whose diffusivity and network are measured (SE);
    surface_solid_fraction_rel: the top-cut rule (module docstring); pore_network: run
    the SNOW2 extraction; max_bytes: voxel-grid memory cap; iter_limit: most iterations of
    the ion-phase diffusion solve (TauFactor; a solve that stops there reports
    ``converged: false``); overlap: who gets a voxel where beads overlap
    (``microstructure.voxelise``); threads: CPU threads of the solvers (BLAS, OpenMP, PyTorch:
    ``threads.solver_threads``; 1 by default, measured 8.5x faster than the libraries' defaults
    on a busy 2-core machine); conductivity_method: ``network`` (the contact network, no
    voxels) or ``voxel``; touch_gap_um, touch_radius_rel: the network's contact rule for beads
    that touch without overlapping (within ``touch_gap_um`` um, a neck of ``touch_radius_rel``
    x the smaller radius; 0, 0: overlapping beads only, the model's Hertzian contact);
    se_method: the SE's D_eff/D_0 from ``network`` (the contact network, the same contact rule)
    or ``voxel`` (the image's diffusion solve, with its two-grid resolution error)."""

    state_file: str
    phase_of_type: dict[str, str]
    solid_radius_um_of_type: dict[str, float]
    nanoporosity: dict[str, float]
    resolution_um: float
    conductivity_s_m: dict[str, float]
    ion_phase: str = "SE"
    surface_solid_fraction_rel: float = 0.5
    pore_network: bool = True
    max_bytes: int = 2 * 1024**3
    label: str = ""
    iter_limit: int = SOR_ITER_LIMIT
    threads: int = 1
    overlap: str = "power"
    conductivity_method: str = "network"
    touch_gap_um: float = 0.0
    touch_radius_rel: float = 0.0
    se_method: str = "network"

    @classmethod
    def from_json(cls, text: str) -> "CharacteriseSpec":
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class CharacterisationFailed(RuntimeError):
    """The state cannot be characterised (the reason is the message)."""


@dataclass(frozen=True)
class _Log:
    path: Path

    def __call__(self, msg: str) -> None:
        with self.path.open("a") as fh:
            fh.write(msg + "\n")


def surface_cut(labels: np.ndarray, fraction_rel: float) -> int:
    """Number of z layers to keep: up to the last layer whose solid area fraction is at
    least ``fraction_rel`` x the median layer solid fraction."""
    solid = (labels > 0).mean(axis=(0, 1))
    bar = fraction_rel * float(np.median(solid))
    keep = np.nonzero(solid >= bar)[0]
    return int(keep[-1]) + 1 if keep.size else labels.shape[2]


def characterise(spec: CharacteriseSpec, folder: Path, log=print) -> dict:
    """Run every step (module docstring) with the solvers on ``spec.threads`` threads; returns
    the JSON-able results. Raises ``CharacterisationFailed`` when the state cannot be
    characterised."""
    from .threads import solver_threads

    with solver_threads(spec.threads):
        return _characterise(spec, folder, log)


def _characterise(spec: CharacteriseSpec, folder: Path, log) -> dict:
    from .networks import phase_network, pore_network
    from .transport import effective_conductivity, geometric_tortuosity, se_relative_diffusivity

    t0 = time.perf_counter()
    for field, value in (("conductivity_method", spec.conductivity_method), ("se_method", spec.se_method)):
        if value not in ("network", "voxel"):
            raise CharacterisationFailed(f"{field} must be 'network' or 'voxel', not {value!r}")
    state = Path(spec.state_file)
    state = state if state.is_absolute() else folder / state
    data = read_sphere_data(state)
    types = [str(int(t)) for t in data.types]
    unknown = sorted(set(types) - set(spec.phase_of_type))
    if unknown:
        raise CharacterisationFailed(f"{state}: atom type(s) {', '.join(unknown)} not in the spec")
    phases = [spec.phase_of_type[t] for t in types]
    collector = float(data.lo[2])
    below = int(np.sum(data.positions[:, 2] < collector))
    if below:
        raise CharacterisationFailed(f"{below} bead(s) lie below the current collector")
    solid_r = np.array([spec.solid_radius_um_of_type[t] for t in types])
    try:
        vox = film_voxels(data.positions, data.diameters / 2.0, solid_r, phases, data.lo, data.hi, collector,
                          spec.resolution_um, spec.nanoporosity, max_bytes=spec.max_bytes, overlap=spec.overlap)
    except GridTooLarge as exc:
        raise CharacterisationFailed(f"voxel grid: {exc}") from exc
    t_vox = time.perf_counter() - t0
    n_keep = surface_cut(vox.labels, spec.surface_solid_fraction_rel)
    labels = vox.labels[:, :, :n_keep]
    code = {name: i + 1 for i, name in enumerate(vox.names)}
    log(f"image {vox.labels.shape} voxels of {vox.resolution_um:g} um ({t_vox:.2f} s); analysed slab: "
        f"{n_keep} of {vox.labels.shape[2]} layers ({n_keep * vox.resolution_um:.2f} um)")
    if spec.ion_phase not in code or not np.any(labels == code[spec.ion_phase]):
        raise CharacterisationFailed(f"the image has no {spec.ion_phase} voxel")
    solid_fraction = {p: 1.0 - float(spec.nanoporosity.get(p, 0.0)) for p in vox.names}
    fractions = {"pore": float(np.mean(labels == 0)), **{p: float(np.mean(labels == code[p])) for p in vox.names}}
    porosity = 1.0 - sum(fractions[p] * solid_fraction[p] for p in vox.names)
    cond = effective_conductivity(labels, {code[p]: s for p, s in spec.conductivity_s_m.items() if p in code})
    log(f"voxel conductivity {cond.effective:.6g} S/m: {cond.iterations} CG iterations, {cond.wall_s:.2f} s, "
        f"converged {cond.converged}, |I_bottom - I_top| / I {cond.flux_spread_rel:.2g}")
    sigma = np.array([spec.conductivity_s_m.get(p, 0.0) for p in phases])
    net = network_conductivity(data.positions, solid_r, sigma, (data.hi[0] - data.lo[0], data.hi[1] - data.lo[1]),
                               collector, collector + n_keep * vox.resolution_um, touch_gap_um=spec.touch_gap_um,
                               touch_radius_rel=spec.touch_radius_rel, cut_by_neighbours=True)
    log(f"network conductivity {net.effective:.6g} S/m: {net.necks} necks, {net.conducting_beads} of {net.beads} "
        f"beads carrying, {net.wall_s:.2f} s, converged {net.converged}")
    by_network = spec.conductivity_method == "network"
    ion = labels == code[spec.ion_phase]
    dif, se_solver = se_relative_diffusivity(ion, iter_limit=spec.iter_limit)
    tau_voxel = geometric_tortuosity(fractions[spec.ion_phase], dif.effective)
    log(f"{spec.ion_phase} voxel D_eff/D_0 {dif.effective:.6g}, tau_g {tau_voxel:.4g}: {se_solver}, "
        f"{dif.iterations} iterations, {dif.wall_s:.2f} s, converged {dif.converged}, flux spread "
        f"{dif.flux_spread_rel:.2g}")
    ion_sigma = np.array([1.0 if p == spec.ion_phase else 0.0 for p in phases])
    ion_net = network_conductivity(data.positions, solid_r, ion_sigma, (data.hi[0] - data.lo[0],
                                   data.hi[1] - data.lo[1]), collector, collector + n_keep * vox.resolution_um,
                                   touch_gap_um=spec.touch_gap_um, touch_radius_rel=spec.touch_radius_rel,
                                   cut_by_neighbours=True, kept_exponent=ION_KEPT_EXPONENT)
    log(f"{spec.ion_phase} network D_eff/D_0 {ion_net.effective:.6g}: {ion_net.necks} necks, "
        f"{ion_net.conducting_beads} of {ion_net.beads} beads carrying, {ion_net.wall_s:.2f} s, "
        f"converged {ion_net.converged}")
    se_by_network = spec.se_method == "network"
    d_rel = ion_net.effective if se_by_network else dif.effective
    tau = geometric_tortuosity(fractions[spec.ion_phase], d_rel)
    se_err = (None if se_by_network else  # the network has no grid; its model error is measured in the bench
              se_resolution_error(spec, data, solid_r, phases, collector, n_keep * vox.resolution_um,
                                  vox.resolution_um, dif.effective, tau, log))
    se_net = phase_network(ion)
    out = {
        "label": spec.label, "state_file": str(state), "voxels": list(vox.labels.shape),
        "resolution_um": vox.resolution_um, "film_thickness_um": float(vox.labels.shape[2] * vox.resolution_um),
        "analysed_thickness_um": float(n_keep * vox.resolution_um), "porosity": porosity, "fractions": fractions,
        "conductivity_s_m": net.effective if by_network else cond.effective,
        "conductivity_method": spec.conductivity_method,
        "conductivity_converged": net.converged if by_network else cond.converged,
        "conductivity_voxel_s_m": cond.effective, "conductivity_solver": asdict(cond),
        "conductivity_network": {**asdict(net), "touch_gap_um": spec.touch_gap_um,
                                 "touch_radius_rel": spec.touch_radius_rel},
        "se_diffusivity_rel": d_rel, "se_tortuosity": tau if math.isfinite(tau) else None,
        "se_method": spec.se_method, "se_converged": ion_net.converged if se_by_network else dif.converged,
        "se_diffusivity_voxel_rel": dif.effective,
        "se_tortuosity_voxel": tau_voxel if math.isfinite(tau_voxel) else None,
        "se_solver": {**asdict(dif), "method": se_solver}, "se_contact_network": asdict(ion_net),
        "se_network": asdict(se_net), "se_resolution_error": se_err,
    }
    if spec.pore_network:
        t1 = time.perf_counter()
        pn = pore_network(labels == 0, vox.resolution_um)
        out["pore_network"] = {**pn.summary(), "pore_diameters_um": list(pn.pore_diameters_um),
                               "throat_diameters_um": list(pn.throat_diameters_um),
                               "wall_s": time.perf_counter() - t1}
        log(f"pore network: {len(pn.pore_diameters_um)} pores, {len(pn.throat_diameters_um)} throats "
            f"({out['pore_network']['wall_s']:.2f} s)")
    out["wall_s"] = time.perf_counter() - t0
    log(f"done in {out['wall_s']:.2f} s")
    return out


def se_resolution_error(spec: CharacteriseSpec, data, solid_r: np.ndarray, phases: list[str], collector: float,
                        slab_um: float, h: float, d_rel: float, tau: float, log) -> dict:
    """The resolution error of the SE's D_eff/D_0 and tau_g at voxel ``h`` (um): the same
    slab (``slab_um`` above the collector) solved again on a grid ``COARSE_RATIO`` x coarser,
    error = F |v_h - v_coarse| / (h_coarse / h - 1): Roache's grid-convergence index for two
    grids, order 1 assumed, F = ``SAFETY_FACTOR`` (3). Without F it undershot: on a dev film
    calendered 30 % the first-order estimate at 0.5 um was 0.0097 while the value fell 0.0157
    by 0.125 um and kept falling (``bench/resolution.py``; docs/stages/characterise.md).
    None when the coarser grid would put fewer than 3 voxels across the smallest bead."""
    from .transport import geometric_tortuosity, se_relative_diffusivity

    h_c = h * COARSE_RATIO
    if 2.0 * float(solid_r.min()) / h_c < 3.0:
        return {"resolution_um": h_c, "d_rel": None, "tau": None, "why": "fewer than 3 voxels across a bead"}
    t0 = time.perf_counter()
    vox = film_voxels(data.positions, data.diameters / 2.0, solid_r, phases, data.lo, data.hi, collector, h_c,
                      spec.nanoporosity, max_bytes=spec.max_bytes, overlap=spec.overlap)
    h_c = vox.resolution_um  # the grid fits the box: the edge may differ a little from the asked one
    n = max(1, int(round(slab_um / h_c)))
    code = {name: i + 1 for i, name in enumerate(vox.names)}
    ion = vox.labels[:, :, :n] == code[spec.ion_phase]
    dif, method = se_relative_diffusivity(ion, iter_limit=spec.iter_limit)
    tau_c = geometric_tortuosity(float(np.mean(ion)), dif.effective)
    scale = SAFETY_FACTOR / (h_c / h - 1.0)
    out = {"resolution_um": h_c, "d_rel_coarse": dif.effective, "tau_coarse": tau_c if math.isfinite(tau_c) else None,
           "d_rel": abs(d_rel - dif.effective) * scale,
           "tau": abs(tau - tau_c) * scale if math.isfinite(tau) and math.isfinite(tau_c) else None,
           "converged": dif.converged, "method": method, "wall_s": time.perf_counter() - t0}
    log(f"{spec.ion_phase} at {h_c:g} um: D_eff/D_0 {dif.effective:.6g}, tau_g {tau_c:.4g}: resolution error "
        f"{out['d_rel']:.3g} and {out['tau'] if out['tau'] is None else format(out['tau'], '.3g')} "
        f"({out['wall_s']:.2f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_path = Path(args[0] if args else SPEC_FILE).resolve()
    folder = spec_path.parent
    log = _Log(folder / LOG_FILE)
    try:
        spec = CharacteriseSpec.from_json(spec_path.read_text())
        result = characterise(spec, folder, log)
    except CharacterisationFailed as exc:
        log(f"ERROR: {exc}")
        return 1
    except Exception as exc:  # any other failure: the reason in the log, the trace after it
        log(traceback.format_exc().rstrip())
        log(f"ERROR: characterisation failed: {exc.__class__.__name__}: {exc}")
        return 1
    (folder / RESULT_FILE).write_text(json.dumps(json_safe(result), indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
