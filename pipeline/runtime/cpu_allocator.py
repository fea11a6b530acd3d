"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

A frame's activations are hundreds of megabytes (``[4, 32, 512, 512]`` fp32 is 134 MB, and the
generator makes dozens of them). glibc serves blocks that large with ``mmap`` and returns them with
``munmap`` on free, so every layer of every frame page-faults its output in afresh: measured at a
128x128 crop, 2 threads, a third of the process time was the kernel zeroing pages, and batch 4 ran
at 0.87 s per frame instead of 0.52. With mmap off and trimming raised, freed blocks are reused
from the heap (no faults after the first frame); the price is that the process keeps its peak
memory until it exits, which suits a converter and a render-box daemon.

Call :func:`keep_freed_memory` once, at process start (the ``facestyle`` entry point does). It leaves
the allocator alone when the user configured it through the environment.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameter numbers from <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1      # the largest value mallopt's int takes: keep up to 2 GiB free at the top

_USER_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                  "LD_PRELOAD")


def keep_freed_memory() -> bool:
    """Turn off glibc's mmap for large blocks and raise its trim threshold.

    Returns:
        True when the setting was applied; False on a non-glibc platform or when the environment
        already configures the allocator (``GLIBC_TUNABLES``, ``MALLOC_*_``, or a preloaded
        allocator such as jemalloc).
    """
    if not sys.platform.startswith("linux") or any(os.environ.get(k) for k in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False                                   # musl and others have no mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc: mmap off, trim threshold 2 GiB: %s", "applied" if ok else "refused")
    return ok
