"""The dataset contract between the pipelines and every consumer: rows, metadata and files.

Shards are Parquet files of :data:`ROW_SCHEMA` rows whose schema metadata carries a
:class:`DatasetMetadata`; failures are Parquet files of :data:`FAILURE_SCHEMA` rows; file
names and folder layout are in :mod:`schemas.layout`, the manifest and stats in
:mod:`schemas.manifest`, and :mod:`schemas.reader` is the one reader of a dataset folder.
"""

from schemas.metadata import DatasetMetadata, SchemaError, shard_schema
from schemas.rows import (
    EXPRESSION_DIM,
    FAILURE_SCHEMA,
    HUGGINGFACE_FEATURES,
    PREDICTION_SCHEMA,
    ROW_SCHEMA,
    SCHEMA_VERSION,
    STAGES,
)
from schemas.validate import check_table, schema_problems, table_problems

__all__ = [
    "EXPRESSION_DIM",
    "FAILURE_SCHEMA",
    "HUGGINGFACE_FEATURES",
    "PREDICTION_SCHEMA",
    "ROW_SCHEMA",
    "SCHEMA_VERSION",
    "STAGES",
    "DatasetMetadata",
    "SchemaError",
    "check_table",
    "schema_problems",
    "shard_schema",
    "table_problems",
]
