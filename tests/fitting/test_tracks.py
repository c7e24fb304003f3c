"""Linking the faces of a video into tracks: overlap, motion, gaps and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.tracks import box_iou, landmark_shift, link_tracks

RNG = np.random.default_rng(7)
SHAPE = RNG.uniform(0, 60, size=(68, 2))     # one face's landmarks in a 60 px box


def face(x: float, y: float, side: float = 60.0):
    """A face whose box has its top-left corner at ``(x, y)``: (box, landmarks)."""
    return (np.array([x, y, x + side, y + side]), SHAPE * side / 60.0 + [x, y])


def faces_of(placements):
    """``[(frame, x, y)]`` -> the arrays ``link_tracks`` takes."""
    frames = np.array([frame for frame, _, _ in placements])
    made = [face(x, y) for _, x, y in placements]
    return frames, np.stack([box for box, _ in made]), np.stack([points for _, points in made])


def test_iou_and_shift_of_known_boxes():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])
    points = np.zeros((1, 68, 2))
    moved = points + [3.0, 4.0]              # 5 px on a 10 px face: half a face size
    np.testing.assert_allclose(landmark_shift(points, a, moved), [[0.5]])


def test_two_faces_moving_apart_give_two_tracks():
    placements = [(frame, x + 4 * frame, 20) for frame in range(8) for x in (10, 200)]
    tracks = link_tracks(*faces_of(placements))
    assert tracks.tolist() == [0, 1] * 8


def test_a_short_miss_keeps_the_track_and_a_long_one_ends_it():
    short = [(frame, 10 + 3 * frame, 10) for frame in (0, 1, 2, 5, 6)]   # misses 3 and 4
    assert link_tracks(*faces_of(short), max_gap=2).tolist() == [0] * 5
    assert link_tracks(*faces_of(short), max_gap=1).tolist() == [0, 0, 0, 1, 1]


def test_a_jump_starts_a_new_track():
    placements = [(0, 10, 10), (1, 14, 10), (2, 150, 10), (3, 154, 10)]
    assert link_tracks(*faces_of(placements)).tolist() == [0, 0, 1, 1]


def test_tracks_do_not_depend_on_the_input_order():
    placements = [(frame, x + 5 * frame, 30) for frame in range(6) for x in (0, 120, 300)]
    frames, boxes, landmarks = faces_of(placements)
    tracks = link_tracks(frames, boxes, landmarks)
    permutation = np.random.default_rng(1).permutation(len(frames))
    shuffled = link_tracks(frames[permutation], boxes[permutation], landmarks[permutation])
    back = np.empty_like(shuffled)
    back[permutation] = shuffled             # each face's track, in the original order
    # The same partition of the faces (numbers follow first appearance, then input order).
    assert len(set(tracks.tolist())) == 3
    np.testing.assert_array_equal(tracks[:, None] == tracks[None, :],
                                  back[:, None] == back[None, :])


def test_mismatched_shapes_raise():
    frames, boxes, landmarks = faces_of([(0, 0, 0), (1, 2, 0)])
    with pytest.raises(ValueError, match="expected"):
        link_tracks(frames, boxes[:1], landmarks)
