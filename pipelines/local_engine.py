"""The local engine of ``expnet generate --workers N``: how many processes, and their threads.

One in-memory process for small inputs, where starting workers costs more than it saves;
every core from ``PARALLEL_FROM_ITEMS`` of :func:`input_work` up, on Beam's multi-process
DirectRunner, each worker's BLAS and OpenMP pools sized to its share of the cores.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from apache_beam.options.pipeline_options import DirectOptions, StandardOptions, WorkerOptions

from pipelines.sources import SourceItem, is_video_name

if TYPE_CHECKING:
    from pipelines.generate import GenerateOptions


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# Below this many input files the default is one process: starting the multi-process
# DirectRunner costs more than it saves (the 10-image demo: 7.7 s in process, 13.9 s on two;
# 200 faces: 0.61x; benchmarks/scaling.py, RESULTS.md "Scaling"); at 3000 faces two
# processes gave 1.33x.
PARALLEL_FROM_ITEMS = 2000


# A video counts as this many input files towards PARALLEL_FROM_ITEMS: about 20 s of video
# at the default --video-fps 5, so 20 such videos start the workers as 2000 photos do.
VIDEO_ITEMS = 100


def input_work(items) -> int:
    """The launcher's measure of a run's size: a file per image, ``VIDEO_ITEMS`` per video.

    An archive counts as one file: its members are not listed in the launcher.
    """
    return sum(VIDEO_ITEMS if is_video_name(item.uri) else 1
               for item in items if isinstance(item, SourceItem))


def default_workers(work: int) -> int:
    """``--workers`` when not given: every core from ``PARALLEL_FROM_ITEMS`` of
    :func:`input_work` up, else one process.

    Videos used to run in one process: Beam's multi-process DirectRunner lost faces of a
    large collection when video frames were flattened with the images before detection. With
    frames detected in a step of their own, 12 000 frames of 100 videos on ``--workers 2``
    gave the shards of ``--workers 1`` byte for byte, every frame accounted for (RESULTS.md,
    "Threads per worker").
    """
    return available_cores() if work >= PARALLEL_FROM_ITEMS else 1


# The thread pools of NumPy's BLAS and of OpenMP, sized when a process first loads them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_threads(workers: int) -> None:
    """Size the BLAS and OpenMP thread pools of worker processes started after this call to
    their share of the cores (at least one), where the environment does not say already.

    Each worker would otherwise start a pool as large as the machine: on two cores,
    ``--workers 2`` labelled 12 000 video frames in 146 s with 260 s of CPU, and in 94 s with
    158 s of CPU with one thread a worker (RESULTS.md, "Threads per worker"). Changes this
    process's environment, which the workers inherit; its own pools are already sized.
    """
    per_worker = str(max(1, available_cores() // workers))
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, per_worker)


def apply_workers(options: GenerateOptions, argv: list[str] | None, work: int) -> int:
    """Set the local engine for ``--workers``; returns the worker count (0: not applied).

    ``--workers N`` above 1 runs the multi-process DirectRunner with N workers: measured
    against a Dask LocalCluster on the same machine (benchmarks/scaling.py, RESULTS.md), it
    is the faster engine on one machine. A ``--runner`` or ``--direct_running_mode`` of
    the user's own wins.
    """
    given = " ".join(argv if argv is not None else sys.argv[1:])
    if options.view_as(StandardOptions).runner or "--direct_running_mode" in given:
        return 0
    workers = options.workers or default_workers(work)
    direct = options.view_as(DirectOptions)
    if workers > 1:
        share_threads(workers)
        direct.direct_running_mode = "multi_processing"
        direct.direct_num_workers = workers
        # Workers parse the flags without this command's options and warn about each one,
        # twice a worker; their errors still show.
        harness = options.view_as(WorkerOptions)
        harness.default_sdk_harness_log_level = harness.default_sdk_harness_log_level or "ERROR"
    return workers
