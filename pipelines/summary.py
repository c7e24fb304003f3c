"""The human-readable summary of a run, printed by ``expnet generate`` (and ``inspect``)."""

from __future__ import annotations

import numpy as np

from pipelines.output_state import reader
from schemas import rows as columns


def format_summary(stats: dict, output: str, *, label_examples: int = 3) -> str:
    """A few lines: inputs, rows, failures by reason, the invariant, where, a few labels."""
    lines = [
        f"expnet generate: {stats['inputs']} inputs -> {stats['written']} written "
        f"({stats['rows']} rows), {stats['failed']} failed, {stats['duplicates']} duplicates"
        + (f", {stats['existing']} already in the dataset" if stats.get("existing") else ""),
    ]
    for reason, number in stats["failures_by_reason"].items():
        lines.append(f"  failed {reason}: {number}")
    # stats.json files written before these counts existed have none.
    for note, number in stats.get("identity_check", {}).items():
        if number:
            lines.append(f"  identity check, {note.replace('_', ' ')}: {number}")
    invariant = stats["invariant"]
    lines.append("  accounting: inputs == written + failed + duplicates + existing "
                 + ("holds" if invariant["holds"] else
                    f"BROKEN for {', '.join(invariant['broken_sources'])}"))
    shards = stats["manifest"]["shards"]
    lines.append(f"  output: {output} ({len(shards)} shards, "
                 f"{sum(shard['bytes'] for shard in shards)} bytes)")
    timings = stats.get("timings", {})
    if timings.get("wall_seconds"):
        lines.append(f"  time: {timings['wall_seconds']:.1f} s "
                     f"({timings['inputs_per_second']:.1f} inputs/s)")
    lines.extend(_label_lines(output, shards, label_examples))
    return "\n".join(lines)


def _label_lines(output: str, shards: list, count: int) -> list[str]:
    lines = []
    dataset = reader(output)
    for shard in shards:
        if len(lines) >= count:
            break
        if not shard["rows"]:
            continue
        # Decoded from memory on this thread: no Arrow thread outlives it (schemas.parquet).
        table = dataset.read_table(dataset.path(shard["name"]),
                                   [columns.SOURCE_URI, columns.EXPRESSION, columns.YAW,
                                    columns.FIT_RESIDUAL])
        for row in table.slice(0, count - len(lines)).to_pylist():
            expression = np.array(row[columns.EXPRESSION])
            head = " ".join(f"{value:+.2f}" for value in expression[:6])
            lines.append(f"  {row[columns.SOURCE_URI].rsplit('/', 1)[-1]}: expression[:6] "
                         f"= [{head} ...] yaw {row[columns.YAW]:+.1f} deg, "
                         f"residual {row[columns.FIT_RESIDUAL]:.3f}")
    if lines:
        lines.insert(0, "  labels (29-D, sigma units):")
    return lines
