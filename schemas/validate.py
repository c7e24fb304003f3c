"""Checks that a shard follows the schema contract: types, metadata and values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.metadata import DatasetMetadata, SchemaError
from schemas.rows import (
    BLENDSHAPES,
    COLUMN_SINCE,
    EXPRESSION,
    FACE_BOX,
    FACE_DESCRIPTOR,
    FACE_DESCRIPTOR_DIM,
    FIT_RESIDUAL,
    ID,
    LANDMARKS,
    NUM_BLENDSHAPES,
    PITCH,
    READABLE_SCHEMA_VERSIONS,
    ROLL,
    ROTATION,
    ROW_SCHEMA,
    SCALE,
    SOURCE_LANDMARKS,
    TRANSLATION,
    YAW,
)

FLOAT_COLUMNS = (EXPRESSION, ROTATION, YAW, PITCH, ROLL, SCALE, TRANSLATION, LANDMARKS,
                 SOURCE_LANDMARKS, FACE_BOX, FIT_RESIDUAL)


def schema_problems(schema: pa.Schema) -> list[str]:
    """Reasons ``schema`` (with its metadata) is not a label shard schema of a readable version.

    A shard of an older version (:data:`READABLE_SCHEMA_VERSIONS`) may lack the columns added
    after it (:data:`COLUMN_SINCE`)."""
    problems = []
    try:
        metadata = DatasetMetadata.from_arrow(schema.metadata)
    except SchemaError as error:
        return [str(error)]
    if metadata.schema_version not in READABLE_SCHEMA_VERSIONS:
        problems.append(f"schema version {metadata.schema_version}, this reader knows "
                        f"{list(READABLE_SCHEMA_VERSIONS)}")
    if len(metadata.expression_std) != metadata.expression_dim:
        problems.append(f"expression_std has {len(metadata.expression_std)} values, "
                        f"expression_dim is {metadata.expression_dim}")
    for field in ROW_SCHEMA:
        if field.name not in schema.names:
            if metadata.schema_version < COLUMN_SINCE.get(field.name, 0):
                continue
            problems.append(f"missing column {field.name!r}")
        elif not schema.field(field.name).type.equals(field.type):
            problems.append(f"column {field.name!r} is {schema.field(field.name).type}, "
                            f"expected {field.type}")
    return problems


# Nullable list columns stored variable-length (see schemas.rows): the length a set row has,
# and what its values are called.
VARIABLE_LENGTHS = {BLENDSHAPES: (NUM_BLENDSHAPES, "weights"),
                    FACE_DESCRIPTOR: (FACE_DESCRIPTOR_DIM, "values")}


def value_problems(data: pa.Table | pa.RecordBatch) -> list[str]:
    """Reasons the float columns of a table or record batch are invalid: non-finite values."""
    problems = []
    names = data.schema.names
    for name in FLOAT_COLUMNS + tuple(VARIABLE_LENGTHS):
        if name not in names:       # only an older version's shard lacks a column
            continue
        column = data.column(name)
        if name in VARIABLE_LENGTHS:
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            lengths = lengths[~np.isnan(lengths.astype(float))]
            length, noun = VARIABLE_LENGTHS[name]
            if np.any(lengths != length):
                problems.append(f"column {name!r} has rows without {length} {noun}")
        if pa.types.is_fixed_size_list(column.type) or name in VARIABLE_LENGTHS:
            column = pc.list_flatten(column)
        values = column.to_numpy(zero_copy_only=False)
        if values.size and not np.all(np.isfinite(values)):
            problems.append(f"column {name!r} has non-finite values")
        elif name == BLENDSHAPES and values.size and (values.min() < 0 or values.max() > 1):
            problems.append(f"column {name!r} has weights outside [0, 1]")
    return problems


def table_problems(table: pa.Table) -> list[str]:
    """Reasons a label table is invalid: its schema, non-finite values, duplicate ids."""
    problems = schema_problems(table.schema)
    if problems:
        return problems
    problems.extend(value_problems(table))
    ids = table.column(ID)
    if pc.count_distinct(ids).as_py() != len(ids):
        problems.append("duplicate ids")
    return problems


def check_table(table: pa.Table) -> None:
    """Raise :class:`SchemaError` listing every problem of ``table``."""
    problems = table_problems(table)
    if problems:
        raise SchemaError("; ".join(problems))
