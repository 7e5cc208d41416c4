"""The compression bench's chunked runs (``bench/compression.py --chunk-steps``): a k = 1 run
of the seed protocol (hours at 200 beads) split into segments chained by restart files, so it
can continue across invocations. Against the single run: the same pressure ramp, the same
density blocks (real LAMMPS, a tiny protocol), and a run cut and resumed gives the same
result as one never cut."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import compression as C  # noqa: E402
from sim_backends.lammps.outputs import read_ave_time  # noqa: E402
from sim_backends.lammps.slurry import DECK_FILE, DENSITY_FILE  # noqa: E402

STEPS, CHUNK, BEADS = 4000, 1000, 40


def _args(**kw):
    base = dict(steps=STEPS, beads=BEADS, neighbor="bin", chunk_steps=CHUNK, timeout_s=None, segments=None)
    return argparse.Namespace(**{**base, **kw})


def test_segments_keep_the_ramp_fix_ids_and_append_the_blocks(tmp_path: Path):
    C.prepare(_args(), "table-s1", 1, 1, "none", tmp_path)
    deck = (tmp_path / DECK_FILE).read_text()
    decks = C.segment_decks(deck, STEPS, CHUNK)
    assert len(decks) == 4
    for i, d in enumerate(decks):
        assert re.findall(r"^run .*$", d, re.M) == [f"run {CHUNK} start 0 stop {STEPS}"]  # the single run's ramp
        assert re.findall(r"^fix (\S+) ", d, re.M) == ["rho_blocks", "npt"]
        assert ("velocity" in d, "minimize" in d, "read_data" in d) == (i == 0,) * 3
        assert (f"read_restart seg_{i}.restart" in d) == (i > 0)
        assert (f"write_restart seg_{i + 1}.restart" in d) == (i < 3)
        assert (f" append {DENSITY_FILE} " in d) == (i > 0) and (f" file {DENSITY_FILE} " in d) == (i == 0)
    assert "write_data final.data" in decks[-1] and "write_data" not in "".join(decks[:-1])
    with pytest.raises(ValueError, match="multiple of the density block"):
        C.segment_decks(deck, STEPS, 1030)
    with pytest.raises(ValueError, match="one 'run"):
        C.segment_decks(deck + "run 10\n", STEPS, CHUNK)


@pytest.mark.lammps
def test_a_cut_and_resumed_chunked_run_reads_as_the_single_run(tmp_path: Path):
    """Cut after 2 of 4 segments (and a cut third segment's lines appended), then resumed."""
    single, chunked = tmp_path / "single", tmp_path / "chunked"
    rec1 = C.one(_args(chunk_steps=None), "table-s1", 1, 1, "none", single)
    wd = chunked / "table-s1_p1_k1_none_bin"
    assert C.one(_args(segments=2), "table-s1", 1, 1, "none", chunked)["stopped"]  # an invocation that stops
    prog = json.loads((wd / C.PROGRESS).read_text())
    assert prog["done"] == 2 and prog["density_bytes"] == (wd / DENSITY_FILE).stat().st_size
    with open(wd / DENSITY_FILE, "a") as fh:  # what a segment cut mid-way had appended
        fh.write("3100 99.0\n")
    rec2 = C.one(_args(), "table-s1", 1, 1, "none", chunked)
    assert rec2["session_starts"] == [0, 2] and rec2["segments"] == 4 and rec2["returncode"] == 0
    steps1, _ = read_ave_time(single / "table-s1_p1_k1_none_bin" / DENSITY_FILE)
    steps2, _ = read_ave_time(wd / DENSITY_FILE)
    assert list(steps2) == list(steps1) == list(range(STEPS // 200, STEPS + 1, STEPS // 200))  # every block, once
    np.testing.assert_allclose(rec2["trajectory_g_cm3"], rec1["trajectory_g_cm3"], rtol=5e-4)  # restart round-off: 1.6e-4 at most here
    assert rec2["end_density_g_cm3"] == pytest.approx(rec1["end_density_g_cm3"], rel=1e-4)
    assert not (wd / "seg_1.restart").exists()  # only the latest restart is kept
