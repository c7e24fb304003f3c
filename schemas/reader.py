"""One reader of a dataset folder: its manifest, its stats, its shard and failure files.

The layout (names in :mod:`schemas.layout`) is read here only; the bytes come through a
:class:`Storage` the caller chooses, so the same reader serves the pipelines (Beam's
``FileSystems``), inspection and training (``pyarrow.fs`` or fsspec, see :func:`storage_for`)
and tests (:class:`LocalStorage`), and this package needs no Beam.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
from collections.abc import Sequence
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.layout import FAILURES_DIR, MANIFEST_NAME, SHARD_GLOB, SHARD_SUFFIX, STATS_NAME
from schemas.manifest import Manifest, parse_manifest, parse_stats
from schemas.parquet import parquet_file, read_parquet

__all__ = ["ArrowStorage", "DatasetReader", "FileEntry", "LocalStorage", "Storage",
           "storage_for"]


@dataclasses.dataclass(frozen=True, order=True)
class FileEntry:
    """A file a storage matched: its full path and its size in bytes."""

    path: str
    size: int

    @property
    def name(self) -> str:
        """The last component of the path."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class Storage(Protocol):
    """Where a dataset's bytes come from: open a file, ask whether it exists, match a glob.

    A glob's wildcards stand in its last component only; ``match`` returns entries sorted by
    path, and an empty list for a folder that does not exist.
    """

    def open(self, path: str) -> BinaryIO: ...

    def exists(self, path: str) -> bool: ...

    def match(self, pattern: str) -> list[FileEntry]: ...


class LocalStorage:
    """Files on the local disk, read with Python's own ``open`` (no Arrow thread)."""

    def open(self, path: str) -> BinaryIO:
        return open(path, "rb")

    def exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def match(self, pattern: str) -> list[FileEntry]:
        return sorted(FileEntry(path, os.path.getsize(path)) for path in glob.glob(pattern)
                      if os.path.isfile(path))


class ArrowStorage:
    """Files on a ``pyarrow.fs`` filesystem (local, S3, GCS, HDFS, or fsspec through it).

    ``open`` returns a random-access ``NativeFile``, so a Parquet reader can fetch a footer
    or one row group without reading the whole file.
    """

    def __init__(self, filesystem: pafs.FileSystem):
        self.filesystem = filesystem

    def open(self, path: str) -> pa.NativeFile:
        return self.filesystem.open_input_file(path)

    def exists(self, path: str) -> bool:
        return self.filesystem.get_file_info(path).type == pafs.FileType.File

    def match(self, pattern: str) -> list[FileEntry]:
        parent, _, last = pattern.rstrip("/").rpartition("/")
        if self.filesystem.get_file_info(parent).type != pafs.FileType.Directory:
            return []
        listing = self.filesystem.get_file_info(pafs.FileSelector(parent))
        return sorted(FileEntry(entry.path, entry.size) for entry in listing
                      if entry.type == pafs.FileType.File
                      and fnmatch.fnmatch(entry.path.rpartition("/")[2], last))


def storage_for(uri, filesystem=None) -> tuple[ArrowStorage, str]:
    """The storage holding ``uri`` and the path of ``uri`` inside it.

    ``filesystem`` may be a ``pyarrow.fs.FileSystem`` or an fsspec filesystem (credentials,
    custom endpoints); without one it is inferred from the URI: pyarrow's own filesystems
    first, then fsspec's. A plain path is a local one.
    """
    uri = os.fspath(uri)
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return ArrowStorage(filesystem), uri.split("://", 1)[-1].split("?", 1)[0]
    if "://" not in uri:
        return ArrowStorage(pafs.LocalFileSystem()), os.path.abspath(uri)
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        # A scheme pyarrow has no native filesystem for: let fsspec find one.
        import fsspec

        fsspec_filesystem, path = fsspec.core.url_to_fs(uri)
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_filesystem))
    return ArrowStorage(filesystem), path


class DatasetReader:
    """The files of one dataset folder, read through a storage.

    Parameters
    ----------
    folder : str          the dataset folder, as ``storage`` names it (no trailing ``/``)
    storage : Storage     where the bytes come from; the local disk by default
    """

    def __init__(self, folder: str, storage: Storage | None = None):
        self.folder = os.fspath(folder).rstrip("/")
        self.storage = storage if storage is not None else LocalStorage()

    def path(self, name: str) -> str:
        """The path of ``name`` (relative to the folder) inside the storage."""
        return f"{self.folder}/{name}"

    def read_bytes(self, path: str) -> bytes:
        """The whole of the file at ``path``; ``OSError`` when it cannot be read."""
        with self.storage.open(path) as handle:
            return handle.read()

    def manifest(self) -> Manifest | None:
        """The parsed ``manifest.json``, or None when the folder has none (no finished run).

        Raises
        ------
        ManifestError   naming the file, when it is not a valid manifest
        """
        return self._parsed(MANIFEST_NAME, parse_manifest)

    def stats(self) -> dict | None:
        """The parsed ``stats.json``, or None when the folder has none.

        Raises
        ------
        DatasetFileError   naming the file, when it is not a JSON object
        """
        return self._parsed(STATS_NAME, parse_stats)

    def _parsed(self, name: str, parse):
        """``parse`` of file ``name``'s bytes, or None when the folder has no such file."""
        path = self.path(name)
        if not self.storage.exists(path):
            return None
        return parse(self.read_bytes(path), source=path)

    def shard_files(self) -> list[FileEntry]:
        """Every label shard in the folder, of any run, listed by the manifest or not."""
        return self.storage.match(self.path(SHARD_GLOB))

    def failure_files(self) -> list[FileEntry]:
        """Every failure file of the folder's ``failures/``."""
        return self.storage.match(self.path(f"{FAILURES_DIR}/*{SHARD_SUFFIX}"))

    def shard_paths(self) -> list[str]:
        """The shards to read: those the manifest lists, else every Parquet file directly inside.

        ``expnet generate`` writes the manifest last, so it names exactly the shards of complete
        runs; the fallback takes a folder of shards written by hand, and leaves ``failures/``
        out because it does not descend.

        Raises
        ------
        ManifestError   when the folder has a manifest that is not valid
        """
        manifest = self.manifest()
        if manifest is not None:
            return manifest.shard_paths(self.folder)
        return [entry.path for entry in self.storage.match(self.path(f"*{SHARD_SUFFIX}"))]

    def parquet_file(self, path: str) -> pq.ParquetFile:
        """The Parquet file at ``path`` read into memory, its footer parsed.

        Decoding it later starts no Arrow thread (see :mod:`schemas.parquet`).
        """
        return parquet_file(self.read_bytes(path))

    def read_table(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The table in the Parquet file at ``path``, or ``columns`` of it, decoded here."""
        return read_parquet(self.read_bytes(path), columns)
