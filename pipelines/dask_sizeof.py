"""Sizes of Beam's values and this pipeline's records, as Dask should count them.

A Dask worker weighs every result it keeps with ``dask.sizeof`` to decide what to spill to
disk and where to run a task. Anything Dask does not know it weighs with ``sys.getsizeof``:
a Beam ``WindowedValue`` is 80 bytes, whatever it holds, and a ``FaceRecord`` 48, against
about 2.3 KB of Python objects for a face waiting for its fit. So on workers with a memory
limit nothing a shuffle held was ever spilled: at 24 000 faces Dask counted 6 to 12 MiB
managed a worker while the worker grew by 150 MiB (RESULTS.md, "The launcher, and where a
Dask run waits"). :func:`register_sizes` teaches Dask the real sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import sys


@functools.cache
def register_sizes() -> None:
    """Register the sizes of Beam's ``WindowedValue`` and of the pipeline's records with
    ``dask.sizeof``, in this process (idempotent; a no-op without Dask).

    Called where the pipeline's tasks run on a Dask worker (:mod:`pipelines.dask_pardo`,
    :mod:`pipelines.dask_partitions`), so every worker learns them before it keeps a result.
    """
    try:
        from dask.sizeof import sizeof
    except ImportError:  # no Dask here: nothing weighs these values
        return
    from apache_beam.utils.windowed_value import WindowedValue

    from pipelines.faces import FaceRecord, ImageMeta
    from pipelines.sources import Failure, Naming, SourceItem, SourceRecord
    from pipelines.video import VideoChunk

    sizeof.register(WindowedValue, windowed_value_size)
    for record in (FaceRecord, ImageMeta, SourceItem, SourceRecord, Failure, Naming,
                   VideoChunk):
        sizeof.register(record, record_size)


def windowed_value_size(value) -> int:
    """Bytes of a Beam ``WindowedValue``: its own and its value's (windows and timestamp are
    shared or small)."""
    from dask.sizeof import sizeof

    return sys.getsizeof(value) + sizeof(value.value)


def record_size(record) -> int:
    """Bytes of a dataclass record: the instance, its attribute dict and every field's
    value, each weighed by ``dask.sizeof`` (so arrays count their buffers)."""
    from dask.sizeof import sizeof

    size = sys.getsizeof(record) + sys.getsizeof(vars(record))
    return size + sum(sizeof(getattr(record, field.name))
                      for field in dataclasses.fields(record))
