"""Read and check an ``expnet generate`` output folder without loading its images.

:func:`scan_output` streams the shards' row groups, reading only the small columns (labels,
pose, landmarks, residual), and checks every shard against the schema contract, the shards
against each other and against ``manifest.json``. :func:`read_rows` then fetches a few rows,
images included, by their position in the dataset. The files are read through
:class:`schemas.reader.DatasetReader`; paths may be local or any URI ``pyarrow.fs`` or fsspec
knows (``gs://``, ``s3://``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import EXPRESSION_DIM, FAILURE_SCHEMA, DatasetMetadata, SchemaError, schema_problems
from schemas import rows as columns
from schemas.layout import FAILURES_DIR, MANIFEST_NAME, SHARD_GLOB, STATS_NAME
from schemas.manifest import DatasetFileError, Manifest, metadata_from_json
from schemas.reader import DatasetReader, storage_for
from schemas.rows import NUM_BLENDSHAPES
from schemas.validate import FLOAT_COLUMNS, value_problems

# Every column but the image, the identity and the subject: what the statistics and checks need.
# Shards of schema version 1 lack ``blendshapes``; a column a shard lacks is not read.
SCAN_COLUMNS = tuple(dict.fromkeys((
    columns.ID, columns.LABEL, columns.LANDMARKER, columns.MODEL_ID, *FLOAT_COLUMNS,
    columns.BLENDSHAPES, columns.TRACK_ID, columns.FRAME_INDEX)))
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
    """Per-label means of one per-row vector (the expression, the blendshape weights).

    Attributes
    ----------
    labels : tuple of str        sorted label names
    counts : (L,) int64          rows per label that hold the vector
    means : (L, D) float64       mean vector per label (expression: D = 29, sigma units;
                                 blendshapes: D = 52 weights in [0, 1])
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
    label_means : LabelMeans or None   mean expression per label; None when no row has a label
    blendshape_means : LabelMeans or None   mean ``blendshapes`` weights per label over the
                                   rows that hold them; None when no labelled row does
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
    blendshape_means: LabelMeans | None
    track_id: np.ndarray
    frame_index: np.ndarray
    failures: pa.Table
    stats: dict | None

    @property
    def rows(self) -> int:
        return len(self.residual)


class _LabelSums:
    """Running per-label sums and counts of one per-row vector."""

    def __init__(self, width: int):
        self.width = width
        self.sums = {}

    def add(self, labels: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` (R, width) of rows whose ``labels`` (R,) object may be None."""
        present = np.array([label is not None for label in labels], dtype=bool)
        if not present.any():
            return
        names, inverse = np.unique(labels[present].astype(str), return_inverse=True)
        sums = np.zeros((len(names), self.width))
        np.add.at(sums, inverse, values[present].astype(np.float64))
        counts = np.bincount(inverse, minlength=len(names))
        for name, total, count in zip(names, sums, counts):
            old_total, old_count = self.sums.get(str(name), (0.0, 0))
            self.sums[str(name)] = (old_total + total, old_count + int(count))

    def means(self) -> LabelMeans | None:
        if not self.sums:
            return None
        labels = tuple(sorted(self.sums))
        counts = np.array([self.sums[label][1] for label in labels], dtype=np.int64)
        sums = np.array([self.sums[label][0] for label in labels])
        return LabelMeans(labels, counts, sums / counts[:, None])


class _Collector:
    """Accumulates the scanned columns of every batch, and the per-label sums."""

    def __init__(self):
        self.parts = {name: [] for name in ("expression", "yaw", "pitch", "roll", "residual")}
        self.ids = []
        self.expression_sums = _LabelSums(EXPRESSION_DIM)
        self.blendshape_sums = _LabelSums(NUM_BLENDSHAPES)
        self.track_ids = []
        self.frame_index = []

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
        self.expression_sums.add(labels, expression)
        if columns.BLENDSHAPES in batch.schema.names:
            weights = batch.column(columns.BLENDSHAPES)
            # Null rows (a model without named units) have no weights to average.
            held = weights.is_valid().to_numpy(zero_copy_only=False)
            if held.any():
                self.blendshape_sums.add(labels[held],
                                         _matrix(weights.filter(held), NUM_BLENDSHAPES))

    def array(self, name: str) -> np.ndarray:
        parts = self.parts[name]
        if parts:
            return np.concatenate(parts)
        return np.zeros((0, EXPRESSION_DIM) if name == "expression" else 0, dtype=np.float32)

    def duplicate_ids(self) -> int:
        ids = pa.chunked_array(self.ids, type=pa.string())
        return len(ids) - pc.count_distinct(ids).as_py()


def _matrix(column: pa.Array, width: int) -> np.ndarray:
    """(rows, width) float32 view of a fixed-size-list column."""
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return values.reshape(-1, width)


def dataset_reader(output: str) -> DatasetReader:
    """The reader of an output folder: local, or any URI ``pyarrow.fs`` or fsspec knows."""
    storage, folder = storage_for(output)
    return DatasetReader(folder, storage)


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


def _scan_shard(dataset: DatasetReader, path: str, collector: _Collector, *, batch_rows: int):
    """Stream one shard into ``collector``; returns (rows, metadata or None, problems)."""
    name = _base_name(path)
    try:
        shard = dataset.parquet_file(path)
        problems = [f"{name}: {problem}" for problem in schema_problems(shard.schema_arrow)]
        if problems:
            return 0, None, problems
        metadata = DatasetMetadata.from_arrow(shard.schema_arrow.metadata)
        rows = 0
        held = [name for name in SCAN_COLUMNS if name in shard.schema_arrow.names]
        for batch in shard.iter_batches(batch_size=batch_rows, columns=held,
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


def _read_json_file(read, name: str, problems: list):
    """``read()`` (the manifest or the stats), or None with a problem when it is unreadable."""
    try:
        return read()
    except (OSError, DatasetFileError) as error:
        problems.append(f"{name}: unreadable: {error}")
        return None


def _manifest_problems(manifest: Manifest | None, shards: list[ShardInfo],
                       metadata: DatasetMetadata | None) -> list[str]:
    if manifest is None:
        return [f"no {MANIFEST_NAME}: the run did not finish, or this is not an "
                "expnet output folder"]
    problems = []
    listed = {entry.name: entry for entry in manifest.shards}
    found = {shard.name: shard for shard in shards}
    for name in sorted(set(listed) - set(found)):
        problems.append(f"{name}: listed in {MANIFEST_NAME} but missing or unreadable")
    for name in sorted(set(found) - set(listed)):
        problems.append(f"{name}: not listed in {MANIFEST_NAME} (left from another run?)")
    for name in sorted(set(found) & set(listed)):
        if found[name].rows != listed[name].rows:
            problems.append(f"{name}: {found[name].rows} rows, {MANIFEST_NAME} says "
                            f"{listed[name].rows}")
    if metadata is not None and "metadata" in manifest.raw:
        try:
            listed_metadata = metadata_from_json(manifest.raw["metadata"])
        except TypeError as error:
            return [*problems, f"{MANIFEST_NAME}: unreadable metadata: {error}"]
        problems.extend(_metadata_problems("the shards", metadata,
                                           (MANIFEST_NAME, listed_metadata)))
    return problems


def _read_failures(dataset: DatasetReader, problems: list) -> pa.Table:
    tables = []
    for item in dataset.failure_files():
        name = f"{FAILURES_DIR}/{item.name}"
        try:
            table = dataset.read_table(item.path)
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
    output : str        folder written by ``expnet generate`` (local or a URI, see
                        :func:`schemas.reader.storage_for`)
    batch_rows : int    rows read at a time; images are never read

    Returns
    -------
    Scan   with ``problems`` empty when every shard is readable, follows the schema, has
           finite values, agrees with the other shards and with ``manifest.json``
    """
    output = output.rstrip("/")
    dataset = dataset_reader(output)
    problems = []
    collector = _Collector()
    shards, reference = [], None
    for item in dataset.shard_files():
        name = item.name
        rows, metadata, shard_problems = _scan_shard(dataset, item.path, collector,
                                                      batch_rows=batch_rows)
        problems.extend(shard_problems)
        if metadata is None:
            continue
        problems.extend(_metadata_problems(name, metadata, reference))
        reference = reference or (name, metadata)
        first_row = shards[-1].first_row + shards[-1].rows if shards else 0
        shards.append(ShardInfo(name, item.path, item.size, rows, first_row))
    if collector.ids and collector.duplicate_ids():
        problems.append(f"{collector.duplicate_ids()} duplicate ids across the shards")
    manifest = _read_json_file(dataset.manifest, MANIFEST_NAME, problems)
    if manifest is None and not shards and not problems:
        # Object stores have no folders, so a missing folder looks like an empty one.
        problems.append(f"{output}: no {SHARD_GLOB} shards and no {MANIFEST_NAME}: "
                        "not an expnet output folder (or it does not exist)")
    else:
        if not shards and not problems:
            problems.append(f"{output}: no readable {SHARD_GLOB} shards")
        problems.extend(_manifest_problems(manifest, shards, reference and reference[1]))
    failures = _read_failures(dataset, problems)
    stats = _read_json_file(dataset.stats, STATS_NAME, problems)
    return Scan(
        output=output, problems=tuple(problems), shards=tuple(shards),
        metadata=reference[1] if reference else None,
        expression=collector.array("expression"), yaw=collector.array("yaw"),
        pitch=collector.array("pitch"), roll=collector.array("roll"),
        residual=collector.array("residual"),
        label_means=collector.expression_sums.means(),
        blendshape_means=collector.blendshape_sums.means(),
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
    columns_to_read : sequence of str   a column a shard lacks (``blendshapes`` in schema
                                 version 1) reads as None

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
    dataset = dataset_reader(scan.output)
    found = {}
    for shard_index in np.unique(shard_of_row):
        shard = scan.shards[shard_index]
        wanted = positions[shard_of_row == shard_index] - shard.first_row
        parquet = dataset.parquet_file(shard.path)
        group_rows = [parquet.metadata.row_group(index).num_rows
                      for index in range(parquet.num_row_groups)]
        group_starts = np.concatenate([[0], np.cumsum(group_rows)])
        group_of_row = np.searchsorted(group_starts, wanted, side="right") - 1
        held = [name for name in columns_to_read if name in parquet.schema_arrow.names]
        absent = dict.fromkeys(name for name in columns_to_read if name not in held)
        for group in np.unique(group_of_row):
            table = parquet.read_row_group(int(group), columns=held, use_threads=False)
            for local in wanted[group_of_row == group]:
                row = table.slice(int(local - group_starts[group]), 1).to_pylist()[0]
                found[int(local + shard.first_row)] = {**row, **absent}
    return [found[int(position)] for position in positions]
