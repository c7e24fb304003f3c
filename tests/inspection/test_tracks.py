"""Per-track statistics: lengths, videos and the frame-to-frame expression step."""

from __future__ import annotations

import numpy as np

from inspection.tracks import summarise_tracks, video_of_track


def test_tracks_are_grouped_and_ordered_by_frame():
    # Two tracks of video "aa", one of "bb", and a still image; rows out of order.
    track_ids = ["aa-k1", "aa-k0", None, "aa-k0", "bb-k0", "aa-k0", "aa-k1"]
    frames = [3, 2, -1, 0, 0, 1, 4]
    expression = np.zeros((7, 29))
    expression[[3, 5, 1], 0] = [0.0, 1.0, 3.0]   # track aa-k0 at frames 0, 1, 2
    expression[[0, 6], 1] = [2.0, 2.0]            # track aa-k1: no change
    summary = summarise_tracks(track_ids, frames, expression)
    assert (summary.video_rows, summary.videos, summary.tracks) == (6, 2, 3)
    assert summary.lengths.tolist() == [3, 2, 1]
    # aa-k0 steps 1 and 2 in one of 29 coefficients; aa-k1 one step of 0.
    np.testing.assert_allclose(summary.frame_change,
                               [1 / np.sqrt(29), 2 / np.sqrt(29), 0.0])


def test_a_dataset_of_stills_has_no_track_summary():
    assert summarise_tracks([None, None], [-1, -1], np.zeros((2, 29))) is None
    assert video_of_track("0a1b-k12") == "0a1b"
