"""``calib refine``: parameter sets a user chooses, run as trials of the same study.

The seed refined its Bayesian optimisation's best set by hand; here such sets become
trials of the study's own ledger and MLflow experiment, tagged ``manual`` (never taken for
model proposals), and the model learns from them like from any other trial.

A set names some free Table S1 keys; the others come from the base: the best trial's
values, overridden by ``--set``. Sets come from ``--set KEY=VALUE`` (one set), ``--file
sets.yaml`` (a list of mappings, or a mapping with ``sets:``) and ``--scan
KEY=LOW:HIGH:N`` (N evenly spaced values of KEY through the base; on the key's log scale
for a log axis). Every value is checked before anything is written: a key outside Table
S1, a fixed key, a value that is not a finite number or lies outside the study's bounds
(allowed with ``--allow-outside-bounds``, and then flagged on the trial), a malformed scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from objectives.yamlfile import read_yaml_file
from sim_backends.lammps.forcefield import TABLE_S1_KEYS

from calib.core.errors import InputError
from calib.ledger import MANUAL_ATTR, OUTSIDE_ATTR
from calib.study.space import ParameterSpace

MAX_SETS = 200


@dataclass(frozen=True)
class ManualSet:
    """One set to run: every free key's value, where it came from, and the keys outside
    the study's bounds."""

    params: dict[str, float]
    origin: str
    outside: tuple[str, ...] = field(default_factory=tuple)

    def user_attrs(self) -> dict:
        return {MANUAL_ATTR: self.origin, OUTSIDE_ATTR: list(self.outside)}


def _number(text: object, where: str, fld: str) -> float:
    if isinstance(text, bool):
        raise InputError(where, fld, f"not a number: {text!r}")
    try:
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(where, fld, f"not a number: {text!r}") from exc
    if not math.isfinite(v):
        raise InputError(where, fld, f"not a finite number: {text!r}")
    return v


def check_value(space: ParameterSpace, key: str, value: float, where: str, fld: str, allow_outside: bool,
                study: str) -> bool:
    """Refuse a key that is not a free key of the study or a value it cannot take; returns
    whether the value lies outside the study's bounds (allowed only with ``allow_outside``)."""
    if key not in TABLE_S1_KEYS:
        raise InputError(where, fld, f"{key!r} is not a Table S1 key (keys: {', '.join(TABLE_S1_KEYS)})")
    if key not in space.keys:
        raise InputError(where, fld, f"{key} is fixed at {space.fixed[key]:g} in study {study!r}; refine varies its "
                                     f"free keys ({', '.join(space.keys)})")
    axis = next(a for a in space.axes if a.key == key)
    if (key == "xu" and value < 0) or (key != "xu" and value <= 0):
        raise InputError(where, fld, f"{key} = {value:g} is not physical ({'xu must not be negative' if key == 'xu' else 'must be positive'})")
    if axis.low <= value <= axis.high:
        return False
    if not allow_outside:
        raise InputError(where, fld, f"{key} = {value:g} is outside the study's bounds [{axis.low:g}, {axis.high:g}] "
                                     "(--allow-outside-bounds runs it anyway, flagged)")
    return True


def parse_assignments(items: Sequence[str], where: str = "--set") -> dict[str, str]:
    """``KEY=VALUE`` strings -> {key: value text}; a malformed one or a repeated key is refused."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise InputError(where, item, "expected KEY=VALUE, e.g. eps_CBD=0.12")
        if key in out:
            raise InputError(where, key, "given twice")
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class Scan:
    key: str
    low: float
    high: float
    n: int

    def values(self, log: bool) -> list[float]:
        if log:
            return [float(v) for v in np.geomspace(self.low, self.high, self.n)]
        return [float(v) for v in np.linspace(self.low, self.high, self.n)]


def parse_scan(text: str) -> Scan:
    """``KEY=LOW:HIGH:N`` (N >= 2 values from LOW to HIGH, LOW < HIGH)."""
    key, eq, rest = text.partition("=")
    parts = rest.split(":")
    if not eq or not key.strip() or len(parts) != 3:
        raise InputError("--scan", text, "expected KEY=LOW:HIGH:N, e.g. eps_CBD=0.05:0.2:5")
    low = _number(parts[0], "--scan", text)
    high = _number(parts[1], "--scan", text)
    try:
        n = int(parts[2])
    except ValueError as exc:
        raise InputError("--scan", text, f"N must be a whole number of values, got {parts[2]!r}") from exc
    if n < 2 or n > MAX_SETS:
        raise InputError("--scan", text, f"N must be 2 to {MAX_SETS}, got {n}")
    if not low < high:
        raise InputError("--scan", text, f"LOW must be below HIGH, got {low:g} >= {high:g}")
    return Scan(key.strip(), low, high, n)


def read_sets_file(path: Path) -> list[dict]:
    """The sets of a YAML file: a list of mappings, or a mapping with a ``sets`` list."""
    where = str(path)
    raw = read_yaml_file(path, partial(InputError, where), "sets file not found")
    if isinstance(raw, dict) and set(raw) == {"sets"}:
        raw = raw["sets"]
    if not isinstance(raw, list) or not raw:
        raise InputError(where, "(top level)", "expected a list of parameter sets (mappings KEY: VALUE), "
                                               "or a mapping with 'sets:' holding one")
    for i, s in enumerate(raw):
        if not isinstance(s, dict) or not s:
            raise InputError(where, f"sets[{i}]", "expected a mapping KEY: VALUE")
    return raw


def build_sets(space: ParameterSpace, study: str, best: Mapping[str, float] | None, assign: Mapping[str, str],
               file_sets: Sequence[Mapping] = (), file_name: str = "", scans: Sequence[Scan] = (),
               allow_outside: bool = False) -> list[ManualSet]:
    """Every set to run (see the module docstring), checked; refuses nothing to run and,
    without a completed trial, a set that leaves a free key unnamed."""
    if not assign and not file_sets and not scans:
        raise InputError("--set", "(option)", "nothing to run: give --set KEY=VALUE, --file SETS.yaml or "
                                              "--scan KEY=LOW:HIGH:N")
    outside: set[str] = set()
    base = dict(best or {})
    for key, text in assign.items():
        v = _number(text, "--set", key)
        if check_value(space, key, v, "--set", key, allow_outside, study):
            outside.add(key)
        base[key] = v

    def complete(values: dict[str, float], origin: str, where: str, fld: str, out: set[str]) -> ManualSet:
        full = {**base, **values}
        missing = [k for k in space.keys if k not in full]
        if missing:
            raise InputError(where, fld, f"study {study!r} has no completed trial to take {', '.join(missing)} "
                                         "from: name every free key")
        return ManualSet({k: float(full[k]) for k in space.keys}, origin,
                         tuple(k for k in space.keys if k in out))

    sets: list[ManualSet] = []
    for i, s in enumerate(file_sets):
        vals, out = {}, set(k for k in outside if k not in s)
        for key, text in s.items():
            fld = f"sets[{i}].{key}"
            v = _number(text, file_name, fld)
            if check_value(space, str(key), v, file_name, fld, allow_outside, study):
                out.add(str(key))
            vals[str(key)] = v
        sets.append(complete(vals, f"--file {file_name}", file_name, f"sets[{i}]", out))
    for scan in scans:
        axis = next((a for a in space.axes if a.key == scan.key), None)
        for v in (scan.low, scan.high):
            check_value(space, scan.key, v, "--scan", scan.key, allow_outside, study)
        assert axis is not None
        for v in scan.values(axis.log):
            out = {k for k in outside if k != scan.key} | ({scan.key} if not axis.low <= v <= axis.high else set())
            sets.append(complete({scan.key: v}, f"--scan {scan.key}={scan.low:g}:{scan.high:g}:{scan.n}", "--scan",
                                 scan.key, out))
    if not sets:  # --set alone: the one set it names
        sets.append(complete({}, "--set " + " ".join(f"{k}={v}" for k, v in assign.items()), "--set", "(option)",
                             outside))
    if len(sets) > MAX_SETS:
        raise InputError("--scan" if scans else "--file", "(option)", f"{len(sets)} sets; at most {MAX_SETS} a run")
    return sets
