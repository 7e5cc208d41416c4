"""Stages as plug-ins: ``base`` (the ``Stage`` protocol), ``registry`` (name -> stage) and
one module per stage, which registers itself when imported. The built-in stages are the
names in the import line below, in workflow order; a new stage is its module plus its name
there."""

from __future__ import annotations

from calib.stages import slurry, drying, calendering, characterise  # noqa: F401,I001  (the built-in stages, in order)
from calib.stages.base import Run, Score, Stage, StageTrial, TrialContext
from calib.stages.registry import chain, get, lookup, names, register

__all__ = ["slurry", "drying", "calendering", "characterise", "Run", "Score", "Stage", "StageTrial", "TrialContext", "chain", "get", "lookup", "names", "register"]
