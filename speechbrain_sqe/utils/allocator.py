"""Keeps freed memory for reuse in glibc's allocator: batch jobs on a CPU stop page-faulting their
large tensors back in (``sqe`` does it at start; Python users call :func:`keep_freed_memory`).

Why: glibc's ``malloc`` serves a large block from a fresh memory mapping (above its mmap threshold,
128 KiB until it adapts) and gives freed memory back to the operating system (above its trim
threshold). A scoring or enhancement job allocates the same large tensors batch after batch (the
padded waveforms, STFT frames, activations), so each batch touches new pages again: VQScore scoring
200 files of 5 s took 88,000 minor page faults (about 350 MB zeroed by the kernel) per pass, 13 % of
its time on one thread and 7 % with two batch threads (``benchmarks/RESULTS.md``). PyTorch's CPU
performance guide recommends jemalloc or tcmalloc for this, loaded with ``LD_PRELOAD`` before the
process starts; this is the in-process equivalent for glibc, with ``mallopt``: the mmap threshold at
its maximum (32 MiB on 64-bit systems: larger blocks are still mapped) and the trim threshold at
1 GiB. Written here: neither torch nor SpeechBrain sets the allocator.

What it costs: freed memory stays in the process for the next batch, so the resident size stays near
its peak between batches instead of falling back, and the peak is 15-110 MB higher
(``benchmarks/bench_memory_flat.py``, ``benchmarks/RESULTS.md``). ``SQE_DEFAULT_ALLOCATOR=1`` in the environment keeps glibc's
defaults. Elsewhere than glibc (macOS, Windows, musl) nothing is changed.
"""

import ctypes
import ctypes.util
import os
import platform

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory kept before the heap is trimmed.
TRIM_THRESHOLD = 1024 * 1024 * 1024
#: Environment variable that keeps glibc's defaults when set to 1.
OPT_OUT = "SQE_DEFAULT_ALLOCATOR"

_applied = False


def keep_freed_memory():
    """Sets glibc's mmap and trim thresholds so that freed large blocks are reused, not returned.

    Safe to call more than once and from a library user's process; it changes the whole process's
    allocator (see the module docstring for what it costs).

    Returns
    -------
    bool
        True when the thresholds are set (now or before); False where the C library is not glibc,
        ``mallopt`` refused a value, or ``SQE_DEFAULT_ALLOCATOR=1`` opts out.

    Example
    -------
    >>> import platform
    >>> keep_freed_memory() == (platform.libc_ver()[0] == "glibc" and os.environ.get(OPT_OUT) != "1")
    True
    >>> allocator_tuned() == keep_freed_memory()
    True
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(OPT_OUT) == "1" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Setting either threshold also stops glibc adapting them (it would lower them again).
    _applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _applied


def allocator_tuned():
    """Whether :func:`keep_freed_memory` has set the thresholds in this process (what benchmarks report).

    Returns
    -------
    bool
        True once the thresholds are set.
    """
    return _applied
