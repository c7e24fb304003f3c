"""The scaled-orthographic camera: projection, estimation from 2D-3D pairs, Euler angles.

Camera model (model in mm with y up; image in pixels with y down)::

    x_img =  s * (R X)_x + t_x
    y_img = -s * (R X)_y + t_y

``R`` is a rotation acting on column vectors (rows as points: ``X @ R.T``), ``s`` pixels per
mm and ``t`` the image position of the model origin. Depth ``(R X)_z`` is dropped.

Euler angles, in degrees, with ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (pitch applied first, about
the model x axis; then yaw about y; then roll about the camera's optical axis z), each the
right-handed rotation by that angle:

- yaw > 0: the subject turns to their own left, the nose moves to the image right;
- pitch > 0: the subject looks down, the nose moves down in the image;
- roll > 0: the face turns counter-clockwise as the viewer sees the image (the top of the head
  moves towards the image left, i.e. the subject's right shoulder).

References: Hartley & Zisserman, *Multiple View Geometry*, 2nd ed., Alg. 7.2 (Gold Standard
affine camera) and Sec. 6.3.4 (affine cameras).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "project_points",
    "estimate_affine_camera",
    "nearest_scaled_rotation",
    "refine_pose",
    "axis_angle_to_rotation",
    "euler_to_rotation",
    "rotation_to_euler",
]

# Image y points down, model y up: the second projected coordinate changes sign.
FLIP_Y = np.array([1.0, -1.0])


def project_points(points_3d: np.ndarray, rotation: np.ndarray, scale: np.ndarray,
                   translation: np.ndarray) -> np.ndarray:
    """Scaled-orthographic projection of model points into the image.

    Parameters
    ----------
    points_3d : (B, N, 3) float   model points, mm
    rotation : (B, 3, 3) float
    scale : (B,) float            pixels per mm
    translation : (B, 2) float    pixels

    Returns
    -------
    points_2d : (B, N, 2) float64  image pixels, y down
    """
    rotated = np.matmul(points_3d, np.swapaxes(rotation, 1, 2))
    return rotated[..., :2] * (scale[:, None] * FLIP_Y)[:, None] + translation[:, None, :]


def estimate_affine_camera(points_2d: np.ndarray, points_3d: np.ndarray,
                           weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine camera ``x = M X + t`` from 2D-3D correspondences (Gold Standard).

    Both point sets are translated to their weighted centroids and scaled to unit RMS size
    before the linear solve, and the result is mapped back (H&Z Alg. 7.2).

    Parameters
    ----------
    points_2d : (B, N, 2) float   image points
    points_3d : (B, N, 3) float   model points, not all coplanar
    weights : (B, N) float        non-negative correspondence weights

    Returns
    -------
    affine : (B, 2, 3) float64     the matrix M (image rows, so row 1 includes the y flip)
    translation : (B, 2) float64   t
    """
    total = weights.sum(axis=1)[:, None]
    # Weighted sums as matrix products (BLAS); three-operand einsums are several times slower.
    row_weights = weights[:, None, :]
    centre_2d = np.matmul(row_weights, points_2d)[:, 0] / total
    centre_3d = np.matmul(row_weights, points_3d)[:, 0] / total
    centred_2d = points_2d - centre_2d[:, None]
    centred_3d = points_3d - centre_3d[:, None]
    # Isotropic normalisation only conditions the solve; it cancels out of M exactly.
    size_2d = np.sqrt(np.matmul(row_weights, centred_2d ** 2)[:, 0].sum(axis=1) / total[:, 0])
    size_3d = np.sqrt(np.matmul(row_weights, centred_3d ** 2)[:, 0].sum(axis=1) / total[:, 0])
    unit_2d = centred_2d / size_2d[:, None, None]
    unit_3d = centred_3d / size_3d[:, None, None]
    weighted_3d_t = np.swapaxes(unit_3d * weights[..., None], 1, 2)
    gram = np.matmul(weighted_3d_t, unit_3d)
    cross = np.matmul(weighted_3d_t, unit_2d)
    affine_unit = np.swapaxes(np.linalg.solve(gram, cross), 1, 2)
    affine = affine_unit * (size_2d / size_3d)[:, None, None]
    translation = centre_2d - np.einsum("bij,bj->bi", affine, centre_3d)
    return affine, translation


def nearest_scaled_rotation(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest scaled rotation to an affine camera matrix.

    The scale is the mean norm of the two rows; the rotation is the nearest proper rotation
    (polar factor) to the rows normalised and completed by their normalised cross product.
    Two unit rows ``a``, ``b`` have the nearest orthonormal pair ``(u + v, u - v) / sqrt(2)``
    with ``u, v`` the unit vectors along ``a + b`` and ``a - b`` (they are symmetric about the
    bisector, and the polar factor keeps that symmetry); the cross product completes it. This
    is the SVD solution in closed form, several times faster for a batch of 3 x 3 matrices.

    Parameters
    ----------
    affine : (B, 2, 3) float   image-row camera matrix from :func:`estimate_affine_camera`

    Returns
    -------
    rotation : (B, 3, 3) float64
    scale : (B,) float64
    """
    rows = affine * FLIP_Y[:, None]
    norms = np.linalg.norm(rows, axis=2)
    scale = norms.mean(axis=1)
    unit = rows / norms[..., None]
    bisector = unit[:, 0] + unit[:, 1]
    difference = unit[:, 0] - unit[:, 1]
    bisector /= np.linalg.norm(bisector, axis=1, keepdims=True)
    difference /= np.linalg.norm(difference, axis=1, keepdims=True)
    rotation = np.empty((len(affine), 3, 3))
    rotation[:, 0] = (bisector + difference) / np.sqrt(2.0)
    rotation[:, 1] = (bisector - difference) / np.sqrt(2.0)
    rotation[:, 2] = np.cross(rotation[:, 0], rotation[:, 1])
    return rotation, scale


def axis_angle_to_rotation(vector: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, (B, 3) rotation vectors -> (B, 3, 3) rotations."""
    angle = np.linalg.norm(vector, axis=1)
    small = angle < 1e-12
    axis = vector / np.where(small, 1.0, angle)[:, None]
    cross = np.zeros((len(vector), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2] = -axis[:, 2], axis[:, 1]
    cross[:, 1, 0], cross[:, 1, 2] = axis[:, 2], -axis[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -axis[:, 1], axis[:, 0]
    sin = np.where(small, 0.0, np.sin(angle))[:, None, None]
    cos_term = np.where(small, 0.0, 1.0 - np.cos(angle))[:, None, None]
    return np.eye(3) + sin * cross + cos_term * np.matmul(cross, cross)


def refine_pose(points_2d: np.ndarray, points_3d: np.ndarray, weights: np.ndarray,
                rotation: np.ndarray, scale: np.ndarray, translation: np.ndarray, *,
                steps: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton steps on the weighted pixel reprojection error over (R, s, t).

    The rotation is updated on the left, ``R <- exp([w]x) R``, so the 6 unknowns per face are
    a rotation vector ``w`` in the camera frame, ``s`` and ``t``. Starting from the
    orthogonalised affine estimate this converges in one or two steps.

    Parameters
    ----------
    points_2d : (B, N, 2) float     image points
    points_3d : (B, N, 3) float     model points
    weights : (B, N) float          correspondence weights
    rotation, scale, translation : (B, 3, 3), (B,), (B, 2)   starting pose
    steps : int                      Gauss-Newton iterations

    Returns
    -------
    rotation : (B, 3, 3), scale : (B,), translation : (B, 2)   refined pose
    """
    batch, count = weights.shape
    for _ in range(steps):
        rotated = np.matmul(points_3d, np.swapaxes(rotation, 1, 2))
        predicted = rotated[..., :2] * (scale[:, None] * FLIP_Y)[:, None] + translation[:, None]
        residual = points_2d - predicted
        px, py, pz = rotated[..., 0], rotated[..., 1], rotated[..., 2]
        s = scale[:, None]
        # Jacobian columns (B, 6, N, 2) of the unknowns (w, s, t): d/dw of w x p is -[p]x; row x
        # gives (0, pz, -py), row y (after the flip) s*(pz, 0, -px).
        columns = np.zeros((batch, 6, count, 2))
        columns[:, 0, :, 1] = s * pz
        columns[:, 1, :, 0] = s * pz
        columns[:, 2, :, 0] = -s * py
        columns[:, 2, :, 1] = -s * px
        columns[:, 3, :, 0] = px
        columns[:, 3, :, 1] = -py
        columns[:, 4, :, 0] = 1.0
        columns[:, 5, :, 1] = 1.0
        columns = columns.reshape(batch, 6, 2 * count)
        weighted_t = columns * np.repeat(weights, 2, axis=1)[:, None, :]
        normal = np.matmul(weighted_t, np.swapaxes(columns, 1, 2))
        gradient = np.matmul(weighted_t, residual.reshape(batch, 2 * count, 1))
        step = np.linalg.solve(normal, gradient)[..., 0]
        rotation = np.matmul(axis_angle_to_rotation(step[:, :3]), rotation)
        scale = scale + step[:, 3]
        translation = translation + step[:, 4:]
    return rotation, scale, translation


def euler_to_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` from angles in degrees; (B,) each -> (B, 3, 3)."""
    y, p, r = (np.deg2rad(np.asarray(angle, dtype=np.float64)) for angle in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    zero, one = np.zeros_like(y), np.ones_like(y)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def rotation_to_euler(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`euler_to_rotation`: (B, 3, 3) -> yaw, pitch, roll (B,) in degrees.

    Yaw is taken in [-90, 90]; at exactly +-90 degrees pitch and roll share one axis and the
    split between them is arbitrary.
    """
    yaw = np.arcsin(np.clip(-rotation[:, 2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[:, 2, 1], rotation[:, 2, 2])
    roll = np.arctan2(rotation[:, 1, 0], rotation[:, 0, 0])
    return np.rad2deg(yaw), np.rad2deg(pitch), np.rad2deg(roll)
