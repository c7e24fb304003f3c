"""Input checks of the fitter: argument shapes and values, subjects, unusable landmark sets.

Bad arguments raise ``ValueError`` naming the shape; a face whose landmarks cannot be fitted
gets a failure reason (one of ``FAILURE_REASONS``) instead of NaNs downstream.
"""

from __future__ import annotations

import numpy as np

from fitting.models.model import NUM_LANDMARKS, OUTER_EYE_CORNERS

__all__ = ["FAILURE_REASONS", "check_weights", "check_hyperparameters", "subject_groups",
           "face_failures"]

FAILURE_REASONS = (
    "non_finite_landmarks",   # a landmark with positive weight is NaN or infinite
    "missing_eye_corners",    # landmark 36 or 45 is not finite: no inter-ocular distance
    "too_few_landmarks",      # fewer than ``min_landmarks`` landmarks with positive weight
    "degenerate_landmarks",   # the weighted landmarks are collapsed or collinear
    "numerical_failure",      # the fit produced non-finite values (should not happen)
)
# Smallest ratio of the minor to the major spread of the landmarks for a usable face.
_MIN_ASPECT = 1e-3


def check_weights(landmark_weights, batch: int) -> np.ndarray:
    if landmark_weights is None:
        return np.ones((batch, NUM_LANDMARKS))
    weights = np.asarray(landmark_weights, dtype=np.float64)
    if weights.shape != (batch, NUM_LANDMARKS):
        raise ValueError(f"expected landmark_weights of shape ({batch}, 68), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("landmark_weights must be finite and non-negative")
    return weights


def check_hyperparameters(identity_weight, expression_weight, max_iterations, tolerance,
                           contour_updates, min_landmarks, chunk_size) -> None:
    if not (identity_weight > 0 and expression_weight > 0):
        raise ValueError(f"identity_weight and expression_weight must be > 0, got "
                         f"{identity_weight} and {expression_weight}")
    if contour_updates < 0:
        raise ValueError(f"contour_updates must be >= 0, got {contour_updates}")
    if max_iterations < 1 or chunk_size < 1:
        raise ValueError(f"max_iterations and chunk_size must be >= 1, got {max_iterations} "
                         f"and {chunk_size}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if min_landmarks < 4:
        raise ValueError(f"min_landmarks must be >= 4 (a camera needs 4 points), got "
                         f"{min_landmarks}")


def subject_groups(subject_ids, batch: int) -> np.ndarray:
    """Dense group index per face: equal subject ids share a group; no ids, one per face."""
    if subject_ids is None:
        return np.arange(batch)
    if len(subject_ids) != batch:
        raise ValueError(f"expected subject_ids of shape ({batch},), got length "
                         f"{len(subject_ids)}")
    index: dict = {}
    return np.array([index.setdefault(subject, len(index)) for subject in subject_ids],
                    dtype=np.int64)


def face_failures(landmarks: np.ndarray, weights: np.ndarray, *,
                   min_landmarks: int) -> np.ndarray:
    """Per-face failure reason (object array of str or None) for unusable landmark sets."""
    failure = np.full(len(landmarks), None, dtype=object)
    used = weights > 0
    # Per coordinate rather than np.all over the length-2 axis, which numpy reduces slowly.
    finite = np.isfinite(landmarks[..., 0]) & np.isfinite(landmarks[..., 1])
    eyes = finite[:, list(OUTER_EYE_CORNERS)].all(axis=1)
    safe = np.where((finite & used)[..., None], landmarks, 0.0)
    # Spread of the weighted landmarks along their principal axes: the square roots of the
    # eigenvalues of their 2 x 2 covariance (in closed form), minor and major. Landmarks of
    # weight 0 drop out of the weighted products.
    total = np.maximum(weights.sum(axis=1), 1e-300)
    centre = np.matmul(weights[:, None, :], safe)[:, 0] / total[:, None]
    centred = safe - centre[:, None]
    covariance = (np.matmul(np.swapaxes(centred * weights[..., None], 1, 2), centred)
                  / total[:, None, None])
    half_trace = (covariance[:, 0, 0] + covariance[:, 1, 1]) / 2.0
    radius = np.hypot((covariance[:, 0, 0] - covariance[:, 1, 1]) / 2.0, covariance[:, 0, 1])
    minor = np.sqrt(np.clip(half_trace - radius, 0.0, None))
    major = np.sqrt(np.clip(half_trace + radius, 0.0, None))
    interocular = np.linalg.norm(safe[:, OUTER_EYE_CORNERS[0]] - safe[:, OUTER_EYE_CORNERS[1]],
                                 axis=1)
    degenerate = ((minor <= _MIN_ASPECT * major) | (major <= 0)
                  | (interocular <= _MIN_ASPECT * major))
    # The first reason that applies wins, in FAILURE_REASONS order.
    checks = [
        ("non_finite_landmarks", np.any(used & ~finite, axis=1)),
        ("missing_eye_corners", ~eyes),
        ("too_few_landmarks", used.sum(axis=1) < min_landmarks),
        ("degenerate_landmarks", degenerate),
    ]
    for reason, mask in reversed(checks):
        failure[mask] = reason
    return failure
