"""The one dataset reader: manifest, stats and shard files, through any storage."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from schemas.layout import shard_name
from schemas.manifest import DatasetFileError, ManifestError, ManifestShard
from schemas.reader import ArrowStorage, DatasetReader, FileEntry, LocalStorage, storage_for


def _write_parquet(path, values) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": values}), buffer)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def dataset(tmp_path):
    """A finished run's folder: two listed shards, one unlisted, a failure file, stats."""
    folder = tmp_path / "out"
    (folder / "failures").mkdir(parents=True)
    for index, values in enumerate([["a", "b"], ["c"]]):
        _write_parquet(folder / shard_name(index, 2), values)
    _write_parquet(folder / shard_name(0, 1, "part-r001"), ["d"])
    _write_parquet(folder / "failures" / shard_name(0, 1), ["e"])
    manifest = {"shards": [{"name": shard_name(1, 2), "rows": 1},
                           {"name": shard_name(0, 2), "rows": 2}],
                "rows": 3, "runs": [{"run": 0}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "stats.json").write_text(json.dumps({"inputs": 4, "written": 3}))
    return folder


def test_manifest_and_stats_are_parsed(dataset):
    reader = DatasetReader(str(dataset))
    manifest = reader.manifest()
    assert manifest.shards == (ManifestShard(shard_name(1, 2), 1),
                               ManifestShard(shard_name(0, 2), 2))
    assert manifest.raw["runs"] == [{"run": 0}]
    assert reader.stats() == {"inputs": 4, "written": 3}


def test_the_listed_shards_are_read_in_manifest_order(dataset):
    reader = DatasetReader(str(dataset) + "/")
    assert reader.shard_paths() == [f"{dataset}/{shard_name(1, 2)}",
                                    f"{dataset}/{shard_name(0, 2)}"]


def test_shard_and_failure_files_are_every_file_present(dataset):
    reader = DatasetReader(str(dataset))
    shards = reader.shard_files()
    # Listed or not: an interrupted incremental run's shard is present too.
    assert [entry.name for entry in shards] == [
        shard_name(0, 2), shard_name(1, 2), shard_name(0, 1, "part-r001")]
    assert all(entry.size == (dataset / entry.name).stat().st_size for entry in shards)
    assert [entry.path for entry in reader.failure_files()] == [
        f"{dataset}/failures/{shard_name(0, 1)}"]


def test_a_folder_without_manifest_falls_back_to_the_parquet_files_inside(dataset):
    (dataset / "manifest.json").unlink()
    (dataset / "notes.txt").write_text("not a shard")
    reader = DatasetReader(str(dataset))
    assert reader.manifest() is None
    # failures/ is one level down, so it stays out; so does every file that is not Parquet.
    assert reader.shard_paths() == [f"{dataset}/{name}" for name in sorted(
        [shard_name(0, 2), shard_name(1, 2), shard_name(0, 1, "part-r001")])]


def test_a_missing_folder_has_no_manifest_stats_or_files(tmp_path):
    reader = DatasetReader(str(tmp_path / "nothing"))
    assert reader.manifest() is None
    assert reader.stats() is None
    assert reader.shard_files() == []
    assert reader.shard_paths() == []


@pytest.mark.parametrize("data", [b"{truncated", b'["a list"]', b'{"rows": 3}'])
def test_a_corrupt_manifest_raises_an_error_naming_the_file(dataset, data):
    (dataset / "manifest.json").write_bytes(data)
    reader = DatasetReader(str(dataset))
    with pytest.raises(ManifestError, match=f"{dataset}/manifest.json: "):
        reader.manifest()
    # Reading the shards would silently take unlisted ones; it refuses instead.
    with pytest.raises(ManifestError):
        reader.shard_paths()


def test_corrupt_stats_raise_a_dataset_file_error(dataset):
    (dataset / "stats.json").write_bytes(b"\xff\xfe")
    with pytest.raises(DatasetFileError, match="stats.json: not JSON"):
        DatasetReader(str(dataset)).stats()


def test_shards_are_read_from_memory(dataset):
    reader = DatasetReader(str(dataset))
    path = reader.path(shard_name(0, 2))
    assert reader.read_table(path).column("id").to_pylist() == ["a", "b"]
    assert reader.parquet_file(path).metadata.num_rows == 2


class RecordingStorage(LocalStorage):
    """The local disk, remembering every path it opened."""

    def __init__(self):
        self.opened = []

    def open(self, path):
        self.opened.append(path)
        return super().open(path)


def test_the_bytes_come_through_the_given_storage(dataset):
    storage = RecordingStorage()
    reader = DatasetReader(str(dataset), storage)
    reader.manifest()
    reader.stats()
    assert storage.opened == [f"{dataset}/manifest.json", f"{dataset}/stats.json"]


def test_arrow_storage_reads_the_same_as_the_local_one(dataset):
    storage, folder = storage_for(str(dataset))
    assert isinstance(storage.filesystem, pafs.LocalFileSystem)
    arrow, local = DatasetReader(folder, storage), DatasetReader(str(dataset))
    assert arrow.manifest() == local.manifest()
    assert arrow.shard_files() == local.shard_files()
    assert arrow.failure_files() == local.failure_files()
    (dataset / "manifest.json").unlink()
    assert arrow.shard_paths() == local.shard_paths()


def test_arrow_storage_takes_an_fsspec_filesystem():
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/reader-test/manifest.json", json.dumps(
        {"shards": [{"name": "part-00000-of-00001.parquet", "rows": 0}]}).encode())
    memory.pipe("/reader-test/part-00000-of-00001.parquet", b"")
    try:
        storage, folder = storage_for("memory://reader-test", memory)
        reader = DatasetReader(folder, storage)
        assert reader.shard_paths() == [f"{folder}/part-00000-of-00001.parquet"]
        assert [entry.name for entry in reader.shard_files()] == ["part-00000-of-00001.parquet"]
    finally:
        memory.rm("/reader-test", recursive=True)


def test_match_of_a_missing_folder_is_empty(tmp_path):
    storage = ArrowStorage(pafs.LocalFileSystem())
    assert storage.match(f"{tmp_path}/missing/*.parquet") == []
    assert FileEntry("a/b/part.parquet", 3).name == "part.parquet"
