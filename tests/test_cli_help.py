"""``calib --help`` and every ``calib COMMAND --help`` read at 80 columns (and at 120): every
option's name in full (no ellipsis), no line wider than the terminal, no type placeholders
(``<bool>``, ``<str>``, ``<path>``), a flag shown as the flag alone, and every value
option with its metavar. Run in this process (``typer.testing.CliRunner``); click reads the
width from ``COLUMNS``, as rich did."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from calib.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


def _help(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="calib", env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_listed():
    assert {"optimize", "refine", "predict", "report", "pipeline", "reproduce", "export"} <= set(COMMANDS)
    text = _help([], 80)
    for name in COMMANDS:
        assert re.search(rf"^  {name}  +\S", text, re.M), text  # with its one-line summary
    commands = text.split("Commands:", 1)[1]
    assert "..." not in commands and "\u2026" not in commands, text  # no summary cut short
    assert max(len(line) for line in text.splitlines()) <= 80, text


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", COMMANDS)
def test_help_names_every_option_in_full_within_the_width(name: str, columns: int):
    command = typer.main.get_command(app).commands[name]
    text = _help([name], columns)
    wide = [line for line in text.splitlines() if len(line) > columns]
    assert not wide, text
    assert "\u2026" not in text and not re.search(r"<(bool|str|path|int|float|list)", text, re.I), text
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{opt} not whole in:\n{text}"
        row = re.search(rf"^  {re.escape(param.opts[0])}(?P<rest>.*)$", text.split("\nOptions:\n", 1)[1], re.M)
        assert row, f"no row for {param.opts[0]} in:\n{text}"
        if param.is_flag:  # the flag alone, then its help
            assert re.match(r"(  +\S|$)", row["rest"]), row[0]
        else:  # NAME, FILE, URL, N, ... (upper case)
            assert re.match(r" [A-Z][A-Z0-9=:|_.-]*(  +\S|$)", row["rest"]), row[0]


def test_option_names_are_not_broken_across_lines():
    """click's wrapper would break ``--runs-dir`` after ``--runs-`` (and words at any hyphen)."""
    for name in COMMANDS:
        text = _help([name], 80)
        assert not re.search(r"\w-\n", text), text
