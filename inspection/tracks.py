"""Per-track statistics of a dataset made from videos: how long tracks are, how much the
expression moves from one sampled frame to the next within a track."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrackSummary:
    """The face tracks of a dataset.

    Attributes
    ----------
    video_rows : int                rows from video frames (the others are still images)
    videos : int                    videos with at least one row
    lengths : (T,) int64            rows per track, tracks sorted by id
    frame_change : (M,) float64     RMS expression change (sigma units) between consecutive
                                    rows of one track, all tracks together
    """

    video_rows: int
    videos: int
    lengths: np.ndarray
    frame_change: np.ndarray

    @property
    def tracks(self) -> int:
        return len(self.lengths)


def video_of_track(track_id: str) -> str:
    """The video content id a track id (``<video id>-k<n>``) belongs to."""
    return track_id.rpartition("-k")[0]


def summarise_tracks(track_ids, frame_index, expression: np.ndarray) -> TrackSummary | None:
    """Group rows by track; None when no row comes from a video.

    Parameters
    ----------
    track_ids : (N,) sequence of str or None
    frame_index : (N,) int          the sampled slot of each row (any value for stills)
    expression : (N, 29) float
    """
    track_ids = np.asarray(track_ids, dtype=object)
    present = np.flatnonzero([track is not None for track in track_ids])
    if not len(present):
        return None
    names, inverse = np.unique(track_ids[present].astype(str), return_inverse=True)
    order = np.lexsort((np.asarray(frame_index)[present], inverse))
    ordered_tracks = inverse[order]
    steps = np.diff(np.asarray(expression, dtype=np.float64)[present][order], axis=0)
    same_track = ordered_tracks[1:] == ordered_tracks[:-1]
    change = np.sqrt(np.mean(steps[same_track] ** 2, axis=1))
    return TrackSummary(
        video_rows=len(present), videos=len({video_of_track(name) for name in names}),
        lengths=np.bincount(inverse, minlength=len(names)).astype(np.int64),
        frame_change=change)
