"""Finding label shards, reading their footers and checking their metadata contract.

A :class:`ShardSet` is the list of Parquet shards behind a dataset, each with its schema
metadata and the row count of every row group. Paths may be local, any URI pyarrow knows
(``s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http``, ``gs://``, ``hdfs://``) or
any fsspec URI; a folder means the shards :meth:`schemas.reader.DatasetReader.shard_paths`
names (its manifest's, else the ``*.parquet`` files directly inside) and a last component
with ``*`` or ``?`` is a glob.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas import ROW_SCHEMA, DatasetMetadata, SchemaError, schema_problems
from schemas.reader import ArrowStorage, DatasetReader, storage_for

FOOTER_THREADS = 16
GLOB_CHARACTERS = "*?["


@dataclasses.dataclass(frozen=True)
class Shard:
    """One Parquet shard: where it is, what its metadata says, how its rows are grouped.

    Attributes
    ----------
    path : str                       path inside ``filesystem``
    metadata : DatasetMetadata
    row_group_rows : tuple of int    rows of each row group, in file order
    footer : pq.FileMetaData         the parsed footer, so workers need not read it again
    """

    path: str
    metadata: DatasetMetadata
    row_group_rows: tuple
    footer: pq.FileMetaData

    @property
    def num_rows(self) -> int:
        return sum(self.row_group_rows)


def expand_paths(storage: ArrowStorage, path: str) -> list[str]:
    """Shard files named by ``path``: itself, the shards of a dataset folder, or a glob."""
    info = storage.filesystem.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [path]
    if info.type == pafs.FileType.Directory:
        return DatasetReader(path, storage).shard_paths()
    parent, _, pattern = path.rstrip("/").rpartition("/")
    if any(character in pattern for character in GLOB_CHARACTERS):
        if storage.filesystem.get_file_info(parent).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"no folder {parent!r} for the glob {pattern!r}")
        return [entry.path for entry in storage.match(path)]
    raise FileNotFoundError(f"no shard file or folder at {path!r}")


def read_shard(storage: ArrowStorage, path: str) -> Shard:
    """Read the footer of one shard and check its schema.

    Raises
    ------
    SchemaError   when the schema or its metadata is not a known label-shard schema
    """
    with storage.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        footer = parquet.metadata
    problems = schema_problems(schema)
    if problems:
        raise SchemaError(f"{path}: not a readable label shard: {'; '.join(problems)}")
    rows = tuple(footer.row_group(index).num_rows for index in range(footer.num_row_groups))
    return Shard(path, DatasetMetadata.from_arrow(schema.metadata), rows, footer)


def check_one_model(shards: Sequence[Shard]) -> None:
    """Refuse shards whose labels come from different morphable models.

    Raises
    ------
    SchemaError   naming each model hash and one shard that carries it
    """
    by_hash = {}
    for shard in shards:
        by_hash.setdefault(shard.metadata.model_hash, shard)
    if len(by_hash) > 1:
        listing = ", ".join(f"{shard.metadata.model_id} {model_hash[:12]} ({shard.path})"
                            for model_hash, shard in by_hash.items())
        raise SchemaError(f"shards carry labels of {len(by_hash)} different models: "
                          f"{listing}; sigma units of different models do not mix "
                          "(pass allow_mixed_models=True to read them anyway)")


class ShardSet:
    """The shards of a dataset, their metadata and row groups.

    Parameters
    ----------
    path_or_paths : str, PathLike or sequence of them
        shard files, folders of shards or globs, local or remote
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
        for paths a URI cannot describe (credentials, custom endpoints)
    allow_mixed_models : bool
        read shards whose labels come from different models (their sigma units differ)

    Raises
    ------
    FileNotFoundError   when a path names nothing or no shard is found
    SchemaError         on an unknown schema version, a broken schema or mixed models
    """

    def __init__(self, path_or_paths, *, filesystem=None, allow_mixed_models: bool = False):
        if isinstance(path_or_paths, (str, os.PathLike)):
            path_or_paths = [path_or_paths]
        files = []
        for uri in path_or_paths:
            resolved, path = storage_for(uri, filesystem)
            paths = expand_paths(resolved, path)
            if not paths:
                raise FileNotFoundError(f"no *.parquet shards at {os.fspath(uri)!r}")
            files.extend((resolved, found) for found in paths)
        if not files:
            raise FileNotFoundError("no shard paths given")
        self.storages = tuple(resolved for resolved, _ in files)
        with ThreadPoolExecutor(max_workers=min(FOOTER_THREADS, len(files))) as pool:
            self.shards = tuple(pool.map(lambda item: read_shard(*item), files))
        if not allow_mixed_models:
            check_one_model(self.shards)
        self.allow_mixed_models = allow_mixed_models

    @property
    def metadata(self) -> DatasetMetadata:
        """The metadata of the first shard (the same model as every shard unless mixed)."""
        return self.shards[0].metadata

    @property
    def model_hashes(self) -> tuple:
        return tuple(sorted({shard.metadata.model_hash for shard in self.shards}))

    @property
    def expression_std(self) -> tuple:
        """The label model's 29 standard deviations: ``raw = sigma * expression_std``.

        Raises
        ------
        SchemaError   when the shards mix models, so no single answer exists
        """
        if len(self.model_hashes) > 1:
            raise SchemaError("shards mix models: expression_std differs per shard "
                              "(see each shard's metadata)")
        return self.metadata.expression_std

    @property
    def num_rows(self) -> int:
        return sum(shard.num_rows for shard in self.shards)

    def row_groups(self) -> list[tuple[int, int, int]]:
        """Every row group as ``(shard index, row group index, rows)``, in file order."""
        return [(shard_index, group, rows)
                for shard_index, shard in enumerate(self.shards)
                for group, rows in enumerate(shard.row_group_rows)]

    def open(self, shard_index: int) -> pq.ParquetFile:
        """A reader of one shard that reuses its footer (one request fewer per open).

        Remote reads coalesce a row group's column chunks into few requests (``pre_buffer``);
        local reads skip that extra copy. Close it with ``.close(force=True)``.
        """
        shard = self.shards[shard_index]
        filesystem = self.storages[shard_index].filesystem
        handle = filesystem.open_input_file(shard.path)
        remote = not isinstance(filesystem, pafs.LocalFileSystem)
        return pq.ParquetFile(handle, metadata=shard.footer, pre_buffer=remote)

    def read_table(self, columns: Sequence[str]) -> pa.Table:
        """All rows of ``columns`` in one table (small datasets and label-only reads)."""
        tables = []
        for shard_index in range(len(self.shards)):
            parquet = self.open(shard_index)
            try:
                table = read_columns(parquet, columns)
            finally:
                parquet.close(force=True)
            tables.append(table.replace_schema_metadata(None))
        return pa.concat_tables(tables)


def read_columns(parquet: pq.ParquetFile, columns: Sequence[str], *,
                 row_group: int | None = None) -> pa.Table:
    """Read ``columns`` (Parquet column paths, e.g. ``image.bytes``) of a shard, or of one of
    its row groups; a column an older schema version lacks (``schemas.rows.COLUMN_SINCE``)
    comes back as nulls of its type."""
    names = set(parquet.schema_arrow.names)
    present = [name for name in columns if name.split(".", 1)[0] in names]
    table = (parquet.read(columns=present) if row_group is None
             else parquet.read_row_group(row_group, columns=present))
    for name in columns:
        if name.split(".", 1)[0] not in names:
            field = ROW_SCHEMA.field(name)
            table = table.append_column(field, pa.nulls(table.num_rows, type=field.type))
    return table
