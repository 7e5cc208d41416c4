"""The backends a study can run its trials on, by name (``resources.backend`` in the study
file, ``--backend`` on the command line): ``local`` and ``slurm``. A new backend is one
module in ``sim_backends`` plus one entry here."""

from __future__ import annotations

import shutil
from typing import Any, Callable, Protocol

from sim_backends.backend import Backend
from sim_backends.lammps.install import LammpsInstall

from calib.core.errors import InputError


class ResourcesSpec(Protocol):
    """What a backend factory reads of a study's ``resources`` (``calib.spec.study_file.ResourcesSpec``,
    which validates its backend name against ``names()``: the registry sits below the study
    model, so it names the model's shape here instead of importing it)."""

    backend: str
    slurm: Any


def _local(resources: "ResourcesSpec", lammps: LammpsInstall) -> Backend:
    from sim_backends.local import LocalBackend

    return LocalBackend(mpirun=lammps.mpirun)


def _slurm(resources: "ResourcesSpec", lammps: LammpsInstall) -> Backend:
    from sim_backends.slurm import SlurmBackend, SlurmOptions

    s = resources.slurm
    return SlurmBackend(SlurmOptions(partition=s.partition, account=s.account, qos=s.qos, nodes=s.nodes,
                                     time_limit_min=s.time_limit_min, directives=tuple(s.directives), mpi=s.mpi,
                                     poll_interval_s=s.poll_interval_s))


def _check_slurm(source: str) -> None:
    missing = [c for c in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(c) is None]
    if missing:
        raise InputError(source, "backend", f"slurm: {', '.join(missing)} not found on PATH "
                                            "(run calib on a Slurm login node, or use --backend local)")


_FACTORIES: dict[str, Callable[["ResourcesSpec", LammpsInstall], Backend]] = {"local": _local, "slurm": _slurm}
_CHECKS: dict[str, Callable[[str], None]] = {"slurm": _check_slurm}
SURVIVES_DRIVER = frozenset({"slurm"})
"""Backends whose jobs outlive the driver that submitted them (a restarted driver re-attaches)."""


def names() -> list[str]:
    return sorted(_FACTORIES)


def check(name: str, source: str) -> None:
    """Refuse, before anything is written, a backend that is unknown or cannot run here."""
    if name not in _FACTORIES:
        raise InputError(source, "backend", f"{name!r} is not one of {', '.join(names())}")
    if name in _CHECKS:
        _CHECKS[name](source)


def make_backend(resources: "ResourcesSpec", lammps: LammpsInstall) -> Backend:
    """The backend ``resources.backend`` names, set up from the study's resources."""
    return _FACTORIES[resources.backend](resources, lammps)
