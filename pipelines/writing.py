"""Deterministic Parquet shards, failure files and the dataset manifest.

Rows go to shard ``hash(id) mod N``, are sorted by id, written under a temporary name and
renamed when complete, so readers never see a partial shard and reruns give the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import uuid
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.allocator import release_free_heap
from pipelines.collect import ToOneList
from pipelines.resources import use_filesystems
from schemas import FAILURE_SCHEMA, DatasetMetadata, shard_schema
from schemas import rows as columns
from schemas.layout import FAILURES_DIR, ROWS_PER_GROUP, TEMP_DIR, shard_name, shard_of

TARGET_SHARD_BYTES = 256 * 1024 * 1024
ROW_OVERHEAD_BYTES = 2048  # labels, landmarks and pose of one row, beside its image


def shard_count(total_bytes: int, *, target_bytes: int = TARGET_SHARD_BYTES) -> int:
    """Number of shards for ``total_bytes`` of rows, about ``target_bytes`` each."""
    return max(1, math.ceil(total_bytes / target_bytes))


class PendingRow(NamedTuple):
    """A fitted row waiting for its shard: its id and its crop's size.

    The row itself waits, pickled, in the run's temporary folder beside its crop
    (``park_row``), so the shuffles before the shard writer carry about 100 bytes a face: on
    the in-memory runner every shuffle and side input holds all of its elements at once, up to
    three copies each. The pickle is made and read by this pipeline only, never from users'
    data. ``check_note`` says what the identity check did to the face, for the run's counts
    (``pipelines.identity.CHECK_NOTES``; None when nothing).
    """

    id: str
    crop_bytes: int
    check_note: str | None = None


def park_row(output_dir: str, row: dict, crop_bytes: int, *,
             check_note: str | None = None) -> PendingRow:
    """Park a fitted row beside its crop until its shard is written; its ``PendingRow``."""
    _write_parked(f"{output_dir}/{row_name(row[columns.ID])}",
                  pickle.dumps(row, protocol=5))
    return PendingRow(row[columns.ID], crop_bytes, check_note)


def read_row(output_dir: str, face_id: str) -> dict:
    return pickle.loads(_read_parked(f"{output_dir}/{row_name(face_id)}"))


def row_bytes(pending: PendingRow) -> int:
    return pending.crop_bytes + ROW_OVERHEAD_BYTES


CROPS_DIR = f"{TEMP_DIR}/crops"


def crop_name(face_id: str) -> str:
    """Where a face crop waits, relative to the output folder, until its shard is written."""
    return f"{CROPS_DIR}/{face_id}.jpg"


def row_name(face_id: str) -> str:
    """Where a fitted row waits, relative to the output folder, until its shard is written."""
    return f"{CROPS_DIR}/{face_id}.row"


def _is_local(path: str) -> bool:
    return "://" not in path


def write_crop(output_dir: str, face_id: str, jpeg: bytes) -> None:
    """Park a face crop until its shard is written (plain file I/O on local disks)."""
    _write_parked(f"{output_dir}/{crop_name(face_id)}", jpeg)


def _write_parked(path: str, data: bytes) -> None:
    if _is_local(path):
        # Beam's FileSystems costs about 0.4 ms a call here, as much as the crop itself.
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        return
    with FileSystems.create(path) as handle:
        handle.write(data)


def read_crop(output_dir: str, face_id: str) -> bytes:
    return _read_parked(f"{output_dir}/{crop_name(face_id)}")


def _read_parked(path: str) -> bytes:
    if _is_local(path):
        with open(path, "rb") as handle:
            return handle.read()
    with FileSystems.open(path) as handle:
        return handle.read()


def delete_crops(output_dir: str, face_ids: list) -> None:
    """Delete the parked crops and rows of ``face_ids``."""
    paths = [f"{output_dir}/{name(face_id)}" for face_id in face_ids
             for name in (crop_name, row_name)]
    if paths and _is_local(output_dir):
        for path in paths:
            os.remove(path)
    elif paths:
        FileSystems.delete(paths)


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialise ``table`` as Parquet: fixed options, so equal tables give equal bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROWS_PER_GROUP, compression="zstd",
                   write_statistics=True)
    return buffer.getvalue()


def ensure_dir(path: str) -> None:
    """Create a folder if it is missing (object stores have no folders: a no-op there)."""
    if FileSystems.exists(path):
        return
    try:
        FileSystems.mkdirs(path)
    except OSError:
        # Another worker created it in between.
        if not FileSystems.exists(path):
            raise


def remove_temporary(output_dir: str) -> None:
    """Delete the temporary folder of a finished run."""
    folder = f"{output_dir}/{TEMP_DIR}"
    leftovers = [metadata.path for metadata in FileSystems.match([f"{folder}/**"])[0]
                 .metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)
    if "://" not in folder and FileSystems.exists(folder):
        FileSystems.delete([folder])


def write_atomically(output_dir: str, name: str, data: bytes) -> None:
    """Write ``data`` to ``output_dir/name`` via a temporary file and a rename."""
    stream_atomically(output_dir, name, lambda handle: handle.write(data))


def stream_atomically(output_dir: str, name: str, write) -> None:
    """Call ``write(handle)`` on a temporary file, then rename it to ``output_dir/name``.

    Temporary files live in ``output_dir/_temporary`` until complete, so a reader never sees
    a partial file under its final name, and a large file never has to be held in memory.
    """
    temporary = f"{output_dir}/{TEMP_DIR}/{name.replace('/', '_')}.{uuid.uuid4().hex}"
    ensure_dir(f"{output_dir}/{TEMP_DIR}")
    final = f"{output_dir}/{name}"
    if "/" in name:
        ensure_dir(final.rsplit("/", 1)[0])
    with FileSystems.create(temporary) as handle:
        write(handle)
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temporary], [final])


class _CountingWriter:
    """A write-only file object that counts the bytes passed to ``handle``."""

    def __init__(self, handle):
        self.handle = handle
        self.written = 0
        self.closed = False

    def write(self, data) -> int:
        self.handle.write(data)
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        # The handle belongs to stream_atomically, which closes it after the rename setup.
        self.closed = True


class WriteShardDoFn(beam.DoFn):
    """Writes one shard from ``((index, count), rows)``; emits ``(name, rows, bytes)``."""

    def __init__(self, output_dir: str, metadata: DatasetMetadata, prefix: str = "part",
                 filesystems: dict | None = None):
        self.output_dir = output_dir.rstrip("/")
        self.metadata = metadata
        self.prefix = prefix
        self.filesystems = filesystems

    def setup(self):
        use_filesystems(self.filesystems)

    def process(self, element):
        (index, count), rows = element
        rows = sorted((row for row in rows if row is not None), key=lambda pending: pending.id)
        name = shard_name(index, count, self.prefix)
        sizes = []
        stream_atomically(self.output_dir, name,
                          lambda handle: sizes.append(self.write_shard(rows, handle)))
        delete_crops(self.output_dir, [pending.id for pending in rows])
        release_free_heap()  # the shard's row groups, freed between live blocks
        beam.metrics.Metrics.counter("expnet", "shards_written").inc()
        yield {"name": name, "rows": len(rows), "bytes": sizes[0]}

    def write_shard(self, rows: list, handle) -> int:
        """Stream sorted rows as Parquet into ``handle``, reading crops one row group at a
        time, so memory holds one row group of images, not the shard; returns bytes written.
        """
        schema = shard_schema(self.metadata)
        counting = _CountingWriter(handle)
        with pq.ParquetWriter(counting, schema, compression="zstd") as writer:
            for start in range(0, max(len(rows), 1), ROWS_PER_GROUP):
                group = [_with_crop(read_row(self.output_dir, pending.id),
                                    read_crop(self.output_dir, pending.id))
                         for pending in rows[start:start + ROWS_PER_GROUP]]
                writer.write_table(pa.Table.from_pylist(group, schema=schema),
                                   row_group_size=ROWS_PER_GROUP)
        return counting.written


def _with_crop(row: dict, jpeg: bytes) -> dict:
    """A waiting row made writable: its crop's bytes in, float32 arrays as lists."""
    ready = {name: value.tolist() if isinstance(value, np.ndarray) else value
             for name, value in row.items()}
    ready[columns.IMAGE] = {"bytes": jpeg, "path": row[columns.IMAGE]["path"]}
    return ready


class WriteShards(beam.PTransform):
    """``PendingRow``s -> deterministic Parquet shards; returns manifest entries.

    The shard count comes from the total row size (about 256 MB a shard) unless fixed, and
    every shard of the count is written, empty ones included, so a dataset has no gaps.

    Only the rows' sizes meet in one place, summed per bundle: the count then goes to each of
    ``PLAN_BUCKETS`` buckets of rows (a join), where the rows get their shard. So on a cluster
    the rows reach their shard writers from every worker that fitted them. When all rows met
    in one element to be given their shard, every shard's rows left one task on one worker,
    and Dask wrote the shards where that task ran: at 24 000 faces two shards one after the
    other on one worker, 44 s, while the other had nothing to do (RESULTS.md, "The launcher,
    and where a Dask run waits").
    """

    def __init__(self, output_dir: str, metadata: DatasetMetadata, *, num_shards: int = 0,
                 prefix: str = "part", filesystems: dict | None = None):
        super().__init__()
        self.output_dir = output_dir
        self.metadata = metadata
        self.num_shards = num_shards
        self.prefix = prefix
        self.filesystems = filesystems

    def expand(self, rows):
        count = (rows
                 | "BundleBytes" >> beam.ParDo(_BundleBytes())
                 | "GatherBytes" >> ToOneList()
                 | "CountShards" >> beam.Map(count_shards, num_shards=self.num_shards))
        buckets = rows | "KeyByPlanBucket" >> beam.Map(
            lambda pending: (shard_of(pending.id, PLAN_BUCKETS), pending))
        plan = count | "CountPerBucket" >> beam.FlatMap(
            lambda shards: [(bucket, shards) for bucket in range(PLAN_BUCKETS)])
        assigned = ({"count": plan, "rows": buckets}
                    | "JoinCount" >> beam.CoGroupByKey()
                    | "AssignShards" >> beam.FlatMap(assign_shards))
        # A placeholder per shard: every shard of the count is written, empty ones too.
        empty = count | "EveryShard" >> beam.FlatMap(
            lambda shards: [((index, shards), None) for index in range(shards)])
        return ((empty, assigned)
                | "WithEveryShard" >> beam.Flatten()
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(
                    WriteShardDoFn(self.output_dir, self.metadata, self.prefix,
                                   self.filesystems)))


# Buckets in which rows meet the shard count; as many as the fit's, so that a cluster of up
# to 64 worker threads assigns shards on all of them.
PLAN_BUCKETS = 64


class _BundleBytes(beam.DoFn):
    """The total ``row_bytes`` of each bundle's ``PendingRow``s, one int a bundle."""

    def start_bundle(self):
        self.total = 0

    def process(self, pending):
        self.total += row_bytes(pending)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        yield WindowedValue(self.total, 0, (GlobalWindow(),))


def count_shards(bundle_bytes: list, *, num_shards: int = 0) -> int:
    """The shard count: ``num_shards``, or one for about every ``TARGET_SHARD_BYTES`` of the
    bundles' row bytes."""
    return num_shards or shard_count(sum(bundle_bytes))


def assign_shards(bucket: tuple):
    """A plan bucket ``(bucket, {"count": [count], "rows": pending rows})`` ->
    ``((index, count), pending)`` per row.

    Keys are tuples of ints, which hash alike in every worker process.
    """
    _, joined = bucket
    [count] = joined["count"]  # every bucket has the count, rows or not
    for pending in joined["rows"]:
        yield (shard_of(pending.id, count), count), pending


def failure_row(failure) -> dict:
    return {columns.ID: failure.id, columns.SOURCE_URI: failure.source_uri,
            columns.STAGE: failure.stage, columns.REASON: failure.reason,
            columns.MESSAGE: failure.message}


def write_failures(output_dir: str, failures: list, *, prefix: str = "part") -> dict:
    """Write all failure rows, sorted, to ``failures/<prefix>-00000-of-00001.parquet``."""
    rows = sorted((failure_row(failure) for failure in failures),
                  key=lambda row: (row[columns.ID], row[columns.SOURCE_URI], row[columns.STAGE]))
    table = pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
    data = parquet_bytes(table)
    name = f"{FAILURES_DIR}/{shard_name(0, 1, prefix)}"
    write_atomically(output_dir, name, data)
    return {"name": name, "rows": len(rows), "bytes": len(data)}


def write_json(output_dir: str, name: str, document: dict) -> None:
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    write_atomically(output_dir, name, data)

