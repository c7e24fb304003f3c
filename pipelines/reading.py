"""Reading and deduplicating inputs, and the runner-safe split of results from failures.

These composites are shared by the jobs that read raw collections (``expnet generate``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import apache_beam as beam

from pipelines.progress import PROGRESS
from pipelines.resources import use_filesystems
from pipelines.sources import Failure, Naming, expand_input, read_item


def _count_failure(failure: Failure) -> Failure:
    beam.metrics.Metrics.counter("expnet", f"failed_{failure.stage}_{failure.reason}").inc()
    PROGRESS.add("failures")
    return failure


def is_failure(element) -> bool:
    """Whether a pipeline element is a ``Failure`` (one per input or face that failed)."""
    return isinstance(element, Failure)


class SplitFailures(beam.PTransform):
    """One PCollection of results and ``Failure``s -> ``(results, failures)``.

    DoFns here have a single output holding both, split by two filters: tagged outputs are
    not routed correctly by every runner (Beam's Dask runner mixes them), filters are.
    """

    def expand(self, mixed):
        failures = (mixed
                    | "Failures" >> beam.Filter(is_failure)
                    | "CountFailures" >> beam.Map(_count_failure))
        results = mixed | "Results" >> beam.Filter(lambda element: not is_failure(element))
        return results, failures


def expand_spec(element, *, naming: Naming):
    """An input spec -> its ``SourceItem``s and failures; an item the launcher already
    expanded (see ``generate.build``) passes through unchanged."""
    if isinstance(element, str):
        yield from expand_input(element, naming)
    else:
        yield element


def _read(item, *, max_file_bytes: int, filesystems: dict | None = None):
    use_filesystems(filesystems)
    for record in read_item(item, max_file_bytes=max_file_bytes):
        if is_failure(record):
            yield record
        else:
            beam.metrics.Metrics.counter("expnet", "inputs").inc()
            # Plain files cross the deduplication shuffle without their bytes.
            yield record.without_data()


class ReadSources(beam.PTransform):
    """Input specs -> ``(SourceRecord``s, failures at stage ``read``).

    ``filesystems`` (:func:`pipelines.resources.filesystem_options`) configures Beam's
    FileSystems on workers whose runner does not.
    """

    def __init__(self, *, naming: Naming, max_file_bytes: int, filesystems: dict | None = None):
        super().__init__()
        self.naming = naming
        self.max_file_bytes = max_file_bytes
        self.filesystems = filesystems

    def expand(self, specs):
        items, expand_failures = (
            specs
            | "ExpandInputs" >> beam.FlatMap(expand_spec, naming=self.naming)
            .with_output_types(Any)
            | "SplitExpandFailures" >> SplitFailures())
        records, read_failures = (
            items
            | "SpreadItems" >> beam.Reshuffle()
            | "ReadItems" >> beam.FlatMap(_read, max_file_bytes=self.max_file_bytes,
                                         filesystems=self.filesystems)
            .with_output_types(Any)
            | "SplitReadFailures" >> SplitFailures())
        failures = (expand_failures, read_failures) | "ReadFailures" >> beam.Flatten()
        return records, failures


KNOWN = "known"  # marks a content id already in the dataset (incremental runs)


class KeepSmallestUri(beam.CombineFn):
    """Keeps the record with the smallest URI; the others become duplicates.

    The accumulator is ``(best, duplicates, known)``: ``known`` is set when the id is
    already in the dataset, in which case every record of it is ``existing`` instead.
    """

    def create_accumulator(self):
        return None, [], False

    def add_input(self, accumulator, record):
        if record == KNOWN:
            return self.merge_accumulators([accumulator, (None, [], True)])
        return self.merge_accumulators([accumulator, (record, [], False)])

    def merge_accumulators(self, accumulators):
        best, duplicates, known = None, [], False
        for record, others, record_known in accumulators:
            duplicates.extend(others)
            known = known or record_known
            if record is None:
                continue
            if best is None or record.uri < best.uri:
                if best is not None:
                    duplicates.append((best.source, best.uri))
                best = record
            else:
                duplicates.append((record.source, record.uri))
        return best, duplicates, known

    def extract_output(self, accumulator):
        return accumulator


def _survivor(kept):
    best, _, known = kept
    return [] if best is None or known else [best]


def _duplicates(kept):
    _, duplicates, known = kept
    return [] if known else duplicates


def _existing(kept):
    best, duplicates, known = kept
    if not known:
        return []
    return ([(best.source, best.uri)] if best is not None else []) + duplicates


def content_key(content_id: str) -> tuple[int, ...]:
    """The shuffle key of a hex digest: ints of 60 bits (Beam's int coder holds 64), which
    hash alike in every process.

    A ``str`` key hashes differently in each Python process (``PYTHONHASHSEED``), which splits
    one key's group on runners that hash keys with Python's ``hash`` (apache/beam#29365).
    """
    return tuple(int(content_id[start:start + 15], 16)
                 for start in range(0, len(content_id), 15))


def text_key(text: str) -> tuple[int, ...]:
    """The shuffle key of any string: :func:`content_key` of its sha256."""
    return content_key(hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest())


class Deduplicate(beam.PTransform):
    """One survivor per content id (smallest URI wins).

    Returns ``(survivors, duplicates, existing)``, the last two as ``(source, uri)``;
    ``existing`` are inputs whose content id is in ``known_ids`` (an incremental run).
    """

    def __init__(self, known_ids=None):
        super().__init__()
        self.known_ids = known_ids

    def expand(self, records):
        keyed = records | "KeyByContent" >> beam.Map(
            lambda record: (content_key(record.content_id), record))
        if self.known_ids is not None:
            known = self.known_ids | "MarkKnown" >> beam.Map(
                lambda known_id: (content_key(known_id), KNOWN))
            keyed = (keyed, known) | "WithKnownIds" >> beam.Flatten()
        kept = (keyed
                | "KeepOnePerId" >> beam.CombinePerKey(KeepSmallestUri())
                | "DropKeys" >> beam.Values())
        survivors = kept | "Survivors" >> beam.FlatMap(_survivor)
        duplicates = (kept
                      | "Duplicates" >> beam.FlatMap(_duplicates)
                      | "CountDuplicates" >> beam.Map(_count_outcome, "duplicates"))
        existing = (kept
                    | "Existing" >> beam.FlatMap(_existing)
                    | "CountExisting" >> beam.Map(_count_outcome, "existing"))
        return survivors, duplicates, existing


def _count_outcome(element, name: str):
    beam.metrics.Metrics.counter("expnet", name).inc()
    return element
