"""A small, seeded, face-like morphable model and ground-truth faces for round-trip checks.

The model is an ellipsoidal head (millimetres, x to the subject's left, y up, z towards the
camera) with the 68 iBUG landmarks laid out on its front, jaw-line contour candidates that run
from each jaw landmark backwards around the head, and smooth random identity and expression
bases in sigma units (expression bases concentrated on the brows, eyes and mouth). It carries no
data from any real face model; it exists so that the fitter can be tested and benchmarked with a
known ground truth.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from fitting.models import MorphableModel
from fitting.models.model import EXPRESSION_DIM

__all__ = ["make_synthetic_model", "sample_pose", "IBUG_TEMPLATE_MM"]

# Semi-axes of the head ellipsoid (x, y, z) in mm.
_HEAD_AXES = np.array([78.0, 110.0, 95.0])
# How far (in azimuth, radians) each jaw landmark's contour candidates reach behind it.
_CONTOUR_REACH = np.deg2rad(45.0)


def _ibug_template() -> np.ndarray:
    """Frontal (x, y) positions of the 68 iBUG landmarks in mm, model axes (y up)."""
    t = np.linspace(0.0, 1.0, 17)
    jaw = np.stack([-70.0 * np.cos(np.pi * t), 10.0 - 105.0 * np.sin(np.pi * t)], axis=1)
    u = np.linspace(0.0, 1.0, 5)
    right_brow = np.stack([-55.0 + 43.0 * u, 35.0 + 6.0 * np.sin(np.pi * u)], axis=1)
    left_brow = np.stack([12.0 + 43.0 * u, 35.0 + 6.0 * np.sin(np.pi * u)], axis=1)
    nose_bridge = np.array([[0.0, 20.0], [0.0, 10.0], [0.0, 0.0], [0.0, -10.0]])
    nostrils = np.array([[-14.0, -18.0], [-7.0, -20.0], [0.0, -22.0], [7.0, -20.0], [14.0, -18.0]])
    right_eye = np.array([[-45, 18], [-36, 22], [-26, 22], [-18, 18], [-26, 15], [-36, 15]], float)
    left_eye = np.array([[18, 18], [26, 22], [36, 22], [45, 18], [36, 15], [26, 15]], float)
    outer_lips = np.array([
        [-25, -45], [-16, -39], [-6, -37], [0, -38], [6, -37], [16, -39],
        [25, -45], [16, -52], [6, -55], [0, -56], [-6, -55], [-16, -52],
    ], float)
    inner_lips = np.array([
        [-20, -45], [-7, -43], [0, -43], [7, -43], [20, -45], [7, -47], [0, -47], [-7, -47],
    ], float)
    return np.concatenate([jaw, right_brow, left_brow, nose_bridge, nostrils, right_eye,
                           left_eye, outer_lips, inner_lips])


IBUG_TEMPLATE_MM = _ibug_template()
# Extra height of the nose landmarks above the ellipsoid surface (bridge 27-30, nostrils 31-35).
_NOSE_LIFT = {27: 5.0, 28: 10.0, 29: 15.0, 30: 22.0, 31: 6.0, 32: 9.0, 33: 12.0, 34: 9.0, 35: 6.0}


def _on_ellipsoid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Front-surface points of the head ellipsoid above (x, y); returns (N, 3)."""
    a, b, c = _HEAD_AXES
    inside = np.clip(1.0 - (x / a) ** 2 - (y / b) ** 2, 0.0, None)
    return np.stack([x, y, c * np.sqrt(inside)], axis=1)


def _around_head(y: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Points of the ellipsoid at height ``y`` and azimuth (0 = front, +pi/2 = subject's left)."""
    a, b, c = _HEAD_AXES
    ring = np.sqrt(np.clip(1.0 - (y / b) ** 2, 0.0, None))
    return np.stack([a * ring * np.sin(azimuth), y, c * ring * np.cos(azimuth)], axis=1)


def _smooth_fields(points: np.ndarray, count: int, stds: np.ndarray, rng: np.random.Generator,
                   *, centres: np.ndarray, radius: float, bumps: int) -> np.ndarray:
    """Random smooth displacement fields, each with RMS vertex displacement ``stds[k]``.

    Returns a (V, 3, count) basis.
    """
    basis = np.empty((points.shape[0], 3, count))
    for k in range(count):
        chosen = centres[rng.integers(0, len(centres), size=bumps)]
        directions = rng.standard_normal((bumps, 3))
        distances = np.linalg.norm(points[:, None, :] - chosen[None], axis=2)
        field = np.exp(-0.5 * (distances / radius) ** 2) @ directions
        basis[:, :, k] = field * (stds[k] / np.sqrt(np.mean(np.sum(field ** 2, axis=1))))
    return basis


def make_synthetic_model(seed: int = 0, *, identity_dim: int = 40, num_fill_vertices: int = 84,
                         num_contour_candidates: int = 4) -> MorphableModel:
    """Build a seeded face-like :class:`MorphableModel` with known structure.

    Parameters
    ----------
    seed : int
        Seed of the random bases and filler vertices.
    identity_dim : int
        Number of identity components K_id.
    num_fill_vertices : int
        Vertices added on the head besides the landmarks and contour candidates.
    num_contour_candidates : int
        C, candidates per jaw landmark (the landmark vertex itself is the first).

    Returns
    -------
    MorphableModel
        ``68 + 16 * (C - 1) + num_fill_vertices`` vertices; the chin (landmark 8) has the single
        candidate of its own vertex.
    """
    rng = np.random.default_rng(seed)
    template = IBUG_TEMPLATE_MM
    landmark_points = _on_ellipsoid(template[:, 0], template[:, 1])
    for index, lift in _NOSE_LIFT.items():
        landmark_points[index, 2] += lift

    # Contour candidates: same height as the jaw landmark, azimuth growing away from the face.
    a, b, _ = _HEAD_AXES
    jaw = landmark_points[:17]
    ring = a * np.sqrt(np.clip(1.0 - (jaw[:, 1] / b) ** 2, 1e-9, None))
    jaw_azimuth = np.arcsin(np.clip(jaw[:, 0] / ring, -1.0, 1.0))
    candidate_points = []
    contour = -np.ones((17, num_contour_candidates), dtype=np.int64)
    contour[:, 0] = np.arange(17)
    next_index = 68
    for j in range(17):
        if j == 8:
            continue
        side = np.sign(jaw_azimuth[j])
        steps = np.arange(1, num_contour_candidates) / (num_contour_candidates - 1)
        azimuth = jaw_azimuth[j] + side * _CONTOUR_REACH * steps
        candidate_points.append(_around_head(np.full(len(steps), jaw[j, 1]), azimuth))
        contour[j, 1:] = np.arange(next_index, next_index + len(steps))
        next_index += len(steps)

    fill_azimuth = rng.uniform(-0.6 * np.pi, 0.6 * np.pi, num_fill_vertices)
    fill_height = rng.uniform(-0.9 * b, 0.8 * b, num_fill_vertices)
    fill_points = _around_head(fill_height, fill_azimuth)
    mean = np.concatenate([landmark_points, *candidate_points, fill_points])

    # Triangulate over (azimuth, height): the head surface is a graph over those two.
    azimuth_all = np.arctan2(mean[:, 0] / _HEAD_AXES[0], mean[:, 2] / _HEAD_AXES[2])
    triangles = Delaunay(np.stack([azimuth_all * 100.0, mean[:, 1]], axis=1)).simplices

    identity_std = 4.0 * 0.93 ** np.arange(identity_dim)
    expression_std = 3.0 * 0.93 ** np.arange(EXPRESSION_DIM)
    identity_basis = _smooth_fields(mean, identity_dim, identity_std, rng,
                                    centres=mean, radius=45.0, bumps=5)
    # Expressions act around the brows (17-26), eyes (36-47) and mouth (48-67).
    expressive = landmark_points[np.r_[17:27, 36:68]]
    expression_basis = _smooth_fields(mean, EXPRESSION_DIM, expression_std, rng,
                                      centres=expressive, radius=20.0, bumps=3)
    return MorphableModel(
        mean=mean,
        identity_basis=identity_basis,
        identity_std=identity_std,
        expression_basis=expression_basis,
        expression_std=expression_std,
        landmark_indices=np.arange(68),
        triangles=triangles,
        contour_candidates=contour,
        model_id=f"synthetic-{seed}",
        metadata={"source": "synth.toy_model.make_synthetic_model", "seed": seed},
    )


def sample_pose(batch: int, rng: np.random.Generator, *, max_yaw: float = 60.0,
                max_pitch: float = 15.0, max_roll: float = 10.0, face_width_px: float = 200.0):
    """Random scaled-orthographic poses for faces about ``face_width_px`` wide.

    Returns
    -------
    yaw, pitch, roll : (B,) degrees, uniform in +-max
    scale : (B,) pixels per mm (a 150 mm wide face spans about ``face_width_px``), +-10 %
    translation : (B, 2) pixels, around (320, 240)
    """
    yaw = rng.uniform(-max_yaw, max_yaw, batch)
    pitch = rng.uniform(-max_pitch, max_pitch, batch)
    roll = rng.uniform(-max_roll, max_roll, batch)
    scale = face_width_px / 150.0 * rng.uniform(0.9, 1.1, batch)
    translation = np.array([320.0, 240.0]) + rng.uniform(-20.0, 20.0, (batch, 2))
    return yaw, pitch, roll, scale, translation
