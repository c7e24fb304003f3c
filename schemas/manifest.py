"""The dataset manifest and stats: which shards finished runs wrote, and what the runs counted.

``expnet generate`` writes ``manifest.json`` last, so it names exactly the shards of complete
runs. Writer-side fields (runs, failures) pass through in :attr:`Manifest.raw`. Every reader
parses the files through :class:`schemas.reader.DatasetReader`, which calls the parsers here.
"""

from __future__ import annotations

import dataclasses
import json

from schemas.layout import MANIFEST_NAME, STATS_NAME
from schemas.metadata import DatasetMetadata

__all__ = ["DatasetFileError", "Manifest", "ManifestError", "ManifestShard",
           "metadata_from_json", "parse_manifest", "parse_stats"]


class DatasetFileError(ValueError):
    """A dataset's JSON file (manifest or stats) is not what the writer writes."""


class ManifestError(DatasetFileError):
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


def _json_object(data: bytes, source: str, error_class: type[DatasetFileError]) -> dict:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise error_class(f"{source}: not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise error_class(f"{source}: a JSON object was expected, got {type(raw).__name__}")
    return raw


def parse_manifest(data: bytes, *, source: str = MANIFEST_NAME) -> Manifest:
    """Parse the bytes of a ``manifest.json``.

    Parameters
    ----------
    data : bytes     the file's content
    source : str     the file's path, for the error message

    Raises
    ------
    ManifestError   when the bytes are not a JSON object with a ``shards`` list of
                    ``{"name": str, "rows": int}`` entries
    """
    raw = _json_object(data, source, ManifestError)
    if not isinstance(raw.get("shards"), list):
        raise ManifestError(f"{source}: a manifest is a JSON object with a 'shards' list")
    try:
        shards = tuple(ManifestShard(str(entry["name"]), int(entry["rows"]))
                       for entry in raw["shards"])
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"{source}: a shard entry lacks its name or rows: {error}") from error
    return Manifest(shards, raw)


def parse_stats(data: bytes, *, source: str = STATS_NAME) -> dict:
    """Parse the bytes of a ``stats.json``: the counts, timings and manifest of the last run.

    Raises
    ------
    DatasetFileError   when the bytes are not a JSON object
    """
    return _json_object(data, source, DatasetFileError)


def metadata_from_json(values: dict) -> DatasetMetadata:
    """The :class:`DatasetMetadata` a manifest stores as a JSON object.

    Raises
    ------
    TypeError   when the fields are not those of ``DatasetMetadata``
    """
    values = dict(values)
    values["expression_std"] = tuple(values.get("expression_std", ()))
    return DatasetMetadata(**values)
