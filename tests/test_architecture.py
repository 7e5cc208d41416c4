"""Imports run one way: calib -> objectives, calib -> sim_backends; never back up, and
objectives and sim_backends do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {"objectives": {"calib", "sim_backends"}, "sim_backends": {"calib", "objectives"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_or_sideways_imports(package):
    bad = []
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN[package]]
    assert not bad, bad
