"""The allocator set up for labelling: large arrays reuse the heap instead of fresh pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.allocator import on_glibc

REPO = Path(__file__).resolve().parents[2]

# Page faults of 20 allocations of a 4 MiB array (each touched, then freed), before and
# after tune_allocator(), in a fresh process with the given environment.
PROBE = """
import json, resource
import numpy as np
from pipelines.allocator import tune_allocator

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = np.ones(2**19)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

untuned = faults()
tuned = tune_allocator()
print(json.dumps({"untuned": untuned, "tuned": tuned, "after": faults(),
                  "again": tune_allocator()}))
"""

# The 4 KiB pages those 20 arrays span: each is faulted in afresh when glibc maps it.
PAGES = 20 * 2**22 // 4096

needs_glibc = pytest.mark.skipif(not on_glibc(), reason="mallopt is glibc's")


def _probe(probe: str = PROBE, **environment) -> dict:
    """What ``probe`` prints last, as JSON, run in a fresh process with ``environment`` and
    none of the caller's ``MALLOC_*`` variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    # NumPy asks for transparent huge pages for large arrays, where a fault maps 2 MiB and
    # the count depends on the addresses; without, every fault is one 4 KiB page.
    env.update(environment, PYTHONPATH=str(REPO), NUMPY_MADVISE_HUGEPAGE="0")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1])


@needs_glibc
def test_under_dasks_trim_setting_large_arrays_stop_faulting_once_tuned():
    # Dask's nanny starts workers with this; glibc then maps every large array afresh.
    found = _probe(MALLOC_TRIM_THRESHOLD_="65536")
    assert found["tuned"] is True and found["again"] is True
    assert found["untuned"] >= PAGES / 2
    assert found["after"] < found["untuned"] / 5


@needs_glibc
def test_an_operators_mmap_threshold_is_kept():
    found = _probe(MALLOC_MMAP_THRESHOLD_="131072")
    assert found["tuned"] is False
    assert found["after"] >= PAGES / 2


# Resident MiB after 200 MiB of heap arrays were freed between small blocks that stay, and
# after release_free_heap(), in a fresh process (tuned as a labelling worker is, or not).
RELEASE_PROBE = """
import json, os
import numpy as np
from pipelines.allocator import release_free_heap, tune_allocator

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

tuned = tune_allocator() if os.environ.get("TUNE") == "1" else None
arrays, kept = [], []
for _ in range(640):
    arrays.append(np.ones(40_000))  # 320 KB: from the heap once tuned
    kept.append(bytearray(4096))  # between them, so the heap's top stays in use
del arrays
freed = resident_mib()
released = release_free_heap()
print(json.dumps({"tuned": tuned, "released": released, "freed": freed,
                  "after": resident_mib()}))
"""


@needs_glibc
def test_free_heap_between_live_blocks_goes_back_to_the_system():
    found = _probe(RELEASE_PROBE, TUNE="1")
    assert found["tuned"] is True and found["released"] is True
    # The 200 MiB freed were still resident: glibc trims only the heap's top.
    assert found["freed"] > 150
    assert found["freed"] - found["after"] > 150


@needs_glibc
def test_free_heap_is_left_alone_where_the_allocator_was_not_tuned():
    found = _probe(RELEASE_PROBE, TUNE="1", MALLOC_MMAP_THRESHOLD_="131072")
    assert found["tuned"] is False and found["released"] is False
    untuned = _probe(RELEASE_PROBE, TUNE="0")
    assert untuned["released"] is False
