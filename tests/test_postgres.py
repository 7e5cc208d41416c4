"""PostgreSQL as the ledger (issue 12, item 4), on a real server the test starts
(``tests/services.Postgres``): bad database URLs are refused in seconds with one line, exit
2 and nothing written; a study runs, resumes and exports on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import parse_json_stdout, run_calib, write_study
from test_bad_input import Inputs, assert_bad_input

pytestmark = pytest.mark.postgres


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    return Inputs(tmp_path)


def _bad_urls(server) -> dict[str, str]:
    plain = server.url.replace("postgresql+psycopg://", "postgresql://")
    return {"unreachable": "postgresql://calib:x@127.0.0.1:1/calib",
            "unauthorised": plain.replace(":calib-test-pw@", ":wrong@"),
            "no such database": plain.rsplit("/", 1)[0] + "/nowhere",
            "malformed": "postgresql//calib@127.0.0.1/calib",
            "driver missing": "mysql://calib@127.0.0.1/calib"}


@pytest.mark.parametrize("case", ["unreachable", "unauthorised", "no such database", "malformed", "driver missing"])
def test_a_bad_database_url_is_refused_in_seconds_writing_nothing(postgres, inputs: Inputs, case):
    url = _bad_urls(postgres)[case]
    t0 = time.perf_counter()
    err = assert_bad_input(inputs, lambda: inputs.optimize("--storage", url), "--storage", "url")
    assert time.perf_counter() - t0 < 30
    assert "calib-test-pw" not in err  # the password is never echoed
    if case == "unauthorised":
        assert "password authentication failed" in err


@pytest.mark.lammps
def test_a_study_runs_resumes_and_exports_on_postgresql(postgres, tmp_path: Path):
    url = postgres.url.replace("postgresql+psycopg://", "postgresql://")  # as docs/operations.md writes it
    study = write_study(tmp_path, "pg_study", optimizer={"sampler": "sobol"})
    common = ("--study", str(study), "--fidelity", "smoke", "--storage", url, "--tracking-uri", "none",
              "--runs-dir", str(tmp_path / "runs"), "--json")
    first = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--trials", "2", *common, cwd=tmp_path))
    assert first["trials_complete"] + first["trials_failed"] == 2 and first["storage"] == url
    assert first["trials_complete"] >= 1, first["failures"]  # a ledger that only records failures proves little
    again = parse_json_stdout(run_calib("optimize", "--stage", "slurry", "--trials", "3", *common, cwd=tmp_path))
    assert again["trials_complete"] + again["trials_failed"] == 3
    assert again["trials_complete"] >= first["trials_complete"], again["failures"]  # none lost on resuming
    assert not (tmp_path / "runs" / "calib.db").exists()  # the ledger is the server, not a SQLite file
    table = run_calib("export", "--study", "pg_study", "--storage", url, "--format", "json", cwd=tmp_path)
    assert '"eps_AM"' in table.stdout
