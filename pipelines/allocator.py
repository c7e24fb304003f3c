"""glibc's allocator set up for a labelling process: large arrays reuse memory, not new pages.

glibc serves an allocation of at least its mmap threshold (128 KiB at start) with fresh pages
from ``mmap``, and returns freed heap above its trim threshold to the system. It raises both
as a program frees large blocks, up to 32 MiB and 64 MiB on 64-bit systems, unless either is
set: Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which fixes the
mmap threshold at 128 KiB too. The fit's temporaries are megabytes (a 256-face batch's
Jacobians, the normal equations), so each one then costs page faults on first touch. One
256-face fit (``python -m benchmarks.allocator``): 0.27 s of CPU and 53 000 page faults under
Dask's setting, 0.19 s and 18 000 under glibc's defaults, 0.13 s and none at the thresholds
set here. A 3000-face run on a 2-worker LocalCluster: 31.6 and 30.6 s before, 28.1 and 26.0 s
after (RESULTS.md, "The allocator, and the machine's ceiling").

:func:`tune_allocator` fixes the two thresholds at 16 and 32 MiB, once per process, from the
first heavy load (:func:`pipelines.resources.load_once`). A process whose environment
sets ``MALLOC_MMAP_THRESHOLD_`` keeps its operator's choice; other C libraries are left alone.

Below those thresholds the fit's temporaries come from the heap, and glibc returns freed heap
only from its top: the free chunks between live ones stay in the process. On a Dask worker at
24 000 faces that was 130 to 200 MiB of its 710 to 750 MiB RSS (under a memory probe) by the
end of the fit (RESULTS.md, "Where the CPU goes, and a worker's memory").
:func:`release_free_heap`, called where a step has finished a bundle of fits or a shard,
gives those pages back (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading

_LOGGER = logging.getLogger(__name__)

# mallopt() parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Half of glibc's maxima for its self-adjusting thresholds on 64-bit systems (32 MiB, and twice
# that for trimming): as fast for the fit (a 256-face fit 0.116 s against 0.119 s at the
# maxima; at 8 and 16 MiB 0.156 s), and a process keeps at most 32 MiB of freed heap.
MMAP_THRESHOLD_BYTES = 16 * 2**20
TRIM_THRESHOLD_BYTES = 32 * 2**20
OPERATOR_VARIABLE = "MALLOC_MMAP_THRESHOLD_"

_state = {"tuned": None}
_LOCK = threading.Lock()


@functools.cache
def _glibc():
    """The process's C library if it is glibc, else ``None`` (looked up once)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None  # musl, macOS, Windows
    return libc


def on_glibc() -> bool:
    """Whether this process runs on glibc, where :func:`tune_allocator` can act."""
    return _glibc() is not None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds in this process (idempotent); whether it did.

    Returns ``False`` where the C library is not glibc, where the environment sets
    ``MALLOC_MMAP_THRESHOLD_``, or where glibc refuses a value.
    """
    with _LOCK:
        if _state["tuned"] is None:
            _state["tuned"] = _tune()
        return _state["tuned"]


def _tune() -> bool:
    if OPERATOR_VARIABLE in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if not done:
        _LOGGER.warning("glibc refused the allocator thresholds; fits may run slower")
    return done


def release_free_heap() -> bool:
    """Give the heap's free pages back to the system, in a process :func:`tune_allocator`
    set up; whether any were given back.

    glibc's ``malloc_trim(0)`` releases every whole free page of its heaps, not only the top:
    a few milliseconds when little is free, 70 ms for 900 MiB. The pages cost a fault each
    when used again, so call it where a phase's work ends (a bundle's fits, a shard), not per
    element. Does nothing where the allocator was not tuned (another C library, or an
    operator's ``MALLOC_MMAP_THRESHOLD_``).
    """
    if not allocator_tuned():
        return False
    return _glibc().malloc_trim(0) == 1


def allocator_tuned() -> bool | None:
    """What :func:`tune_allocator` returned in this process; ``None`` before its first call
    (for tests and diagnostics)."""
    with _LOCK:
        return _state["tuned"]
