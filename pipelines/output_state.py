"""The output folder as a dataset: its manifest, its runs, and leftovers of interrupted runs.

``manifest.json`` is written last by every run and lists every shard of every run, so a
folder with a manifest is a complete dataset, and files it does not list are leftovers of
an interrupted run (deleted before the next run starts). That makes "kill -9, rerun the same
command" safe, and lets ``--incremental`` runs add shards beside the earlier ones.
"""

from __future__ import annotations

import dataclasses
import json
import time

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import accounting, writing
from pipelines.accounting import image_id_of
from schemas import DatasetMetadata
from schemas import rows as columns
from schemas.layout import FAILURES_DIR, MANIFEST_NAME, SHARD_GLOB, STATS_NAME, TEMP_DIR
from schemas.reader import DatasetReader, FileEntry


class DatasetStateError(ValueError):
    """The output folder cannot take this run as asked (say why and what to pass)."""


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Where this run's files go and what came before.

    Attributes
    ----------
    run_index : int             0 for a new dataset, k for the k-th incremental run
    shard_prefix : str          ``part`` for run 0, ``part-r001`` ... for later runs
    previous : dict or None     the manifest of the complete dataset this run extends
    """

    run_index: int
    shard_prefix: str
    previous: dict | None

    @property
    def previous_files(self) -> list[str]:
        """Shard and failure files of earlier runs (relative names)."""
        if not self.previous:
            return []
        return ([shard["name"] for shard in self.previous["shards"]]
                + [failure["name"] for failure in self.previous.get("failures", [])])


class BeamStorage:
    """The :class:`schemas.reader.Storage` of Beam's ``FileSystems`` (local, ``gs://``, ...)."""

    def open(self, path: str):
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)

    def exists(self, path: str) -> bool:
        return FileSystems.exists(path)

    def match(self, pattern: str) -> list[FileEntry]:
        return sorted(FileEntry(metadata.path, metadata.size_in_bytes)
                      for metadata in FileSystems.match([pattern])[0].metadata_list)


def reader(output: str) -> DatasetReader:
    """The dataset reader of an output folder, through Beam's filesystems."""
    return DatasetReader(output, BeamStorage())


def _listing(output: str, pattern: str) -> list[str]:
    return [entry.path for entry in BeamStorage().match(f"{output}/{pattern}")]


def read_manifest(output: str) -> dict | None:
    """The whole manifest of ``output`` as written, or None when no run has finished there."""
    manifest = reader(output).manifest()
    return None if manifest is None else manifest.raw


def plan_run(output: str, *, model_hash: str, overwrite: bool, incremental: bool) -> RunPlan:
    """Decide how this run relates to what ``output`` holds, and clear leftovers.

    - No manifest: a new dataset; shards of an interrupted run are deleted.
    - A manifest and ``--overwrite``: everything is deleted; a new dataset.
    - A manifest and ``--incremental``: files the manifest does not list are deleted; this
      run adds shards named ``part-rNNN-*`` (the model must be the same).
    - A manifest and neither flag: refused.
    """
    previous = read_manifest(output)
    if previous is not None and not (overwrite or incremental):
        raise DatasetStateError(
            f"{output} already holds a complete dataset ({previous['rows']} rows); pass "
            "--incremental to add new images to it, --overwrite to replace it, or choose "
            "another --output")
    if previous is not None and incremental and not overwrite:
        if previous["metadata"]["model_hash"] != model_hash:
            raise DatasetStateError(
                f"{output} was labelled with model {previous['metadata']['model_id']} "
                f"({previous['metadata']['model_hash'][:12]}); an incremental run must use "
                "the same model")
        run_index = len(previous["runs"])
        plan = RunPlan(run_index, f"part-r{run_index:03d}", previous)
    else:
        plan = RunPlan(run_index=0, shard_prefix="part", previous=None)
    _delete_unlisted(output, keep=plan.previous_files, keep_manifest=plan.previous is not None)
    writing.ensure_dir(output)
    return plan


def _delete_unlisted(output: str, *, keep: list[str], keep_manifest: bool) -> None:
    kept = {f"{output}/{name}" for name in keep}
    if keep_manifest:
        kept.add(f"{output}/{MANIFEST_NAME}")
    candidates = (_listing(output, SHARD_GLOB)
                  + _listing(output, f"{FAILURES_DIR}/*.parquet")
                  + _listing(output, MANIFEST_NAME)
                  + _listing(output, STATS_NAME)
                  + _listing(output, f"{TEMP_DIR}/**"))
    stale = [path for path in candidates if path not in kept]
    if stale:
        FileSystems.delete(stale)


def known_ids(output: str, name: str) -> list[str]:
    """Ids of one earlier shard or failure file (image ids: face suffixes removed)."""
    dataset = reader(output)
    table = dataset.read_table(dataset.path(name), [columns.ID])
    return sorted({image_id_of(row_id) for row_id in table.column(columns.ID).to_pylist()})


def finalize(outputs: dict, *, output: str, metadata: DatasetMetadata, plan: RunPlan,
             run_info: dict) -> None:
    """Write ``stats.json``, clear the temporary folder, then write ``manifest.json``.

    The manifest is the mark of a complete dataset, so it comes last; it lists the shards and
    failure files of every run, earlier ones included, and the fingerprint of each run.
    """
    stats = accounting.summarise(outputs["counts"])
    elapsed = time.time() - run_info["started"]
    stats.update({key: value for key, value in run_info.items() if key != "started"})
    stats["timings"] = {"wall_seconds": round(elapsed, 3),
                        "inputs_per_second": round(stats["inputs"] / elapsed, 3)}
    previous = plan.previous or {"shards": [], "failures": [], "runs": []}
    new_shards = sorted(outputs["shards"], key=lambda shard: shard["name"])
    shards = previous["shards"] + [{**shard, "run": plan.run_index} for shard in new_shards]
    run = {"run": plan.run_index, "shards": len(new_shards),
           "rows": sum(shard["rows"] for shard in new_shards),
           "fingerprint": run_info["fingerprint"]}
    manifest = {
        "shards": shards,
        "rows": sum(shard["rows"] for shard in shards),
        "failures": previous["failures"] + [{**outputs["failures"], "run": plan.run_index}],
        "runs": previous["runs"] + [run],
        "metadata": json.loads(json.dumps(dataclasses.asdict(metadata))),
    }
    stats["manifest"] = manifest
    writing.write_json(output, STATS_NAME, stats)
    writing.remove_temporary(output)
    writing.write_json(output, MANIFEST_NAME, manifest)
    # Writing the manifest went through the temporary folder; leave none behind.
    writing.remove_temporary(output)


def completed_by(output: str, fingerprint: str) -> bool:
    """Whether ``output`` is a complete dataset whose last run had this fingerprint."""
    manifest = read_manifest(output)
    return (manifest is not None and manifest["runs"][-1].get("fingerprint") == fingerprint
            and FileSystems.exists(f"{output}/{STATS_NAME}"))


def read_stats(output: str) -> dict:
    """The ``stats.json`` of the last run into ``output``.

    Raises
    ------
    FileNotFoundError   when no run has finished there
    """
    stats = reader(output).stats()
    if stats is None:
        raise FileNotFoundError(f"no {STATS_NAME} in {output}: no run has finished there")
    return stats
