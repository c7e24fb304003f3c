"""Heavy resources (landmark detectors, morphable models) loaded once per worker process.

Beam runners call ``DoFn.setup()`` more often than once per process: the Dask runner calls it
for every partition, and the DirectRunner for every DoFn instance it makes. Loading through
:func:`load_once` keeps one copy per process whatever the runner does, held until the
process ends (workers are long-lived; a detector is tens of MB, a model a few).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from typing import Any

from pipelines.allocator import tune_allocator

_LOADED: dict[Hashable, Any] = {}
_LOCK = threading.Lock()


def load_once(key: Hashable, load: Callable[[], Any]) -> Any:
    """The resource under ``key`` in this process, made by ``load()`` the first time.

    Parameters
    ----------
    key : hashable
        Names the resource and every option it is loaded with, e.g. ``("landmarker", "fan",
        (("weights_path", "/w.pth"),))``: equal keys must mean interchangeable resources.
    load : callable
        Makes the resource; called at most once per key and process, under a lock, so
        threads of one worker never load it twice.

    The first call also sets up the process's allocator for the labelling's large arrays
    (:func:`pipelines.allocator.tune_allocator`): it is where a process becomes a worker.
    """
    tune_allocator()
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


def one_blas_thread():
    """A context in which NumPy's BLAS runs on one thread.

    Fitted floats then do not depend on the machine: OpenBLAS splits a large product over its
    threads, and the split changes the rounding. Measured: 12 000 video frames (pooled per
    track, so the fits are large) gave other bytes with one BLAS thread than with two
    (RESULTS.md, "Threads per worker"). One thread is also faster here: a pooled fit of 120
    faces took 368 ms on one thread against 800 ms on two.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def loaded_keys() -> list[Hashable]:
    """Keys of the resources this process holds (for tests and diagnostics)."""
    with _LOCK:
        return list(_LOADED)


def filesystem_options(options) -> dict:
    """The run's flags that Beam's FileSystems need on a worker (S3 endpoint, credentials...).

    Every flag given, as a plain dict (the input list left out: it can be long, and no
    filesystem reads it).
    """
    flags = options.get_all_options(drop_default=True)
    flags.pop("input", None)
    return flags


def use_filesystems(options: dict | None) -> None:
    """Configure Beam's FileSystems in this process from ``filesystem_options``, once.

    The launcher and Beam's SDK harness configure FileSystems themselves; Beam's Dask runner
    does not, so without this a Dask worker meets ``s3://`` without its endpoint or keys.
    """
    global _LAST_FILESYSTEMS
    # Called per element by Maps and reads: the same dict as last time costs one identity test.
    if not options or options is _LAST_FILESYSTEMS:
        return

    def configure():
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions.from_dictionary(options))
        return True

    load_once(("filesystems", json.dumps(options, sort_keys=True, default=str)), configure)
    _LAST_FILESYSTEMS = options


_LAST_FILESYSTEMS: dict | None = None


def with_filesystems(function: Callable, options: dict | None) -> Callable:
    """``function`` for a ``Map``/``FlatMap`` that configures FileSystems before each call."""

    def configured(*args, **kwargs):
        use_filesystems(options)
        return function(*args, **kwargs)

    return configured
