"""Parquet read from memory: the same table as pyarrow's reader, and no Arrow thread."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.parquet import read_parquet

REPO = Path(__file__).resolve().parents[2]


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=10)
    return buffer.getvalue()


def test_read_parquet_gives_the_table_and_its_columns():
    table = pa.table({"id": [f"r{index:03d}" for index in range(35)],
                      "value": [float(index) / 7 for index in range(35)]})
    data = _parquet_bytes(table)
    assert read_parquet(data).equals(table)
    assert read_parquet(data, ["value"]).equals(table.select(["value"]))


# Counts the process's native threads around one read, in a fresh interpreter.
_THREADS_AROUND_A_READ = """
import io, os, sys
import pyarrow as pa, pyarrow.parquet as pq
from schemas.parquet import read_parquet
buffer = io.BytesIO()
pq.write_table(pa.table({"a": list(range(1000))}), buffer)
data = buffer.getvalue()
before = len(os.listdir("/proc/self/task"))
if sys.argv[1] == "ours":
    read_parquet(data, ["a"])
else:
    pq.read_table(io.BytesIO(data), use_threads=False, pre_buffer=False)
print(len(os.listdir("/proc/self/task")) - before)
"""


def _threads_started(reader: str) -> int:
    result = subprocess.run([sys.executable, "-c", _THREADS_AROUND_A_READ, reader], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    return int(result.stdout.strip())


def test_reading_starts_no_arrow_thread_where_read_table_does():
    # pyarrow's dataset reader starts its pools even without threads; a pool thread alive at
    # interpreter exit aborted `expnet generate` (status 134).
    assert _threads_started("read_table") > 0
    assert _threads_started("ours") == 0
