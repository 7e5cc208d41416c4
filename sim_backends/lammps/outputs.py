"""Read LAMMPS outputs: the log (version, thermo, performance, failures) and averaged files.

Pure parsing; units stay LAMMPS micro here except where a name says otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

_VERSION_RE = re.compile(r"^LAMMPS \((.+?)\)", re.M)
_LOOP_RE = re.compile(r"^Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", re.M)
_ERROR_RE = re.compile(r"^(ERROR(?: on proc \d+)?: .*)$", re.M)
_NONFINITE = {"nan", "-nan", "inf", "-inf", "+nan", "+inf"}
T = TypeVar("T")


@dataclass(frozen=True)
class RunStats:
    """Work done by all ``run`` commands of a log: atom-steps and loop wall time (s)."""

    atom_steps: int
    loop_time_s: float

    @property
    def atom_steps_per_s(self) -> float:
        return self.atom_steps / self.loop_time_s if self.loop_time_s > 0 else float("nan")


def lammps_version(log_text: str) -> str | None:
    """The version string in a LAMMPS log's first line, e.g. ``22 Jul 2025 - Update 4``."""
    m = _VERSION_RE.search(log_text)
    return m.group(1) if m else None


def thermo_rows(log_text: str) -> list[dict[str, str]]:
    """Every thermo row of every run in the log, as column name -> raw string."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in log_text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Step":
            header = parts
            continue
        if header is not None:
            if line.startswith("Loop time") or line.startswith("ERROR") or len(parts) != len(header):
                header = None if line.startswith(("Loop time", "ERROR")) else header
                continue
            if not re.fullmatch(r"\d+", parts[0]):
                continue
            rows.append(dict(zip(header, parts)))
    return rows


def run_stats(log_text: str) -> RunStats:
    """Sum of atoms x steps and loop time over every "Loop time" line: all ``run`` commands
    and the initial minimisation (its iterations count as steps)."""
    steps = 0
    secs = 0.0
    for m in _LOOP_RE.finditer(log_text):
        secs += float(m.group(1))
        steps += int(m.group(3)) * int(m.group(4))
    return RunStats(atom_steps=steps, loop_time_s=secs)


def failure_reason(log_text: str) -> str | None:
    """Why a run failed, read from its log, or None if the log shows no failure.

    Detects LAMMPS ``ERROR`` lines (lost atoms, unstable box, bad input, ...) and
    non-finite values in thermo output.
    """
    m = _ERROR_RE.search(log_text)
    if m:
        return m.group(1).strip()
    for row in thermo_rows(log_text):
        bad = [k for k, v in row.items() if v.lower() in _NONFINITE]
        if bad:
            return f"non-finite thermo value ({', '.join(bad)}) at step {row.get('Step')}"
    return None


def read_ave_time(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, values) of a one-value ``fix ave/time ... file`` output."""
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        return np.zeros(0), np.zeros(0)
    return data[:, 0], data[:, 1]


@dataclass(frozen=True)
class BlockStats:
    """Statistics of block means over an averaging window.

    mean: mean of the block means; sem: standard error of the mean from the block scatter
    (blocks treated as independent); drift_rel: relative change of the linear fit over the
    window, (fit(end) - fit(start)) / mean; n_blocks: number of blocks.
    """

    mean: float
    sem: float
    drift_rel: float
    n_blocks: int


def block_stats(steps: np.ndarray, values: np.ndarray) -> BlockStats:
    """Mean, standard error and drift of block means (see ``BlockStats``)."""
    n = len(values)
    if n == 0:
        return BlockStats(float("nan"), float("nan"), float("nan"), 0)
    mean = float(np.mean(values))
    sem = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    if n > 1 and steps[-1] > steps[0]:
        slope = float(np.polyfit(steps, values, 1)[0])
        drift = slope * float(steps[-1] - steps[0]) / mean
    else:
        drift = float("nan")
    return BlockStats(mean, sem, drift, n)


class SimulationFailed(RuntimeError):
    """A simulation ran but failed; ``reason`` is read from its log, ``workdir`` kept."""

    def __init__(self, reason: str, workdir: Path) -> None:
        super().__init__(reason)
        self.reason = reason
        self.workdir = workdir


def crash_reason(returncode: int | None, log_text: str) -> str:
    """Reason for a LAMMPS process that ended badly without an ERROR line in its log:
    the signal or exit status and the last command or thermo row it logged."""
    import signal as _signal

    if returncode is not None and returncode < 0:
        try:
            how = f"LAMMPS killed by signal {_signal.Signals(-returncode).name}"
        except ValueError:
            how = f"LAMMPS killed by signal {-returncode}"
    else:
        how = f"LAMMPS exited with status {returncode}"
    last = next((ln.strip() for ln in reversed(log_text.splitlines()) if ln.strip()), "")
    return f"{how}; last log line: {last[:200]}" if last else how


def checked_log(workdir: Path, log_name: str = "log.lammps") -> str:
    """The text of a finished run's log; raises ``SimulationFailed`` with the reason read
    from it when the run failed (empty text if the log is missing)."""
    log = Path(workdir) / log_name
    text = log.read_text(errors="replace") if log.exists() else ""
    reason = failure_reason(text)
    if reason:
        raise SimulationFailed(reason, Path(workdir))
    return text


def read_status(workdir: Path, name: str, missing: str, value: Callable[[str], T] = str) -> dict[str, T]:
    """The status file ``name`` a deck wrote in ``workdir`` (``print "k1 v1 k2 v2 ..." file``,
    more pairs ``append``-ed), as {key: value(value text)}: a key given again keeps its last
    value, a last word without a value is left out, and a text ``value`` cannot convert
    raises its error (``ValueError``). ``SimulationFailed(missing)`` when there is no file."""
    path = Path(workdir) / name
    if not path.exists():
        raise SimulationFailed(missing, Path(workdir))
    words = path.read_text().split()
    return {words[i]: value(words[i + 1]) for i in range(0, len(words) - 1, 2)}
