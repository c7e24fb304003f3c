"""Reading Parquet files held in memory without starting any Arrow thread.

``pyarrow.parquet.read_table`` goes through Arrow's dataset scanner, which starts Arrow's
CPU and I/O thread pools even with ``use_threads=False``; given a Python file object, those
threads also call back into Python. A pool thread still alive when the interpreter
finalises is stopped by CPython with ``pthread_exit``, whose unwinding through Arrow's
``noexcept`` frames calls ``std::terminate``: "terminate called without an active
exception", status 134, after the work is done. Reading the bytes in Python and decoding
them from a native buffer on the calling thread starts no thread at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_file(data: bytes) -> pq.ParquetFile:
    """A ``ParquetFile`` over bytes in memory (footer parsed; nothing else read yet)."""
    return pq.ParquetFile(pa.BufferReader(data))


def read_parquet(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """The table in Parquet ``data``, or just ``columns`` of it, decoded on this thread."""
    return parquet_file(data).read(columns=list(columns) if columns is not None else None,
                                   use_threads=False)
