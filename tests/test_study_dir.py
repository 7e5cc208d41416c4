"""A study's trial folder is claimed by its uid; a folder of another study is moved aside, never deleted."""

from __future__ import annotations

from pathlib import Path

from calib.execution.study_dir import claim_study_dir


def test_claim_new_and_own_folder(tmp_path: Path):
    d = tmp_path / "s"
    assert claim_study_dir(d, "abc") is None
    (d / "trial_00000").mkdir()
    assert claim_study_dir(d, "abc") is None  # our own: kept as is
    assert (d / "trial_00000").is_dir()


def test_foreign_folder_is_moved_aside(tmp_path: Path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "trial_00000").mkdir()
    (d / "trial_00000" / "log.lammps").write_text("old run")
    warning = claim_study_dir(d, "new-uid")
    assert warning is not None and "moved to" in warning
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("s.previous-")]
    assert len(aside) == 1 and (aside[0] / "trial_00000" / "log.lammps").read_text() == "old run"
    assert (d / ".calib_study_uid").read_text().strip() == "new-uid"
    assert not (d / "trial_00000").exists()
