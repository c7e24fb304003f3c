"""Read and check an ``expnet generate`` output folder without loading its images.

:func:`scan_output` streams the shards' row groups, reading only the small columns (labels,
pose, landmarks, residual), and checks every shard against the schema contract, the shards
against each other and against ``manifest.json``. :func:`read_rows` then fetches a few rows,
images included, by their position in the dataset. Paths may be local or on any Beam
filesystem (``gs://``, ``s3://``).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas import EXPRESSION_DIM, FAILURE_SCHEMA, DatasetMetadata, SchemaError, schema_problems
from schemas import rows as columns
from schemas.layout import FAILURES_DIR, MANIFEST_NAME, STATS_NAME
from schemas.manifest import metadata_from_json
from schemas.parquet import parquet_file, read_parquet
from schemas.validate import FLOAT_COLUMNS, value_problems

# Every column but the image, the identity and the subject: what the statistics and checks need.
SCAN_COLUMNS = tuple(dict.fromkeys((
    columns.ID, columns.LABEL, columns.LANDMARKER, columns.MODEL_ID, *FLOAT_COLUMNS,
    columns.TRACK_ID, columns.FRAME_INDEX)))
SHARD_PATTERN = "part-*.parquet"
# Metadata every shard of one dataset must agree on (the pipeline version may differ).
SHARED_METADATA = ("model_id", "model_hash", "expression_std", "landmarker",
                   "landmarker_version", "schema_version", "expression_dim",
                   "expression_units")


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One label shard: its name, size, row count and the first row's global position."""

    name: str
    path: str
    bytes: int
    rows: int
    first_row: int


@dataclasses.dataclass(frozen=True)
class LabelMeans:
    """Per-label expression statistics.

    Attributes
    ----------
    labels : tuple of str        sorted label names
    counts : (L,) int64          rows per label
    means : (L, 29) float64      mean expression coefficients per label, sigma units
    """

    labels: tuple
    counts: np.ndarray
    means: np.ndarray


@dataclasses.dataclass(frozen=True)
class Scan:
    """What an output folder holds, and what is wrong with it.

    Attributes
    ----------
    output : str                   the folder
    problems : tuple of str        reasons the folder is not a valid dataset; empty when valid
    shards : tuple of ShardInfo    readable label shards, by name
    metadata : DatasetMetadata or None   the shards' common metadata
    expression : (N, 29) float32   sigma units, rows in shard order
    yaw, pitch, roll : (N,) float32   degrees
    residual : (N,) float32        fit residual over the inter-ocular distance
    label_means : LabelMeans or None   None when no row has a label
    track_id : (N,) object         face track of each row (None: a still image, or a shard of
                                   a schema version before 3)
    frame_index : (N,) int64       sampled video slot of each row (-1 where none)
    failures : pyarrow.Table       every failure row (``FAILURE_SCHEMA``)
    stats : dict or None           ``stats.json`` when present
    """

    output: str
    problems: tuple
    shards: tuple
    metadata: DatasetMetadata | None
    expression: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    residual: np.ndarray
    label_means: LabelMeans | None
    track_id: np.ndarray
    frame_index: np.ndarray
    failures: pa.Table
    stats: dict | None

    @property
    def rows(self) -> int:
        return len(self.residual)


class _Collector:
    """Accumulates the scanned columns of every batch, and the per-label sums."""

    def __init__(self):
        self.parts = {name: [] for name in ("expression", "yaw", "pitch", "roll", "residual")}
        self.ids = []
        self.track_ids = []
        self.frame_index = []
        self.label_sums = {}

    def add(self, batch: pa.RecordBatch) -> None:
        expression = _matrix(batch.column(columns.EXPRESSION), EXPRESSION_DIM)
        self.parts["expression"].append(expression)
        for name, column in (("yaw", columns.YAW), ("pitch", columns.PITCH),
                             ("roll", columns.ROLL), ("residual", columns.FIT_RESIDUAL)):
            self.parts[name].append(batch.column(column).to_numpy(zero_copy_only=False))
        self.ids.append(batch.column(columns.ID))
        names = batch.schema.names
        self.track_ids.extend(batch.column(columns.TRACK_ID).to_pylist()
                              if columns.TRACK_ID in names else [None] * batch.num_rows)
        frames = (batch.column(columns.FRAME_INDEX).fill_null(-1).to_numpy()
                  if columns.FRAME_INDEX in names else np.full(batch.num_rows, -1))
        self.frame_index.append(np.asarray(frames, dtype=np.int64))
        labels = batch.column(columns.LABEL).to_numpy(zero_copy_only=False)
        present = np.array([label is not None for label in labels], dtype=bool)
        if present.any():
            names, inverse = np.unique(labels[present].astype(str), return_inverse=True)
            sums = np.zeros((len(names), EXPRESSION_DIM))
            np.add.at(sums, inverse, expression[present].astype(np.float64))
            counts = np.bincount(inverse, minlength=len(names))
            for name, total, count in zip(names, sums, counts):
                old_total, old_count = self.label_sums.get(str(name), (0.0, 0))
                self.label_sums[str(name)] = (old_total + total, old_count + int(count))

    def array(self, name: str) -> np.ndarray:
        parts = self.parts[name]
        if parts:
            return np.concatenate(parts)
        return np.zeros((0, EXPRESSION_DIM) if name == "expression" else 0, dtype=np.float32)

    def duplicate_ids(self) -> int:
        ids = pa.chunked_array(self.ids, type=pa.string())
        return len(ids) - pc.count_distinct(ids).as_py()

    def label_means(self) -> LabelMeans | None:
        if not self.label_sums:
            return None
        labels = tuple(sorted(self.label_sums))
        counts = np.array([self.label_sums[label][1] for label in labels], dtype=np.int64)
        sums = np.array([self.label_sums[label][0] for label in labels])
        return LabelMeans(labels, counts, sums / counts[:, None])


def _matrix(column: pa.Array, width: int) -> np.ndarray:
    """(rows, width) float32 view of a fixed-size-list column."""
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return values.reshape(-1, width)


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _match(pattern: str) -> list:
    """File metadata (path, size_in_bytes) of ``pattern``, sorted by path."""
    return sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda item: item.path)


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _metadata_problems(name: str, metadata: DatasetMetadata,
                       reference: tuple[str, DatasetMetadata] | None) -> list[str]:
    problems = []
    if metadata.expression_dim != EXPRESSION_DIM:
        problems.append(f"{name}: label dimension {metadata.expression_dim}, expected "
                        f"{EXPRESSION_DIM}")
    if reference is None:
        return problems
    other_name, other = reference
    for field in SHARED_METADATA:
        mine, theirs = getattr(metadata, field), getattr(other, field)
        if mine != theirs:
            problems.append(f"inconsistent metadata: {name} has {field} {_short(mine)}, "
                            f"{other_name} has {_short(theirs)}")
    return problems


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _column_problems(name: str, batch: pa.RecordBatch, metadata: DatasetMetadata) -> list:
    """Row values that contradict the shard's metadata."""
    problems = []
    for column, expected in ((columns.LANDMARKER, metadata.landmarker),
                             (columns.MODEL_ID, metadata.model_id)):
        found = set(pc.unique(batch.column(column)).to_pylist())
        if found - {expected}:
            problems.append(f"{name}: column {column!r} holds {sorted(found - {expected})}, "
                            f"the metadata says {expected!r}")
    return problems


def _scan_shard(path: str, collector: _Collector, *, batch_rows: int):
    """Stream one shard into ``collector``; returns (rows, metadata or None, problems)."""
    name = _base_name(path)
    try:
        with _open(path) as handle:
            shard = parquet_file(handle.read())
            problems = [f"{name}: {problem}" for problem in schema_problems(shard.schema_arrow)]
            if problems:
                return 0, None, problems
            metadata = DatasetMetadata.from_arrow(shard.schema_arrow.metadata)
            rows = 0
            # A shard of an older schema version lacks the columns added after it.
            present = [name for name in SCAN_COLUMNS if name in shard.schema_arrow.names]
            for batch in shard.iter_batches(batch_size=batch_rows, columns=present,
                                            use_threads=False):
                problems.extend(f"{name}: {problem}" for problem in value_problems(batch))
                problems.extend(_column_problems(name, batch, metadata))
                collector.add(batch)
                rows += batch.num_rows
    except (pa.ArrowInvalid, OSError) as error:
        # Rows already collected from a corrupt shard stay: the scan is invalid anyway.
        return 0, None, [f"{name}: unreadable shard: {error}"]
    except SchemaError as error:
        return 0, None, [f"{name}: {error}"]
    return rows, metadata, sorted(set(problems), key=problems.index)


def _read_json(path: str, problems: list) -> dict | None:
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{_base_name(path)}: unreadable: {error}")
        return None


def _manifest_problems(manifest: dict | None, shards: list[ShardInfo],
                       metadata: DatasetMetadata | None) -> list[str]:
    if manifest is None:
        return [f"no {MANIFEST_NAME}: the run did not finish, or this is not an "
                "expnet output folder"]
    problems = []
    listed = {entry["name"]: entry for entry in manifest.get("shards", [])}
    found = {shard.name: shard for shard in shards}
    for name in sorted(set(listed) - set(found)):
        problems.append(f"{name}: listed in {MANIFEST_NAME} but missing or unreadable")
    for name in sorted(set(found) - set(listed)):
        problems.append(f"{name}: not listed in {MANIFEST_NAME} (left from another run?)")
    for name in sorted(set(found) & set(listed)):
        if found[name].rows != listed[name]["rows"]:
            problems.append(f"{name}: {found[name].rows} rows, {MANIFEST_NAME} says "
                            f"{listed[name]['rows']}")
    if metadata is not None and "metadata" in manifest:
        try:
            listed_metadata = metadata_from_json(manifest["metadata"])
        except TypeError as error:
            return [*problems, f"{MANIFEST_NAME}: unreadable metadata: {error}"]
        problems.extend(_metadata_problems("the shards", metadata,
                                           (MANIFEST_NAME, listed_metadata)))
    return problems


def _read_failures(output: str, problems: list) -> pa.Table:
    tables = []
    for item in _match(f"{output}/{FAILURES_DIR}/*.parquet"):
        name = f"{FAILURES_DIR}/{_base_name(item.path)}"
        try:
            with _open(item.path) as handle:
                table = read_parquet(handle.read())
        except (pa.ArrowInvalid, OSError) as error:
            problems.append(f"{name}: unreadable failure file: {error}")
            continue
        missing = [field.name for field in FAILURE_SCHEMA if field.name not in table.schema.names]
        if missing:
            problems.append(f"{name}: failure file lacks columns {missing}")
            continue
        tables.append(table.select(FAILURE_SCHEMA.names).cast(FAILURE_SCHEMA))
    return pa.concat_tables(tables) if tables else FAILURE_SCHEMA.empty_table()


def scan_output(output: str, *, batch_rows: int = 4096) -> Scan:
    """Check an output folder and collect the columns its statistics need.

    Parameters
    ----------
    output : str        folder written by ``expnet generate`` (local or a Beam filesystem)
    batch_rows : int    rows read at a time; images are never read

    Returns
    -------
    Scan   with ``problems`` empty when every shard is readable, follows the schema, has
           finite values, agrees with the other shards and with ``manifest.json``
    """
    output = output.rstrip("/")
    problems = []
    collector = _Collector()
    shards, reference = [], None
    for item in _match(f"{output}/{SHARD_PATTERN}"):
        name = _base_name(item.path)
        rows, metadata, shard_problems = _scan_shard(item.path, collector,
                                                      batch_rows=batch_rows)
        problems.extend(shard_problems)
        if metadata is None:
            continue
        problems.extend(_metadata_problems(name, metadata, reference))
        reference = reference or (name, metadata)
        first_row = shards[-1].first_row + shards[-1].rows if shards else 0
        shards.append(ShardInfo(name, item.path, item.size_in_bytes, rows, first_row))
    if collector.ids and collector.duplicate_ids():
        problems.append(f"{collector.duplicate_ids()} duplicate ids across the shards")
    manifest = _read_json(f"{output}/{MANIFEST_NAME}", problems)
    if manifest is None and not shards and not problems:
        # Object stores have no folders, so a missing folder looks like an empty one.
        problems.append(f"{output}: no {SHARD_PATTERN} shards and no {MANIFEST_NAME}: "
                        "not an expnet output folder (or it does not exist)")
    else:
        if not shards and not problems:
            problems.append(f"{output}: no readable {SHARD_PATTERN} shards")
        problems.extend(_manifest_problems(manifest, shards, reference and reference[1]))
    failures = _read_failures(output, problems)
    stats = _read_json(f"{output}/{STATS_NAME}", problems)
    return Scan(
        output=output, problems=tuple(problems), shards=tuple(shards),
        metadata=reference[1] if reference else None,
        expression=collector.array("expression"), yaw=collector.array("yaw"),
        pitch=collector.array("pitch"), roll=collector.array("roll"),
        residual=collector.array("residual"), label_means=collector.label_means(),
        track_id=np.array(collector.track_ids, dtype=object),
        frame_index=(np.concatenate(collector.frame_index) if collector.frame_index
                     else np.zeros(0, dtype=np.int64)),
        failures=failures, stats=stats)


def read_rows(scan: Scan, positions, columns_to_read) -> list[dict]:
    """Fetch rows by their position in the dataset, reading only their row groups.

    Parameters
    ----------
    scan : Scan
    positions : (M,) int         global row numbers (shards in name order, rows in file order)
    columns_to_read : sequence of str

    Returns
    -------
    rows : list of dict          in the order of ``positions``
    """
    positions = np.asarray(positions, dtype=np.int64)
    if positions.ndim != 1 or np.any((positions < 0) | (positions >= scan.rows)):
        raise ValueError(f"positions must be a 1-D array of row numbers in [0, {scan.rows}), "
                         f"got shape {positions.shape}")
    starts = np.array([shard.first_row for shard in scan.shards])
    shard_of_row = np.searchsorted(starts, positions, side="right") - 1
    found = {}
    for shard_index in np.unique(shard_of_row):
        shard = scan.shards[shard_index]
        wanted = positions[shard_of_row == shard_index] - shard.first_row
        with _open(shard.path) as handle:
            parquet = parquet_file(handle.read())
            group_rows = [parquet.metadata.row_group(index).num_rows
                          for index in range(parquet.num_row_groups)]
            group_starts = np.concatenate([[0], np.cumsum(group_rows)])
            group_of_row = np.searchsorted(group_starts, wanted, side="right") - 1
            for group in np.unique(group_of_row):
                table = parquet.read_row_group(int(group), columns=list(columns_to_read),
                                               use_threads=False)
                for local in wanted[group_of_row == group]:
                    row = table.slice(int(local - group_starts[group]), 1).to_pylist()[0]
                    found[int(local + shard.first_row)] = row
    return [found[int(position)] for position in positions]
