"""The C allocator of a worker process: undo Dask's ``MALLOC_TRIM_THRESHOLD_``.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its default
``distributed.nanny.pre-spawn-environ``). Setting that variable also freezes glibc's mmap
threshold at its 128 KiB start, so every tensor above it (a RAD batch is 1.8 MB, its activations
more) is mapped and unmapped on each allocation: page faults and zeroing on every training step,
about 2.7x slower for a plain single run. :func:`restore` puts both thresholds where glibc's own
dynamic rule settles for training loads (allocations up to 32 MiB from the heap, memory returned
to the system once 64 MiB sits free at its top). It acts only where the variable is set and only
on glibc; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
"""What glibc's dynamic rule sets the trim threshold to beside that mmap threshold."""


@functools.lru_cache(maxsize=1)
def restore() -> bool:
    """Undo a frozen mmap threshold in this process (once); True when it did."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
