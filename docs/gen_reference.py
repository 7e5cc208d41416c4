"""The study-file reference page, generated from the settings models themselves.

Run by the MkDocs hook (``docs/hooks.py``) at every build, so the page cannot drift from the
code: the study model (``calib.study.load.study_spec_model``: ``calib.spec.study_file.StudyBase`` plus every
registered stage's sections), its sub-models, and the dataset models
(``objectives.dataset.Dataset`` and below). For each model: its docstring and a table of
field, type, default, constraints and description.

Where a field's description comes from, first match wins: ``Field(description=...)``; the
attribute docstring under the field (read from the source with ``ast``); the labelled part of
the model's docstring (``name: text.``, ``name_a, name_b: text.``); the sentence of the
model's docstring that names the field in double backticks. Otherwise the cell is empty and
the model's docstring above the table is the description.

``python docs/gen_reference.py`` prints the page.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Iterable

PAGE = "reference/study-file.md"
"""Where the page goes in the site (relative to ``docs_dir``)."""


def find_repo(start: Path | None = None) -> Path:
    """The calib checkout: ``$CALIB_REPO`` if set; else the first folder at or above
    ``start`` (default: this file's folder) holding ``calib/__init__.py`` and
    ``objectives/``; else the folder above the installed ``calib`` package (an editable
    install points at the checkout)."""
    if os.environ.get("CALIB_REPO"):
        return Path(os.environ["CALIB_REPO"]).resolve()
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        if (folder / "calib" / "__init__.py").is_file() and (folder / "objectives").is_dir():
            return folder
    import calib  # the installed package

    return Path(calib.__file__).resolve().parent.parent


def ensure_importable(start: Path | None = None) -> Path:
    """Put the checkout on ``sys.path`` (first) and return it."""
    repo = find_repo(start)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return repo


# ---------------------------------------------------------------- docstrings

def clean_doc(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip()


def md_text(text: str) -> str:
    """reST-ish docstring text as Markdown: ``x`` -> `x`; paragraphs kept."""
    text = text.replace("``", "`")
    return text


def one_line(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, first letter capitalised."""
    text = " ".join(md_text(text).split()).replace("|", "\\|")
    first = text.split(" ", 1)[0]
    return text if "_" in first else text[:1].upper() + text[1:]


def attribute_docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of the string literals right below annotated assignments in the
    class body of ``cls`` and its bases (the nearest class wins)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__.startswith("pydantic"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                out[node.target.id] = inspect.cleandoc(nxt.value.value)
    return out


_LABEL = re.compile(
    r"(?P<label>[A-Za-z_][A-Za-z0-9_]*(?:\s*(?:,|/|and|,\s*and)\s*[A-Za-z_][A-Za-z0-9_]*)*"
    r"(?:\s*\([^)]{0,20}\))?):\s")


def _starts_clause(text: str, pos: int) -> bool:
    """``pos`` starts the docstring, a paragraph, a sentence or a ``;`` clause (a label
    there is a field's description, not a word that a wrapped line happens to begin with)."""
    before = text[:pos]
    if not before.strip() or before.rstrip(" ").endswith("\n\n"):
        return True
    return before.rstrip()[-1] in ".;" and before[-1].isspace()


def labelled_parts(doc: str, fields: Iterable[str], spans: list[tuple[int, int]] | None = None) -> dict[str, str]:
    """The parts of a model docstring that describe fields: ``name: text`` (also
    ``a, b: text``, ``a / b: text``) at the start of a sentence or clause, up to the next
    such label or blank line; only labels whose names are all fields of the model count.
    ``spans`` (if given) receives where each part lies in ``doc``, label included."""
    fields = set(fields)
    hits = []
    for m in _LABEL.finditer(doc):
        if not _starts_clause(doc, m.start("label")):
            continue
        names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"\([^)]*\)", "", m.group("label")))
        names = [n for n in names if n != "and"]
        if names and all(n in fields for n in names):
            hits.append((m.start("label"), m.end(), names))
    out: dict[str, str] = {}
    for i, (start, end, names) in enumerate(hits):
        stop = hits[i + 1][0] if i + 1 < len(hits) else len(doc)
        para = doc.find("\n\n", end)
        if 0 <= para < stop:
            stop = para
        # a later sentence about other fields is not part of this description
        for sentence in re.finditer(r"(?<=\.)\s+(?=[A-Z])", doc[end:stop]):
            rest = doc[end + sentence.end():stop]
            nxt = rest.split(". ", 1)[0]
            if any(f"``{f}``" in nxt for f in fields - set(names)):
                stop = end + sentence.start()
                break
        text = doc[end:stop].strip().rstrip(";").rstrip()
        if text and text[-1] not in ".)":
            text += "."
        if len(names) > 1:
            text = f"({', '.join(names)}) {text}"
        for n in names:
            out.setdefault(n, text)
        if spans is not None:
            spans.append((start, stop))
    return out


def residual_doc(doc: str, spans: list[tuple[int, int]]) -> str:
    """``doc`` without the parts that the table shows as field descriptions."""
    for start, stop in sorted(spans, reverse=True):
        doc = doc[:start] + doc[stop:]
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def mentioning_sentence(doc: str, name: str, fields: Iterable[str]) -> str | None:
    """The first sentence of ``doc`` that names ``name`` in double backticks and at most one
    other field (a sentence about many fields, or the whole docstring, is left to the
    docstring shown above the table)."""
    flat = " ".join(doc.split())
    for sentence in re.split(r"(?<=\.)\s+(?=[A-Za-z`(])", flat):
        if f"``{name}``" not in sentence or sentence == flat:
            continue
        if sum(f"``{f}``" in sentence for f in fields) <= 2:
            return sentence
    return None


# ---------------------------------------------------------------- types

def is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def anchor(model: type) -> str:
    return model.__name__.lower()


def nested_models(tp: Any) -> list[type]:
    """Every pydantic model inside an annotation (``dict[str, Bound]`` -> [Bound])."""
    if is_model(tp):
        return [tp]
    out: list[type] = []
    for arg in typing.get_args(tp):
        for m in nested_models(arg):
            if m not in out:
                out.append(m)
    return out


def constraint_text(metadata: Iterable[Any]) -> list[str]:
    """Human constraints of annotated-types / pydantic metadata: `> 0`, `<= 1`, pattern."""
    out = []
    for m in metadata:
        name = type(m).__name__
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None and name.lower() in (attr, "interval", "_pydanticgeneralmetadata", "fieldmetadata"):
                out.append(f"{sym} {v:g}" if isinstance(v, (int, float)) else f"{sym} {v}")
        if getattr(m, "min_length", None) is not None:
            out.append(f"at least {m.min_length} items")
        if getattr(m, "max_length", None) is not None:
            out.append(f"at most {m.max_length} items")
        if getattr(m, "pattern", None):
            out.append(f"matches `{m.pattern}`")
    return out


def type_text(tp: Any) -> str:
    """An annotation in Markdown, models linked to their section."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if is_model(tp):
        return f"[{tp.__name__}](#{anchor(tp)})"
    if origin is typing.Annotated:
        base = type_text(args[0])
        cons = constraint_text(args[1:])
        return f"{base} ({', '.join(cons)})" if cons else base
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args)
    if origin in (dict, typing.Dict):
        return f"mapping {type_text(args[0])} → {type_text(args[1])}"
    if origin in (tuple, typing.Tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_text(args[0])}"
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    if origin in (list, typing.List):
        return f"list of {type_text(args[0])}"
    if isinstance(tp, type):
        return {"str": "string", "float": "number", "int": "integer", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        r = repr(v)
        return r if len(r) <= 10 else f"{v:.6g}"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def default_text(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            v = field.default_factory()
        except TypeError:
            return "(computed)"
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        v = field.default
    if is_model(type(v)):
        return "its fields' defaults"
    return f"`{yaml_value(v)}`"


# ---------------------------------------------------------------- page

def own_doc(model: type) -> str:
    """The model's own docstring ('' when it only inherits one)."""
    own = model.__dict__.get("__doc__")
    return clean_doc(model) if own else ""


def field_rows(model: type, extra_desc: dict[str, str] | None = None) -> list[str]:
    doc = own_doc(model)
    attr_docs = attribute_docstrings(model)
    labelled = labelled_parts(doc, model.model_fields)
    rows = ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, f in model.model_fields.items():
        desc = (f.description or attr_docs.get(name) or labelled.get(name)
                or (extra_desc or {}).get(name) or mentioning_sentence(doc, name, model.model_fields) or "")
        cons = constraint_text(f.metadata)
        rows.append(f"| `{name}` | {type_text(f.annotation)} | {default_text(f)} | {', '.join(cons)} | "
                    f"{one_line(desc)} |")
    return rows


def model_section(model: type, title: str | None = None, intro: str = "",
                  extra_desc: dict[str, str] | None = None, level: int = 3) -> list[str]:
    lines = [f"{'#' * level} {title or model.__name__} {{ #{anchor(model)} }}", ""]
    lines.append(f"`{model.__module__}.{model.__qualname__}`")
    lines.append("")
    if intro:
        lines += [intro, ""]
    doc = own_doc(model)
    spans: list[tuple[int, int]] = []
    labelled_parts(doc, model.model_fields, spans)
    rest = residual_doc(doc, spans)
    if rest:
        lines += [md_text(rest), ""]
    lines += field_rows(model, extra_desc)
    lines.append("")
    return lines


def walk(roots: Iterable[type], skip: set[type] = frozenset()) -> list[type]:
    """The models reachable from ``roots`` through field annotations, roots first, each once."""
    out: list[type] = []
    todo = list(roots)
    while todo:
        m = todo.pop(0)
        if m in out or m in skip:
            continue
        out.append(m)
        for f in m.model_fields.values():
            todo.extend(x for x in nested_models(f.annotation) if x not in out)
    return out


def builtin_fidelities_table() -> list[str]:
    from calib.spec.fidelity import BUILTIN_FIDELITIES, Fidelity

    names = list(BUILTIN_FIDELITIES)
    rows = ["| field | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for field in Fidelity.model_fields:
        vals = [getattr(BUILTIN_FIDELITIES[n], field) for n in names]
        if field == "density_bias_source":
            vals = ["(set)" if v else "null" for v in vals]
            rows.append(f"| `{field}` | " + " | ".join(vals) + " |")
            continue
        rows.append(f"| `{field}` | " + " | ".join(f"`{yaml_value(v)}`" for v in vals) + " |")
    return rows


def render() -> str:
    """The whole page (Markdown)."""
    ensure_importable()
    from calib import stages
    from calib.spec.fidelity import Fidelity
    from calib.spec.study_file import StudyBase
    from calib.study.load import study_spec_model
    from objectives.dataset import Dataset

    spec = study_spec_model()
    sections = stages.registry.all_sections()
    owners: dict[str, list[str]] = {}
    for sname in stages.names():
        for sec in stages.get(sname).sections:
            owners.setdefault(sec, []).append(sname)
    section_desc = {sec: f"Settings read by stage{'s' if len(o) > 1 else ''} {', '.join(o)}; "
                         f"see [{sections[sec].__name__}](#{anchor(sections[sec])}). Leave it out for the defaults."
                    for sec, o in owners.items()}

    out = [
        "# Study file reference",
        "",
        "!!! note \"Generated\"",
        "    This page is generated at every build of the site (`docs/gen_reference.py`) from the",
        "    pydantic models a study file and a dataset file are validated against; it cannot",
        "    drift from the code. The worked examples are the files in `studies/` and",
        "    `experiments_data/`.",
        "",
        "Every model refuses keys it does not know, and every number must be finite (YAML's",
        "`.nan` and `.inf` are refused); a bad value stops `calib` with one line naming the file",
        "and the field (exit status 2) before anything is written. *required* fields have no",
        "default. Types link to the model of a nested section.",
        "",
        "## Stages and their sections",
        "",
        "Each stage is a plug-in (`calib/stages/`); the sections it reads are top-level keys of",
        "the study file, shared between stages that name the same model.",
        "",
        "| stage | starts from | targets it can score | sections it reads |",
        "|---|---|---|---|",
    ]
    for sname in stages.names():
        st = stages.get(sname)
        secs = ", ".join(f"[`{k}`](#{anchor(m)})" for k, m in st.sections.items())
        out.append(f"| `{sname}` | {('`' + st.upstream + '` state') if st.upstream else 'a random placement'} | "
                   f"{', '.join(f'`{t}`' for t in st.targets)} | {secs} |")
    out += ["", "## Study file (`studies/*.yaml`)", ""]
    out += model_section(spec, title="Study file: top level",
                         intro=("The model a study file is validated against: `calib.spec.study_file.StudyBase` "
                                "(below its docstring) joined with every registered stage's sections "
                                "(`calib.study.load.study_spec_model`)."),
                         extra_desc=section_desc, level=3)
    section_models = list(dict.fromkeys(sections.values()))
    shared = walk([m for f in StudyBase.model_fields.values() for m in nested_models(f.annotation)],
                  skip={Fidelity})
    out += ["## Study sub-models", ""]
    for m in shared:
        out += model_section(m)
    out += model_section(Fidelity, title="Fidelity (`fidelities.<name>`)",
                         intro=("A study's `fidelities:` may override fields of a built-in fidelity (give only "
                                "those it changes) or define one of its own (then every *required* field)."))
    out += ["Built-in fidelities (`calib.spec.fidelity.BUILTIN_FIDELITIES`):", ""]
    out += builtin_fidelities_table()
    out += [""]
    fidelity_parts = walk([m for f in Fidelity.model_fields.values() for m in nested_models(f.annotation)],
                          skip=set(shared))  # e.g. the transfer map
    for m in fidelity_parts:
        out += model_section(m)
    out += ["", "## Stage sections", ""]
    seen = set(shared) | {Fidelity} | set(fidelity_parts)
    for m in walk(section_models, skip=seen):
        keys = [k for k, v in sections.items() if v is m]
        intro = f"Study-file section {', '.join(f'`{k}:`' for k in keys)}." if keys else ""
        out += model_section(m, intro=intro)
    out += ["## Dataset file (`experiments_data/<name>/dataset.yaml`)", ""]
    for m in walk([Dataset], skip=set(shared)):
        out += model_section(m)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
