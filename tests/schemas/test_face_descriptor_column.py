"""Schema version 3 adds the nullable ``face_descriptor`` column; version 2 shards stay readable."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import ROW_SCHEMA, schema_problems, table_problems
from schemas import rows as columns
from tests.training.conftest import latent_rows, synthetic_metadata


def test_version_2_shards_without_the_column_are_valid():
    metadata = synthetic_metadata(schema_version=2).to_arrow()
    schema = pa.schema([field for field in ROW_SCHEMA if field.name != columns.FACE_DESCRIPTOR],
                       metadata=metadata)
    assert schema_problems(schema) == []
    current = schema.with_metadata(synthetic_metadata(schema_version=3).to_arrow())
    assert schema_problems(current) == ["missing column 'face_descriptor'"]


def test_null_and_full_descriptors_read_back_and_short_ones_are_caught(tmp_path):
    schema = ROW_SCHEMA.with_metadata(synthetic_metadata(schema_version=3).to_arrow())
    rows = sorted(latent_rows(3, seed=6), key=lambda row: row[columns.ID])
    rows[0][columns.FACE_DESCRIPTOR] = [0.125] * columns.FACE_DESCRIPTOR_DIM
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "shard.parquet")
    table = pq.read_table(tmp_path / "shard.parquet")
    stored = table.column(columns.FACE_DESCRIPTOR).to_pylist()
    assert stored[1:] == [None, None] and stored[0] == [0.125] * columns.FACE_DESCRIPTOR_DIM
    assert table_problems(table) == []
    rows[1][columns.FACE_DESCRIPTOR] = [0.125] * 5
    short = pa.Table.from_pylist(rows, schema=schema)
    assert table_problems(short) == ["column 'face_descriptor' has rows without 128 values"]
    rows[1][columns.FACE_DESCRIPTOR] = [float("nan")] * columns.FACE_DESCRIPTOR_DIM
    assert table_problems(pa.Table.from_pylist(rows, schema=schema)) == [
        "column 'face_descriptor' has non-finite values"]
