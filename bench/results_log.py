"""The benches' results files: one JSON object per line, one line per run, so that a long
measurement can stop and continue (a run already in the file is not repeated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Hashable


def load_results(path: Path, key_of: Callable[[dict], Hashable]) -> dict:
    """The runs in ``path`` by ``key_of(run)`` (a later line replaces an earlier one); empty
    when the file does not exist."""
    if not path.exists():
        return {}
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {key_of(r): r for r in rows}


def append_result(path: Path, rec: dict) -> None:
    """Add one run to ``path`` (created with its folder if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")
