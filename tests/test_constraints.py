"""Reproducible installs: the README's two commands and ``.ci/run`` install with
``constraints.txt`` (known-good versions of every package calib and its tests pull in), and
the environment the tests run in is exactly that one. How to refresh the file:
docs/installation.md#constraints."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped), by canonical name."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt: {line!r} is not name==version"
        out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def mismatches(pinned: dict[str, str]) -> list[str]:
    """Pinned packages whose installed version differs (local labels such as +cpu ignored)."""
    bad = []
    for name, want in sorted(pinned.items()):
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            bad.append(f"{name}: not installed (constraints.txt pins {want})")
            continue
        if Version(got).public != Version(want).public:
            bad.append(f"{name}: {got} installed, constraints.txt pins {want}")
    return bad


def test_installed_versions_are_the_constrained_ones():
    assert not mismatches(pins(CONSTRAINTS.read_text()))


def test_every_dependency_of_calib_is_pinned():
    pinned = pins(CONSTRAINTS.read_text())
    reqs = [Requirement(r) for r in metadata.requires("calib") or []]
    missing = [r.name for r in reqs if canonicalize_name(r.name) not in pinned and r.name != "calib"]
    assert not missing, missing


def test_the_commands_install_with_the_constraints():
    commands = [line for path in ("README.md", "docs/installation.md", ".ci/run")
                for line in (REPO / path).read_text().splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) >= 5, commands  # the README's two, the installation page's two, CI's one
    assert all(" -c constraints.txt " in c for c in commands), commands


def test_a_changed_version_is_caught():
    assert mismatches({"pytest": "0.0.1"}) == [f"pytest: {metadata.version('pytest')} installed, "
                                               "constraints.txt pins 0.0.1"]
    assert mismatches({"no-such-package-calib": "1.0"})[0].startswith("no-such-package-calib: not installed")
