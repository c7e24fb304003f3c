"""Schema version 2 adds the nullable ``blendshapes`` column, version 3 the video columns
(``frame_index``, ``time_s``, ``track_id``) and ``face_descriptor``; shards of versions 1 and 2
stay readable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import ROW_SCHEMA, SCHEMA_VERSION, DatasetMetadata, schema_problems, table_problems
from schemas import rows as columns
from tests.training.conftest import latent_rows, synthetic_metadata
from training import ExpressionShards

NAMES = tuple(f"unit{k}" for k in range(columns.NUM_BLENDSHAPES))


def version_1_shard(path, count: int = 5):
    """A shard as schema version 1 wrote it: no blendshapes column, no names key."""
    metadata = synthetic_metadata(schema_version=1).to_arrow()
    del metadata[b"expnet.blendshape_names"]
    schema = pa.schema([field for field in ROW_SCHEMA
                        if columns.COLUMN_SINCE.get(field.name, 0) <= 1], metadata=metadata)
    rows = sorted(latent_rows(count, seed=3), key=lambda row: row[columns.ID])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def version_2_shard(path, count: int = 4):
    """A shard as schema version 2 wrote it: blendshapes, no video columns."""
    metadata = synthetic_metadata(schema_version=2).to_arrow()
    schema = pa.schema([field for field in ROW_SCHEMA
                        if columns.COLUMN_SINCE.get(field.name, 0) <= 2], metadata=metadata)
    rows = sorted(latent_rows(count, seed=5), key=lambda row: row[columns.ID])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_version_2_shards_lack_the_video_columns_and_still_read(tmp_path):
    path = version_2_shard(tmp_path / "part-00000-of-00001.parquet")
    table = pq.read_table(path)
    assert columns.TRACK_ID not in table.schema.names
    assert schema_problems(table.schema) == [] and table_problems(table) == []
    assert sum(1 for _ in ExpressionShards(tmp_path, shuffle=False)) == 4
    # The same schema declared as version 3 is missing the four columns.
    current = table.schema.with_metadata(synthetic_metadata(schema_version=3).to_arrow())
    assert schema_problems(current) == [f"missing column {name!r}" for name in (
        columns.FRAME_INDEX, columns.TIME_S, columns.TRACK_ID, columns.FACE_DESCRIPTOR)]


def test_version_1_shards_pass_the_validators_and_train(tmp_path):
    path = version_1_shard(tmp_path / "part-00000-of-00001.parquet")
    table = pq.read_table(path)
    assert columns.BLENDSHAPES not in table.schema.names
    assert schema_problems(table.schema) == []
    assert table_problems(table) == []
    metadata = DatasetMetadata.from_arrow(table.schema.metadata)
    assert metadata.schema_version == 1 and metadata.blendshape_names is None
    shards = ExpressionShards(tmp_path, shuffle=False)
    assert sum(1 for _ in shards) == 5


def test_current_version_requires_the_column_and_checks_its_range(tmp_path):
    assert SCHEMA_VERSION == 3
    metadata = dataclasses.replace(synthetic_metadata(schema_version=3),
                                   blendshape_names=NAMES)
    assert DatasetMetadata.from_arrow(metadata.to_arrow()).blendshape_names == NAMES
    lacking = pa.schema([field for field in ROW_SCHEMA if field.name != columns.BLENDSHAPES],
                        metadata=metadata.to_arrow())
    assert schema_problems(lacking) == ["missing column 'blendshapes'"]
    rows = sorted(latent_rows(3, seed=4), key=lambda row: row[columns.ID])
    rows[0][columns.BLENDSHAPES] = np.linspace(0.0, 1.0, columns.NUM_BLENDSHAPES).tolist()
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA.with_metadata(metadata.to_arrow()))
    assert table_problems(table) == []            # one row with weights, two null rows
    rows[1][columns.BLENDSHAPES] = [1.5] * columns.NUM_BLENDSHAPES
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA.with_metadata(metadata.to_arrow()))
    assert table_problems(table) == ["column 'blendshapes' has weights outside [0, 1]"]
    assert schema_problems(lacking.with_metadata(
        dataclasses.replace(metadata, schema_version=4).to_arrow()))[0].startswith(
        "schema version 4")


def test_null_and_full_blendshape_rows_read_back_from_parquet(tmp_path):
    metadata = dataclasses.replace(synthetic_metadata(schema_version=2),
                                   blendshape_names=NAMES)
    rows = sorted(latent_rows(3, seed=5), key=lambda row: row[columns.ID])
    rows[2][columns.BLENDSHAPES] = [0.25] * columns.NUM_BLENDSHAPES
    schema = ROW_SCHEMA.with_metadata(metadata.to_arrow())
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "shard.parquet")
    table = pq.read_table(tmp_path / "shard.parquet")
    assert table.column(columns.BLENDSHAPES).to_pylist()[:2] == [None, None]
    assert table_problems(table) == []
    rows[1][columns.BLENDSHAPES] = [0.25] * 3
    short = pa.Table.from_pylist(rows, schema=schema)
    assert table_problems(short) == ["column 'blendshapes' has rows without 52 weights"]
