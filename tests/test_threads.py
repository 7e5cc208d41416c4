"""Solver threads (``sim_backends.threads``): the limits hold inside the block and come back
after it (their place in a study's identity: ``test_settings_identity.py``)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from sim_backends.threads import solver_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_the_limits_hold_inside_the_block_and_come_back_after():
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threadpool_limits(limits=2):  # whatever the environment says (OPENBLAS_NUM_THREADS=1 ...)
            before = _blas_threads()
            with solver_threads(1):
                import scipy.linalg  # noqa: F401  (loaded by now: solver_threads loads it before limiting)
                assert torch.get_num_threads() == 1
                assert len(before) >= 1 and set(_blas_threads()) == {1}  # every BLAS, scipy's own included
                assert len(_blas_threads()) >= 2  # numpy's and scipy's
            assert torch.get_num_threads() == 2 and set(_blas_threads()) == set(before) == {2}
            with solver_threads(1, torch=False):
                assert set(_blas_threads()) == {1}  # (threadpoolctl limits OpenMP too, which torch may share)
        with pytest.raises(ValueError):
            with solver_threads(0):
                pass
    finally:
        torch.set_num_threads(saved)

