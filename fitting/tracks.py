"""Face tracks: faces of a video linked from sampled frame to sampled frame.

Two faces in nearby frames are the same track when their boxes overlap enough (IoU) and their
landmarks moved little relative to the face's size. Each frame's faces are matched greedily,
best overlap first, one face per track; ties are broken by track and face order, so the same
faces always give the same tracks.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MIN_IOU = 0.3
DEFAULT_MAX_LANDMARK_SHIFT = 0.5
DEFAULT_MAX_GAP = 4


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Parameters
    ----------
    boxes_a : (A, 4) float   ``x0, y0, x1, y1``
    boxes_b : (B, 4) float

    Returns
    -------
    iou : (A, B) float64 in [0, 1]
    """
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    union = _area(a) + _area(b) - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (np.clip(boxes[..., 2] - boxes[..., 0], 0, None)
            * np.clip(boxes[..., 3] - boxes[..., 1], 0, None))


def landmark_shift(landmarks_a: np.ndarray, boxes_a: np.ndarray,
                   landmarks_b: np.ndarray) -> np.ndarray:
    """Mean landmark displacement of every pair, in units of face ``a``'s size.

    Parameters
    ----------
    landmarks_a : (A, L, 2) float   boxes_a : (A, 4) float
    landmarks_b : (B, L, 2) float

    Returns
    -------
    shift : (A, B) float64   mean point distance / sqrt(area of box a)
    """
    a = np.asarray(landmarks_a, dtype=np.float64)[:, None]
    b = np.asarray(landmarks_b, dtype=np.float64)[None, :]
    distance = np.linalg.norm(a - b, axis=-1).mean(axis=-1)
    size = np.sqrt(np.maximum(_area(np.asarray(boxes_a, dtype=np.float64)), 1.0))
    return distance / size[:, None]


def link_tracks(sample_index: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, *,
                min_iou: float = DEFAULT_MIN_IOU,
                max_landmark_shift: float = DEFAULT_MAX_LANDMARK_SHIFT,
                max_gap: int = DEFAULT_MAX_GAP) -> np.ndarray:
    """Link the faces of one video into tracks.

    Parameters
    ----------
    sample_index : (N,) int     the sampled frame of each face (any order)
    boxes : (N, 4) float        ``x0, y0, x1, y1`` in pixels
    landmarks : (N, L, 2) float
    min_iou : float             least box overlap of a link
    max_landmark_shift : float  most mean landmark motion of a link, in face sizes
    max_gap : int               sampled frames a track may miss (a missed detection) and
                                still continue

    Returns
    -------
    track : (N,) int64   track number of each face, numbered 0, 1, ... by first appearance
                         (frame, then the face's position in the input)
    """
    sample_index = np.asarray(sample_index)
    count = len(sample_index)
    if boxes.shape != (count, 4) or landmarks.ndim != 3 or landmarks.shape[0] != count:
        raise ValueError(f"expected (N,), (N, 4) and (N, L, 2) arrays, got {sample_index.shape}"
                         f", {boxes.shape} and {landmarks.shape}")
    track = np.full(count, -1, dtype=np.int64)
    # Active tracks: number -> index of its last face.
    last_face: dict[int, int] = {}
    order = np.lexsort((np.arange(count), sample_index))
    frames = np.unique(sample_index)
    next_track = 0
    for frame in frames:
        faces = order[sample_index[order] == frame]
        alive = sorted(number for number, index in last_face.items()
                       if frame - sample_index[index] <= max_gap + 1)
        pairs = _matches(alive, last_face, faces, boxes, landmarks, min_iou=min_iou,
                         max_landmark_shift=max_landmark_shift)
        for number, face in pairs:
            track[face] = number
            last_face[number] = face
        for face in faces:
            if track[face] < 0:
                track[face] = next_track
                last_face[next_track] = face
                next_track += 1
    return track


def _matches(alive: list, last_face: dict, faces: np.ndarray, boxes, landmarks, *,
             min_iou: float, max_landmark_shift: float) -> list:
    """Greedy one-to-one ``(track, face)`` links, best overlap first."""
    if not alive or not len(faces):
        return []
    previous = np.array([last_face[number] for number in alive])
    iou = box_iou(boxes[previous], boxes[faces])
    shift = landmark_shift(landmarks[previous], boxes[previous], landmarks[faces])
    allowed = (iou >= min_iou) & (shift <= max_landmark_shift)
    rows, cols = np.nonzero(allowed)
    # Best overlap first; then least motion; then track, then face order (stable).
    ranking = np.lexsort((cols, rows, shift[rows, cols], -iou[rows, cols]))
    used_tracks, used_faces, pairs = set(), set(), []
    for position in ranking:
        row, col = rows[position], cols[position]
        if row in used_tracks or col in used_faces:
            continue
        used_tracks.add(row)
        used_faces.add(col)
        pairs.append((alive[row], faces[col]))
    return pairs
