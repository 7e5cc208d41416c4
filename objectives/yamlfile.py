"""Reading the YAML files users write (study files, datasets, ``calib refine --file``): UTF-8
text only, and a key given twice in one mapping is refused (plain YAML loaders keep the
last value silently). Every YAML file the CLI reads goes through ``read_yaml``;
``read_yaml_file`` and ``load_yaml_model`` add what every reader does around it (a missing
file, a document that is not a mapping, pydantic validation), each problem raised as the
reader's own one-line error naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ErrorFactory = Callable[[str, str], Exception]
"""Builds the reader's own error from (field, message), the file already bound (e.g.
``functools.partial(InputError, str(path))``)."""

M = TypeVar("M", bound=BaseModel)


class YamlFileError(ValueError):
    """A YAML file that cannot be read; ``path``, ``field`` and ``message`` say where and why
    (``field``: ``(file)`` or the dotted path of a key given twice)."""

    def __init__(self, path: Path, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path = path
        self.field = field
        self.message = message


class _DuplicateKey(yaml.MarkedYAMLError):
    def __init__(self, field: str, key: object, line: int) -> None:
        super().__init__(problem=f"duplicate key {key!r}")
        self.field = field
        self.key = key
        self.line = line


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (merge keys ``<<``
    may still be overridden, as YAML intends)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths: dict[int, str] = {}
        self._name_paths(node, "")
        return super().construct_document(node)

    def _name_paths(self, node: yaml.Node, path: str) -> None:
        """Remember the dotted path of every mapping (for the error's field)."""
        stack = [(node, path)]
        seen: set[int] = set()
        while stack:
            n, p = stack.pop()
            if id(n) in seen:  # aliases may repeat (or nest) a node
                continue
            seen.add(id(n))
            if isinstance(n, yaml.MappingNode):
                self._paths[id(n)] = p
                for k, v in n.value:
                    key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                    stack.append((v, f"{p}.{key}" if p else str(key)))
            elif isinstance(n, yaml.SequenceNode):
                stack.extend((v, f"{p}[{i}]") for i, v in enumerate(n.value))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:  # an unhashable key: SafeLoader refuses it below
                    continue
                if dup:
                    parent = self._paths.get(id(node), "")
                    field = f"{parent}.{key}" if parent else str(key)
                    raise _DuplicateKey(field, key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The data of a YAML file, which must be UTF-8 text (a byte-order mark is allowed) with
    no key given twice in a mapping; ``YamlFileError`` naming the file (and key) otherwise.
    The caller checks that the file exists."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlFileError(path, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise YamlFileError(path, "(file)", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                                            "save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise YamlFileError(path, exc.field, f"key {exc.key!r} given twice (again on line {exc.line}); "
                                             "remove one: YAML would keep only the last") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise YamlFileError(path, "(file)", f"malformed YAML ({exc.__class__.__name__}{at})") from exc


def read_yaml_file(path: Path, error: ErrorFactory, not_found: str) -> Any:
    """The data of the YAML file ``path`` (``read_yaml``); raises ``error(field, message)``:
    ``("(file)", not_found)`` when there is no such file, and the field and message of the
    ``YamlFileError`` when it cannot be read (not UTF-8, malformed, a key given twice)."""
    path = Path(path)
    if not path.is_file():
        raise error("(file)", not_found)
    try:
        return read_yaml(path)
    except YamlFileError as exc:
        raise error(exc.field, exc.message) from exc


def first_error(exc: ValidationError, lift_field: bool = False) -> tuple[str, str]:
    """(field, message) of the first error of a pydantic ``ValidationError``: the field is the
    dotted path of its location (``(top level)`` for the whole document), the message is
    pydantic's without its ``Value error, `` prefix. ``lift_field``: a model-level validator
    that names the field at the start of its message (``name: rest``, ``name`` one word the
    location does not already end with) reports field ``<location>.name``, message ``rest``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if lift_field and ": " in msg and not loc.endswith(msg.split(": ", 1)[0]):
        head, rest = msg.split(": ", 1)
        if " " not in head:
            loc = f"{loc}.{head}" if loc else head
            msg = rest
    return loc or "(top level)", msg


def load_yaml_model(path: Path, model: type[M], error: ErrorFactory, not_found: str,
                    not_mapping: str = "expected a mapping",
                    describe: Callable[[ValidationError], tuple[str, str]] = first_error) -> M:
    """The YAML file ``path`` validated as ``model``; raises ``error(field, message)`` for a
    missing or unreadable file (``read_yaml_file``), for a document that is not a mapping
    (``("(top level)", not_mapping)``) and for the first validation error (``describe(exc)``
    gives its field and message; default ``first_error``)."""
    raw = read_yaml_file(path, error, not_found)
    if not isinstance(raw, dict):
        raise error("(top level)", not_mapping)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(*describe(exc)) from exc
