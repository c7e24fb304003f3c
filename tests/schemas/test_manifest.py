"""The manifest reader: the shards a finished run lists, and what it rejects."""

import dataclasses
import json

import pytest

from schemas import DatasetMetadata
from schemas.manifest import ManifestError, ManifestShard, metadata_from_json, parse_manifest

METADATA = DatasetMetadata(model_id="open-makehuman-v1", model_hash="ab" * 32,
                           landmarker="dlib", landmarker_version="19.24",
                           pipeline_version="0.3.0",
                           expression_std=tuple(float(k) for k in range(1, 30)))


def test_listed_shards_come_back_in_order_with_their_paths():
    data = json.dumps({"shards": [{"name": "part-00001-of-00002.parquet", "rows": 3},
                                  {"name": "part-00000-of-00002.parquet", "rows": 5}],
                       "rows": 8, "runs": [{"fingerprint": "f"}]}).encode()
    manifest = parse_manifest(data)
    assert manifest.shards == (ManifestShard("part-00001-of-00002.parquet", 3),
                               ManifestShard("part-00000-of-00002.parquet", 5))
    assert manifest.shard_paths("s3://bucket/out/") == [
        "s3://bucket/out/part-00001-of-00002.parquet",
        "s3://bucket/out/part-00000-of-00002.parquet"]
    assert manifest.raw["runs"] == [{"fingerprint": "f"}]


@pytest.mark.parametrize("data", [b"{not json", b"[]", b'{"rows": 1}',
                                  b'{"shards": [{"rows": 1}]}', b"\xff\xfe"])
def test_malformed_manifests_raise_a_manifest_error(data):
    with pytest.raises(ManifestError):
        parse_manifest(data)


def test_metadata_round_trips_through_json():
    values = json.loads(json.dumps(dataclasses.asdict(METADATA)))
    assert metadata_from_json(values) == METADATA
    with pytest.raises(TypeError):
        metadata_from_json({**values, "unknown_field": 1})
