"""Similarity-normalised 68-point landmarks: the landmark-only baseline of the evaluation.

Each face's points are centred on their mean, scaled to unit Frobenius norm and rotated so
the line from the centre of the subject's right eye (iBUG points 37-42, image left) to the
centre of the left eye (points 43-48) is horizontal and points along +x. What is left is
shape: position, size and in-plane rotation are gone.
"""

from __future__ import annotations

import numpy as np

from schemas.rows import NUM_LANDMARKS  # training -> schemas only

RIGHT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
LEFT_EYE = slice(42, 48)
MIN_NORM = 1e-9


def normalize_landmarks(landmarks_2d: np.ndarray) -> np.ndarray:
    """Remove translation, scale and in-plane rotation from each face's landmarks.

    Parameters
    ----------
    landmarks_2d : (B, 68, 2) float   image pixels, y down

    Returns
    -------
    normalized : (B, 68, 2) float64   zero mean, unit norm, eye line along +x

    Raises
    ------
    ValueError   on a wrong shape, or naming the faces whose points are non-finite or all
                 (nearly) equal, which have no scale or orientation
    """
    points = np.asarray(landmarks_2d, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected (B, {NUM_LANDMARKS}, 2) landmarks, got {points.shape}")
    centred = points - points.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=(1, 2))
    eye_line = centred[:, LEFT_EYE].mean(axis=1) - centred[:, RIGHT_EYE].mean(axis=1)
    eye_distance = np.linalg.norm(eye_line, axis=1)
    bad = ~(np.isfinite(norms) & (norms > MIN_NORM) & (eye_distance > MIN_NORM * norms))
    if np.any(bad):
        raise ValueError(f"degenerate landmarks (non-finite, collapsed or eyes coincide) in "
                         f"faces {np.flatnonzero(bad)[:10].tolist()}")
    cos, sin = (eye_line / eye_distance[:, None]).T
    # Rotation by minus the eye-line angle, acting on column vectors: points @ R.T.
    rotations = np.stack([np.stack([cos, sin], axis=-1), np.stack([-sin, cos], axis=-1)], axis=1)
    return np.einsum("bij,bnj->bni", rotations, centred / norms[:, None, None])


def landmark_features(landmarks_2d: np.ndarray) -> np.ndarray:
    """(B, 68, 2) landmarks -> (B, 136) normalised shape vectors."""
    return normalize_landmarks(landmarks_2d).reshape(len(landmarks_2d), -1)
