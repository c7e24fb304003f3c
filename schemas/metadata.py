"""The metadata contract carried in every shard's Parquet schema metadata."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa

from schemas.rows import EXPRESSION_DIM, HUGGINGFACE_FEATURES, ROW_SCHEMA, SCHEMA_VERSION

KEY_PREFIX = "expnet."
HUGGINGFACE_KEY = "huggingface"
OPTIONAL_FIELDS = ("blendshape_names",)     # absent from schema version 1 shards


class SchemaError(ValueError):
    """A shard does not follow the expnet-data schema contract."""


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What every shard says about how its labels were made.

    Attributes
    ----------
    model_id : str               the morphable model's name
    model_hash : str             the model's content hash (sha256 hex)
    expression_std : tuple of float   the model's 29 standard deviations (raw = sigma * std)
    landmarker : str             landmark backend name ("dlib", "fan")
    landmarker_version : str
    pipeline_version : str       expnet-data version that wrote the shard
    schema_version : int
    expression_dim : int
    expression_units : str       always "sigma"
    blendshape_names : tuple of str or None   names of the ``blendshapes`` column's weights
                                 (ARKit); None when the model has no named units or the
                                 shard predates schema version 2
    """

    model_id: str
    model_hash: str
    expression_std: tuple
    landmarker: str
    landmarker_version: str
    pipeline_version: str
    schema_version: int = SCHEMA_VERSION
    expression_dim: int = EXPRESSION_DIM
    expression_units: str = "sigma"
    blendshape_names: tuple | None = None

    def to_arrow(self) -> dict[bytes, bytes]:
        """Schema-metadata entries, including the Hugging Face features description."""
        entries = {f"{KEY_PREFIX}{field.name}": json.dumps(getattr(self, field.name))
                   for field in dataclasses.fields(self)}
        entries[HUGGINGFACE_KEY] = json.dumps({"info": {"features": HUGGINGFACE_FEATURES}})
        return {key.encode(): value.encode() for key, value in entries.items()}

    @classmethod
    def from_arrow(cls, metadata: dict | None) -> DatasetMetadata:
        """Parse schema metadata written by :meth:`to_arrow`.

        Raises
        ------
        SchemaError   when keys are missing or unreadable
        """
        metadata = metadata or {}
        values = {}
        for field in dataclasses.fields(cls):
            raw = metadata.get(f"{KEY_PREFIX}{field.name}".encode())
            if raw is None and field.name in OPTIONAL_FIELDS:
                continue
            if raw is None:
                raise SchemaError(f"schema metadata lacks '{KEY_PREFIX}{field.name}'")
            try:
                values[field.name] = json.loads(raw)
            except json.JSONDecodeError as error:
                raise SchemaError(f"unreadable metadata '{field.name}': {error}") from error
        values["expression_std"] = tuple(values["expression_std"])
        if values.get("blendshape_names") is not None:
            values["blendshape_names"] = tuple(values["blendshape_names"])
        return cls(**values)


def shard_schema(metadata: DatasetMetadata) -> pa.Schema:
    """The row schema with ``metadata`` attached: what every label shard is written with."""
    return ROW_SCHEMA.with_metadata(metadata.to_arrow())
