"""The files of a dataset: shard names, the manifest, stats and the failure folder.

A dataset folder holds ``part-IIIII-of-NNNNN.parquet`` shards, ``failures/*.parquet``,
``stats.json`` and, once a run has finished, ``manifest.json`` listing the shards. The writer
and every reader take these names from here.
"""

from __future__ import annotations

import hashlib
import re

MANIFEST_NAME = "manifest.json"
STATS_NAME = "stats.json"
FAILURES_DIR = "failures"
TEMP_DIR = "_temporary"
# Rows per Parquet row group as the writer writes them: the unit a reader fetches and shuffles.
ROWS_PER_GROUP = 100
SHARD_PREFIX = "part"
SHARD_SUFFIX = ".parquet"
# Shards of any run: ``part-00000-of-00004.parquet``, ``part-r001-00000-of-00001.parquet``.
SHARD_GLOB = f"{SHARD_PREFIX}-*{SHARD_SUFFIX}"

_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


def shard_name(index: int, count: int, prefix: str = SHARD_PREFIX) -> str:
    """File name of shard ``index`` of ``count``, e.g. ``part-00003-of-00016.parquet``."""
    return f"{prefix}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """``(prefix, index, count)`` of a shard file name, or ``None`` if it is not one."""
    match = _SHARD_NAME.match(name)
    if match is None:
        return None
    return match["prefix"], int(match["index"]), int(match["count"])


def shard_of(row_id: str, count: int) -> int:
    """Shard index of a row: a stable hash of its id, modulo the shard count."""
    return int(hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:16], 16) % count
