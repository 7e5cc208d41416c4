"""calib's CLI as a click command tree, for mkdocs-click (``docs/reference/cli.md``:
``:module: cli_click``, ``:command: cli``).

Built from ``calib.cli.app`` at every build, so the CLI reference is the CLI's own help:
``typer.main.get_command(app)`` gives typer's command tree; typer keeps its own copy of
click (``typer._click``), whose options mkdocs-click does not recognise, so each command
and option is carried over into a plain ``click`` object with the same names, help, type,
default and flags (``cli``). ``typer_cli`` is typer's tree itself.
"""

from __future__ import annotations

import typing
from pathlib import Path

import click
import typer.main

from gen_reference import ensure_importable

REPO = ensure_importable()

from calib.cli import app  # noqa: E402

typer_cli = typer.main.get_command(app)


class _Named(click.ParamType):
    """A parameter type that only carries the name the CLI's help shows."""

    def __init__(self, name: str) -> None:
        self.name = name


_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _type_name(param, ctx) -> str:
    """The option's value type from its annotation (``list[X]``: X, repeatable); else what
    its help line shows."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    repeat = typing.get_origin(annotation) in (list, tuple)
    base = typing.get_args(annotation)[0] if repeat else annotation
    if base in _TYPE_NAMES:
        return _TYPE_NAMES[base] + (", repeatable" if repeat or param.multiple else "")
    record = param.get_help_record(ctx)
    return record[0].split(" ", 1)[1].strip("<>").lower() if record and " " in record[0] else "text"


def _default(value):
    """A default as the docs should show it: paths inside the checkout relative to it."""
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(REPO))
        except ValueError:
            return str(value)
    return value


def _option(param, ctx) -> click.Option:
    decls = [param.name, *param.opts]
    if param.secondary_opts:
        decls = [param.name, "/".join([param.opts[0], *param.secondary_opts]), *param.opts[1:]]
    kwargs = dict(help=param.help, required=param.required, multiple=param.multiple, hidden=param.hidden,
                  default=_default(param.default))
    if param.is_flag:
        kwargs.update(is_flag=True)
    else:
        kwargs.update(type=_Named(_type_name(param, ctx)))
    return click.Option(decls, **kwargs)


def _command(name: str, command) -> click.Command:
    from typer import _click as tclick

    ctx = tclick.Context(command, info_name=name)
    params = [_option(p, ctx) for p in command.params if p.opts and p.name != "help"]
    return click.Command(name, params=params, help=command.help, short_help=command.short_help,
                         hidden=command.hidden, add_help_option=False)


cli = click.Group("calib", help=typer_cli.help, add_help_option=False,
                  commands={name: _command(name, cmd) for name, cmd in typer_cli.commands.items()})
"""The CLI for mkdocs-click (``--help``, which every command takes, left out of the tables)."""
