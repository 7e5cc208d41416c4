"""Where calib will write: checks that a folder can be written (run before the first write,
so that bad input writes nothing) and new run folders that never collide."""

from __future__ import annotations

import os
from pathlib import Path

from calib.core.errors import InputError


def check_folder(path: Path, option: str = "--runs-dir", field: str | None = None) -> None:
    """``path`` must be a writable folder, or one that can be created (its first existing
    ancestor a writable folder); ``InputError`` on ``option`` (and ``field``, default the
    option's name) otherwise. Nothing is created."""
    field = field or option.lstrip("-").replace("-", "_")
    p = path
    while not p.exists() and not p.is_symlink() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        where = "is a file" if p == path else f"cannot be created: {p} is a file"
        raise InputError(option, field, f"{path} {where}, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(option, field, f"{path} cannot be written: {p} is not writable")


def check_sqlite_file(path: Path, option: str, field: str, folder_made: Path | None = None) -> None:
    """A SQLite database file that can be opened or created at ``path``: not a folder; a new
    file's folder must be writable, and must exist unless it is ``folder_made`` (a folder the
    command itself makes; SQLite creates the file but not its folder), and an existing file
    is taken as it is. ``folder_made=None`` for a writer that makes the folder itself
    (MLflow): the folder must be writable or creatable, whether or not the file exists."""
    if path.is_dir():
        raise InputError(option, field, f"{path} is a folder, not a SQLite database file")
    if folder_made is not None:
        if path.exists() or path.parent.resolve() == folder_made.resolve():
            return
        if not path.parent.is_dir():
            raise InputError(option, field, f"{path.parent} is not an existing folder (SQLite creates the "
                                            "database file, not its folder)")
    check_folder(path.parent, option, field)


def new_folder(parent: Path, stem: str) -> Path:
    """A new folder ``parent/stem`` (``stem-2``, ``stem-3``, ... if taken: two commands
    started in the same second get their own), created with its parents."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent / stem}: 999 folders of this name exist")
