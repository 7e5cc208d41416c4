"""CPU threads of the numerical libraries a solver uses (BLAS, OpenMP, PyTorch), limited for
the length of a block.

The characterisation's solves (conjugate gradients, TauFactor's SOR in PyTorch) and the
contact network work on vectors of 1e4-1e6 entries, too small to share among threads, and
the stage runs several of them at once (one per calendering degree). With the libraries'
default of one thread per core they slowed each other down on a busy machine by spinning:
a dev film's characterisation at 0.5 um took 145 s with the default threads and 17 s with
one (TauFactor 117 s against 0.7 s; the 2-core machine shared with four LAMMPS runs,
2026-12-06), the 5089-bead network 3.1 s against 1.0 s (``bench/network_speed.py``).
``threadpoolctl`` is the maintained way to limit BLAS and OpenMP pools at run time; PyTorch
keeps its own intra-op pool (``torch.set_num_threads``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def solver_threads(n: int, torch: bool = True) -> Iterator[None]:
    """Limit BLAS and OpenMP and, with ``torch``, PyTorch (imported here if not yet) to ``n``
    threads inside the block; the previous limits come back after it."""
    if n < 1:
        raise ValueError("the thread count must be at least 1")
    import scipy.linalg  # noqa: F401  (threadpoolctl limits the libraries loaded when it starts:
    import scipy.sparse.linalg  # noqa: F401  scipy's own BLAS, used by pyamg and the CG, must be in)
    from threadpoolctl import threadpool_limits

    if not torch:
        with threadpool_limits(limits=n):
            yield
        return
    import torch as _torch  # before the limit too: its OpenMP pool, likewise

    with threadpool_limits(limits=n):
        before = _torch.get_num_threads()
        _torch.set_num_threads(n)
        try:
            yield
        finally:
            _torch.set_num_threads(before)
