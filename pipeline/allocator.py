"""The C allocator's policy for large blocks, set once per process that runs kernels (the `dcq` entry point and
every Dask worker).

glibc hands each block above its mmap threshold (128 KiB, growing to at most 32 MiB) to the kernel and gives it back
on free. A stage allocates and frees tensors of 10-130 MB per batch, so every batch paid for fresh zeroed pages:
page faults took 60-80% of the features stage's time and a third of a training step's on a 2-core CPU
(`benchmarks/bench_allocator.py`). With both thresholds at 1 GiB, freed blocks stay in the process heap and the next
batch reuses them. Peak memory still follows the batch size: a block is reused, not accumulated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the heap for reuse (glibc only; elsewhere, or without glibc, nothing changes).
    True when the policy is in force in this process. Changes no computed value, only where memory comes from."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl and others: no mallopt
                return False
            _applied = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    return _applied
