"""Reading the YAML files users write (study files, datasets, ``calib refine --file``): UTF-8
text only, and a key given twice in one mapping is refused (plain YAML loaders keep the
last value silently). Every YAML file the CLI reads goes through ``read_yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


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
