"""Counting what became of every input, and checking that nothing was lost.

Every input ends as exactly one of ``written`` (at least one row), ``failed`` (a failure row,
no row), ``duplicate`` or, in an incremental run, ``existing`` (its content is already in the
dataset). Inputs are counted independently where they are read, so
``inputs == written + failed + duplicates + existing`` per source is a real check, written to
``stats.json`` on every run.
"""

from __future__ import annotations

import collections
import re

import apache_beam as beam

from pipelines.collect import ToOneList
from pipelines.identity import CHECK_NOTES
from pipelines.reading import text_key

INPUT, WRITTEN, FAILED = "inputs", "written", "failed"
DUPLICATE, EXISTING = "duplicates", "existing"
OUTCOMES = (WRITTEN, FAILED, DUPLICATE, EXISTING)
# When one image gives several faces, its best outcome counts.
_PRIORITY = {WRITTEN: 2, FAILED: 1}


# A face id is its input's content id, then ``-t<slot>`` for a video frame, then ``-f<k>``
# for one face of several; content ids are hex (or ``uri-<hex>``), so neither suffix is in one.
_FACE_SUFFIXES = re.compile(r"(-t\d+)?(-f\d+)?$")


def image_id_of(face_id: str) -> str:
    """The content id of the input (image or video) a face or frame id belongs to."""
    return _FACE_SUFFIXES.sub("", face_id, count=1)


def summarise(counts: dict) -> dict:
    """Totals, per-source counts, failures by reason and the invariant, from raw counts.

    Parameters
    ----------
    counts : dict
        ``{(kind, a, b): n}`` with kinds ``"source"`` (a = source, b = outcome or inputs),
        ``"failure"`` (a = stage, b = reason), ``"rows"`` and ``"identity_check"`` (a = the
        note of a written face, :data:`pipelines.identity.CHECK_NOTES`).
    """
    sources = collections.defaultdict(lambda: dict.fromkeys((INPUT, *OUTCOMES), 0))
    failures = {}
    checked = dict.fromkeys(CHECK_NOTES, 0)
    rows = 0
    for (kind, first, second), number in counts.items():
        if kind == "source":
            sources[first][second] += number
        elif kind == "failure":
            failures[f"{first}/{second}"] = number
        elif kind == "rows":
            rows += number
        elif kind == "identity_check":
            checked[first] = checked.get(first, 0) + number
    totals = {key: sum(source[key] for source in sources.values())
              for key in (INPUT, *OUTCOMES)}
    broken = sorted(name for name, source in sources.items()
                    if source[INPUT] != sum(source[key] for key in OUTCOMES))
    return {
        **totals,
        "rows": rows,
        "failures_by_reason": dict(sorted(failures.items())),
        # Rows whose faces the identity check fitted alone; the rows do not say it.
        "identity_check": checked,
        "sources": {name: sources[name] for name in sorted(sources)},
        "invariant": {"holds": not broken, "broken_sources": broken,
                      "rule": "inputs == written + failed + duplicates + existing, per source"},
    }


def _outcome_event(image_id: str, source: str, outcome: str) -> tuple:
    """``(key, (source, outcome))`` keyed by ints: a ``str`` key's group can split on runners
    whose shuffle hashes keys per process (see ``reading.content_key``)."""
    return text_key(f"{image_id}\0{source}"), (source, outcome)


def _best_outcome(outcomes):
    """The best ``(source, outcome)`` of one image (all share the source)."""
    return max(outcomes, key=lambda pair: _PRIORITY[pair[1]])


class CountOutcomes(beam.PTransform):
    """Raw counts ``{(kind, a, b): n}`` as a single-element PCollection.

    Inputs (a dict of PCollections):
    ``inputs``: source per input read; ``read_failures``: inputs that could not be read;
    ``duplicates`` and ``existing``: ``(source, uri)``; ``failures``: failures after
    deduplication;
    ``written``: ``(source, row id)`` per row written; ``check_notes`` (optional): the note
    of each written face the identity check fitted alone.
    """

    def expand(self, parts):
        early = (
            (parts["inputs"] | "InputEvents" >> beam.Map(lambda s: (("source", s, INPUT), 1))),
            # An input that could not be read is an input, and a failed one.
            (parts["read_failures"]
             | "ReadFailureEvents" >> beam.FlatMap(lambda f: [(("source", f.source, INPUT), 1),
                                                               (("source", f.source, FAILED), 1)])),
            (parts["duplicates"]
             | "DuplicateEvents" >> beam.MapTuple(lambda s, _: (("source", s, DUPLICATE), 1))),
            (parts["existing"]
             | "ExistingEvents" >> beam.MapTuple(lambda s, _: (("source", s, EXISTING), 1))),
        )
        late = (
            (parts["failures"]
             | "FailureOutcomes" >> beam.Map(
                 lambda f: _outcome_event(image_id_of(f.id), f.source, FAILED))),
            (parts["written"]
             | "WrittenOutcomes" >> beam.MapTuple(
                 lambda source, row_id: _outcome_event(image_id_of(row_id), source, WRITTEN))),
        )
        per_image = (late
                     | "FlattenOutcomes" >> beam.Flatten()
                     | "BestOutcomePerImage" >> beam.CombinePerKey(_best_outcome)
                     | "OutcomeEvents" >> beam.MapTuple(
                         lambda _, best: (("source", *best), 1)))
        all_failures = ((parts["read_failures"], parts["failures"])
                        | "AllFailures" >> beam.Flatten())
        reasons = all_failures | "ReasonEvents" >> beam.Map(
            lambda f: (("failure", f.stage, f.reason), 1))
        rows = parts["written"] | "RowEvents" >> beam.Map(lambda _: (("rows", "", ""), 1))
        notes = ()
        if "check_notes" in parts:
            notes = (parts["check_notes"] | "CheckNoteEvents" >> beam.Map(
                lambda note: (("identity_check", note, ""), 1)),)
        return ((*early, per_image, reasons, rows, *notes)
                | "FlattenEvents" >> beam.Flatten()
                | "CountEvents" >> beam.CombinePerKey(sum)
                | "AllCounts" >> ToOneList()
                | "ToOneDict" >> beam.Map(_sum_counts))


def _sum_counts(counts: list) -> dict:
    """``[(key, n)]`` -> ``{key: total}``; a key may come more than once, from a runner
    whose shuffle split its group, and is then summed, not overwritten."""
    totals: dict = {}
    for key, number in counts:
        totals[key] = totals.get(key, 0) + number
    return totals
