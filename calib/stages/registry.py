"""The stage registry: name -> ``Stage``. Built-in stages register when ``calib.stages`` is
imported; a plug-in (or a test) calls ``register`` with its own."""

from __future__ import annotations

from pydantic import BaseModel

from calib.core.errors import InputError
from calib.stages.base import Stage

_STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add ``stage`` (replacing one of the same name). Its settings sections must not shadow
    a study field, nor clash with another stage's section of the same name but another
    model, and must validate with their defaults (a study may leave a section out)."""
    from calib.spec.study_file import StudyBase

    sections = all_sections(exclude=stage.name)
    for name, model in stage.sections.items():
        if name in StudyBase.model_fields:
            raise ValueError(f"stage {stage.name}: section {name!r} would shadow the study field of that name")
        if name in sections and sections[name] is not model:
            raise ValueError(f"stage {stage.name}: section {name!r} is already {sections[name].__name__}")
        try:
            model()
        except Exception as exc:
            raise ValueError(f"stage {stage.name}: section {name!r} needs a default for every field ({exc})") from exc
    _STAGES[stage.name] = stage
    return stage


def unregister(name: str) -> None:
    _STAGES.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_STAGES)


def get(name: str) -> Stage:
    """The stage ``name``; ``KeyError`` naming the known ones."""
    try:
        return _STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r} (known: {', '.join(_STAGES)})") from None


def lookup(name: str, where: str, field: str) -> Stage:
    """The stage ``name``, or ``InputError`` naming ``where`` and ``field``."""
    if name not in _STAGES:
        raise InputError(where, field, f"unknown stage {name!r} (known: {', '.join(_STAGES)})")
    return _STAGES[name]


def all_sections(exclude: str | None = None) -> dict[str, type[BaseModel]]:
    """Every registered section: name -> settings model."""
    out: dict[str, type[BaseModel]] = {}
    for s in _STAGES.values():
        if s.name != exclude:
            out.update(s.sections)
    return out


def chain(name: str) -> list[Stage]:
    """The stages from the first to ``name``, following ``upstream``."""
    out: list[Stage] = []
    stage: Stage | None = get(name)
    while stage is not None:
        if stage in out:
            raise ValueError(f"stage {name}: its upstream chain loops")
        out.insert(0, stage)
        stage = get(stage.upstream) if stage.upstream else None
    return out
