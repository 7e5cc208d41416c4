"""Strict JSON (``json.dumps(..., allow_nan=False)``) has no NaN or infinity: ``json_safe``
writes them as null. Here, the lowest layer, so that the characterisation job
(``sim_backends.characterise``) and calib's writers share it."""

from __future__ import annotations

import math


def json_safe(value):
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, through dicts,
    lists and tuples (a tuple becomes a list); anything else is returned as it is."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
