"""Sampling rows by face track: consecutive video frames of one person are near duplicates,
so a long track would otherwise outweigh a short one (and a still image) in training."""

from __future__ import annotations

import numpy as np

from schemas.rows import FRAME_INDEX, TRACK_ID


def rows_per_track(track_ids, frame_index, *, per_track: int) -> np.ndarray:
    """The rows to keep: every row without a track, and at most ``per_track`` rows of each
    track, evenly spaced in time (the first and the last frame included).

    Parameters
    ----------
    track_ids : (N,) sequence of str or None
    frame_index : (N,) int      sampled slot of each row (ignored where there is no track)
    per_track : int             >= 1

    Returns
    -------
    keep : (M,) int64   row numbers, ascending
    """
    if per_track < 1:
        raise ValueError(f"per_track must be >= 1, got {per_track}")
    track_ids = np.asarray(track_ids, dtype=object)
    frame_index = np.asarray(frame_index)
    if track_ids.shape != frame_index.shape or track_ids.ndim != 1:
        raise ValueError(f"expected two (N,) arrays, got {track_ids.shape} and "
                         f"{frame_index.shape}")
    tracked = np.array([track is not None for track in track_ids], dtype=bool)
    keep = [np.flatnonzero(~tracked)]
    if tracked.any():
        rows = np.flatnonzero(tracked)
        names, inverse = np.unique(track_ids[rows].astype(str), return_inverse=True)
        for number in range(len(names)):
            members = rows[inverse == number]
            members = members[np.argsort(frame_index[members], kind="stable")]
            if len(members) > per_track:
                members = members[np.round(np.linspace(0, len(members) - 1, per_track))
                                  .astype(np.int64)]
            keep.append(members)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def read_track_columns(shard_set) -> tuple[list, np.ndarray]:
    """Track id and frame index of every row of a ``training.shards.ShardSet``, shards in
    order; rows of shards older than schema version 3 (no such columns) have none.

    Returns
    -------
    track_ids : list of str or None (N,)
    frame_index : (N,) int64, -1 where none
    """
    track_ids, frames = [], []
    for shard_index in range(len(shard_set.shards)):
        parquet = shard_set.open(shard_index)
        try:
            rows = parquet.metadata.num_rows
            if TRACK_ID in parquet.schema_arrow.names:
                table = parquet.read(columns=[TRACK_ID, FRAME_INDEX])
                track_ids.extend(table.column(TRACK_ID).to_pylist())
                frames.append(table.column(FRAME_INDEX).fill_null(-1).to_numpy())
            else:
                track_ids.extend([None] * rows)
                frames.append(np.full(rows, -1))
        finally:
            parquet.close(force=True)
    return track_ids, (np.concatenate(frames).astype(np.int64) if frames
                       else np.zeros(0, dtype=np.int64))
