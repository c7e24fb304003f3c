"""The dataset manifest: which shards a finished run wrote, their row counts and metadata.

``expnet generate`` writes ``manifest.json`` last, so it names exactly the shards of complete
runs. Writer-side fields (runs, failures) pass through in :attr:`Manifest.raw`; readers in
:mod:`inspection` and :mod:`training` parse the file with :func:`parse_manifest`.
"""

from __future__ import annotations

import dataclasses
import json

from schemas.metadata import DatasetMetadata

__all__ = ["Manifest", "ManifestError", "ManifestShard", "metadata_from_json", "parse_manifest"]


class ManifestError(ValueError):
    """A manifest is not JSON, or lacks the shard list a reader needs."""


@dataclasses.dataclass(frozen=True)
class ManifestShard:
    """One listed shard: its file name within the dataset folder and its row count."""

    name: str
    rows: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed manifest.

    Attributes
    ----------
    shards : tuple of ManifestShard   in the order the writer listed them
    raw : dict                        the whole JSON object, writer-side fields included
    """

    shards: tuple[ManifestShard, ...]
    raw: dict

    def shard_paths(self, folder: str) -> list[str]:
        """Paths of the listed shards under ``folder``."""
        return [f"{folder.rstrip('/')}/{shard.name}" for shard in self.shards]


def parse_manifest(data: bytes) -> Manifest:
    """Parse the bytes of a ``manifest.json``.

    Raises
    ------
    ManifestError   when the bytes are not a JSON object with a ``shards`` list of
                    ``{"name": str, "rows": int}`` entries
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"not a JSON manifest: {error}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("shards"), list):
        raise ManifestError("a manifest is a JSON object with a 'shards' list")
    try:
        shards = tuple(ManifestShard(str(entry["name"]), int(entry["rows"]))
                       for entry in raw["shards"])
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"a shard entry lacks its name or rows: {error}") from error
    return Manifest(shards, raw)


def metadata_from_json(values: dict) -> DatasetMetadata:
    """The :class:`DatasetMetadata` a manifest stores as a JSON object.

    Raises
    ------
    TypeError   when the fields are not those of ``DatasetMetadata``
    """
    values = dict(values)
    values["expression_std"] = tuple(values.get("expression_std", ()))
    return DatasetMetadata(**values)
