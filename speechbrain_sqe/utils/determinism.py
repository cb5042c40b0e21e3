"""Deterministic training where torch allows it (``train.py --deterministic`` or ``deterministic: True``).

Seeding alone (the YAML's ``seed``) makes a CPU run repeatable on the same machine with the same
thread count; on a GPU some kernels (cuDNN autotuning, atomics in scatter/index_add, cuBLAS
workspaces) still vary between runs. :func:`deterministic_mode` turns on
``torch.use_deterministic_algorithms`` (an op with no deterministic implementation then raises
instead of varying), disables cuDNN benchmarking, sets the cuBLAS workspace that determinism needs
and logs the number of intra-op threads (``OMP_NUM_THREADS``; a reduction split over another number
of threads sums in another order). What stays outside: another machine, CPU instruction set, torch
version or thread count gives other (equally valid) numbers.
"""

import contextlib
import logging
import os

import torch

logger = logging.getLogger(__name__)

#: cuBLAS needs a fixed workspace for deterministic results (CUDA >= 10.2); see torch's reproducibility notes.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_mode(enabled=True, threads=None):
    """Runs the block with deterministic algorithms and a fixed thread count; restores the previous
    settings afterwards (so a test or a notebook can run a recipe in the same process).

    Arguments
    ---------
    enabled : bool
        False: the block runs unchanged.
    threads : int, optional
        Intra-op threads (default: the current count, which then stays fixed for the run).

    Example
    -------
    >>> with deterministic_mode():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    >>> torch.are_deterministic_algorithms_enabled()
    False
    """
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark, torch.get_num_threads(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads or torch.get_num_threads())
    logger.info("Deterministic mode: deterministic algorithms, cuDNN benchmark off, %d torch threads",
                torch.get_num_threads())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1], previous[2]
        torch.set_num_threads(previous[3])
        if previous[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
