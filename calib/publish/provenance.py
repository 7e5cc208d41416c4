"""The provenance of an exported set: the ``(label, text)`` pairs of a column's sources and
of its LAMMPS include file's header (study, trial, dataset, fidelity, the state the trial
started from and the one it left, each with its sha256, calib and LAMMPS versions).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from optuna.trial import FrozenTrial

from sim_backends.lammps.outputs import lammps_version

from calib import __version__, ledger
from calib.optimize import confirmation as confirm
from calib.publish.source import Source
from calib.review.caveats import trial_caveats
from calib.stages.upstream_state import STATE_FILE


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lammps_version(workdir: Path | None) -> str:
    """The LAMMPS version in the trial's log (the one that ran it)."""
    if workdir is not None and workdir.is_dir():
        for log in sorted(workdir.glob("**/log.lammps")):
            v = lammps_version(log.read_text(errors="replace")[:2000])
            if v:
                return f"{v} (from the trial's {log.relative_to(workdir)})"
    return "unknown (the trial's LAMMPS log is gone)"


def provenance(src: Source, t: FrozenTrial, why: str) -> tuple[tuple[str, str], ...]:
    """The include file's header: study, trial, dataset, fidelity, the state the trial
    started from (sha256), the state it left, calib and LAMMPS versions."""
    attrs = t.user_attrs
    target_fid = src.study.user_attrs.get(ledger.TARGET_FIDELITY_ATTR, src.spec.fidelity)
    fid = attrs.get(ledger.FIDELITY_ATTR, target_fid)
    try:
        n_beads = src.spec.fidelity_spec(fid).n_beads
        beads = f", {n_beads} beads"
    except KeyError:
        beads = ""
    workdir = Path(attrs["calib_workdir"]) if attrs.get("calib_workdir") else None
    kind = ledger.proposal_kind(attrs, t.number, src.spec.optimizer.sampler, src.spec.optimizer.n_initial)
    lin = attrs.get("lineage")
    if lin:
        where = f"{lin['stage']} study {lin['study']} trial {lin['trial']}" if lin.get("study") else "a data file"
        start = f"{lin['state_file']} (sha256 {lin['sha256']}; {where})"
    else:
        start = f"none: the {src.spec.stage} stage starts from a generated placement (LAMMPS seed {attrs.get('calib_seed')})"
    state = workdir / STATE_FILE if workdir else None
    left = f"{state} (sha256 {sha256(state)})" if state and state.is_file() else "not on disk"
    checked = confirm.summary(src.study, t.number)
    mapped = attrs.get("density_transfer")
    extra = ((("protocol", str(attrs["density_protocol"])),) if attrs.get("density_protocol") else ()) + (
        (("transfer", f"the density scored is this fidelity's x {mapped['factor']:.4g}, mapped to the full protocol "
                      f"(factor: {mapped.get('source')})"),) if isinstance(mapped, dict) else ()) + (
        (("confirmation", confirm.one_line(checked)),) if checked else ())  # none: the caveats say so
    return (
        ("study", f"{src.name} ({src.spec.stage} stage; ledger {ledger.shown(src.storage)})"),
        ("trial", f"{t.number} ({why}; proposed by: {kind}); objective {t.value:.6g}"),
        ("dataset", f"{src.spec.dataset}: {src.dataset_file} (file sha256 {sha256(src.dataset_file)}; what the "
                    f"study uses from it, sha256 {src.dataset_digest}, is what it was calibrated on)"),
        ("fidelity", f"{fid}{beads}" + ("" if fid == target_fid else f" (the study's target: {target_fid})")),
        *extra,
        *(("caveat", line) for line in trial_caveats(src.study, t).lines),
        ("calibrated on state", start),
        ("state left by the trial", left),
        ("calib", __version__),
        ("LAMMPS", _lammps_version(workdir)),
    )
