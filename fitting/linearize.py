"""Normal equations of one Gauss-Newton step of the landmark fit, batched.

For a face with rotation ``R``, scale ``s``, translation ``t``, landmark vertices with mean
positions ``m_i`` (3,) and basis rows ``L_i`` (3, K) (identity then expression columns), and
image landmarks ``x_i``, the error in model millimetres is::

    e_i = F (x_i - t) / s - P R (m_i + L_i c)

(``F = diag(1, -1)`` flips image y, ``P`` keeps the first two rows). Holding the ``1 / s`` of the
current estimate fixed and perturbing the pose as ``R <- exp([w]x) R``, ``s <- s (1 + d_s)``,
``t <- t + s d_t``, the error is linear in the new coefficients ``c`` and the pose step
``d = (w, d_s, d_t)``::

    e_i ~ y_i - A_i c - J_i d,    y_i = F (x_i - t) / s - P R m_i,    A_i = P R L_i,
    J_i = [ -P [p_i]x | P p_i | F ],   p_i = R X_i (current rotated landmark vertex).

This module returns ``H = sum_i w_i [A_i J_i]^T [A_i J_i]`` and ``g = sum_i w_i [A_i J_i]^T y_i``
with the unknowns ordered ``[c, d]``.

For unit weights the fixed landmarks use ``A_i^T A_i = L_i^T (I - n n^T) L_i`` (``n``, the
third row of ``R``, is the viewing direction in model coordinates), so their ``K x K`` block is a
(B, 9) x (9, (K + 6)^2) product with precomputed Gram blocks rather than a per-face (2F, K)
product. Weights shared by every face (a landmarker's noise profile) keep that path: scaling the
rows of landmark ``i`` by ``sqrt(w_i)`` turns the weighted problem into an unweighted one, so
the caller scales the basis rows and Gram blocks once per weight vector.
"""

from __future__ import annotations

import numpy as np

from fitting.camera import FLIP_Y

__all__ = ["gram_blocks", "normal_equations"]

POSE_DIM = 6


def gram_blocks(basis: np.ndarray, *, padding: int = 0) -> np.ndarray:
    """``sum_i L_i[c]^T L_i[d]`` for every pair of axes c, d.

    Parameters
    ----------
    basis : (F, 3, K) float   basis rows of the landmarks
    padding : int             zero rows and columns P appended to every block

    Returns
    -------
    gram : (9, (K + P)^2) float64   row ``3 c + d`` is the flattened (K + P, K + P) block
    """
    size = basis.shape[2]
    gram = np.zeros((3, 3, size + padding, size + padding))
    gram[:, :, :size, :size] = np.einsum("fck,fdl->cdkl", basis, basis)
    return gram.reshape(9, (size + padding) ** 2)


def normal_equations(*, landmarks: np.ndarray, weights: np.ndarray | None,
                     mean_points: np.ndarray, rotated: np.ndarray, rotation: np.ndarray,
                     scale: np.ndarray, translation: np.ndarray, fixed: np.ndarray,
                     fixed_basis_flat: np.ndarray, fixed_basis_sum: np.ndarray,
                     fixed_gram: np.ndarray, varying: np.ndarray,
                     varying_basis: np.ndarray | None, shared_weights: np.ndarray | None = None):
    """Gauss-Newton normal equations for coefficients and a pose step, see the module notes.

    Parameters
    ----------
    landmarks : (B, N, 2)          image landmarks
    weights : (B, N) or None       landmark weights; None means all 1 (fast path)
    mean_points : (B, N, 3)        mean position of each landmark's current vertex
    rotated : (B, N, 3)            ``R X_i`` for the current shape
    rotation : (B, 3, 3), scale : (B,), translation : (B, 2)   current pose
    fixed : (F,) int               landmarks whose basis rows are the same for every face
    fixed_basis_flat : (3F, K)     their basis rows
    fixed_basis_sum : (3, K)       ``sum_i w_i L_i`` over them (with unscaled rows ``L_i``)
    fixed_gram : (9, (K+6)^2)      :func:`gram_blocks` of their basis rows, padded by 6
    varying : (J,) int             landmarks whose vertex differs per face (sliding jaw)
    varying_basis : (B, J, 3, K)   their basis rows; ignored when ``J == 0``
    shared_weights : (N,) or None  with ``weights`` None, landmark weights shared by every
                                   face; their square roots must already scale the rows of
                                   ``fixed_basis_flat`` and ``fixed_gram`` (fast path)

    Returns
    -------
    hessian : (B, K + 6, K + 6) float64
    gradient : (B, K + 6) float64
    """
    batch = len(landmarks)
    size = fixed_basis_flat.shape[1]
    projection = rotation[:, :2, :]
    targets = ((landmarks - translation[:, None]) / scale[:, None, None] * FLIP_Y
               - np.matmul(mean_points, np.swapaxes(projection, 1, 2)))
    pose_columns = _pose_jacobian_columns(rotated)                      # (B, 6, N, 2)
    pose_jacobian = np.moveaxis(pose_columns, 1, 3)                     # (B, N, 2, 6) view
    if weights is not None:
        weights = weights[..., None]
        all_landmarks = np.concatenate([fixed, varying])
        order = np.argsort(all_landmarks)
        basis = np.concatenate(
            [np.broadcast_to(fixed_basis_flat.reshape(len(fixed), 3, size),
                             (batch, len(fixed), 3, size)),
             varying_basis if len(varying) else np.zeros((batch, 0, 3, size))], axis=1)
        return _direct(basis[:, order], projection, pose_jacobian, targets, weights)

    count = len(fixed)
    full = size + POSE_DIM
    view = rotation[:, 2, :]
    outer = (np.eye(3)[None] - view[:, :, None] * view[:, None, :]).reshape(batch, 9)
    # The Gram blocks are laid out in the full (K + 6)^2 matrix (zero pose rows and columns),
    # so the product is the Hessian's storage: no separate assembly of the K x K block.
    hessian = (outer @ fixed_gram).reshape(batch, full, full)
    if count == targets.shape[1] and np.array_equal(fixed, np.arange(count)):
        # Every landmark fixed (no sliding): no gathering copies.
        fixed_targets, fixed_pose = targets, pose_columns
    else:
        # ``take`` gives C-ordered copies; fancy indexing (``a[:, idx]``) would put the
        # landmark axis outermost in memory, and every later reshape would copy again.
        fixed_targets = np.take(targets, fixed, axis=1)
        fixed_pose = np.take(pose_columns, fixed, axis=2)               # (B, 6, F, 2)
    varying_weights = None
    if shared_weights is not None:
        # Rows scaled by sqrt(w) make the weighted problem an unweighted one.
        root = np.sqrt(shared_weights[fixed])
        fixed_targets = fixed_targets * root[:, None]
        fixed_pose = fixed_pose * root[:, None]
        varying_weights = shared_weights[varying][None, :, None]
    # Back-project the 2-row quantities through P R: A_i^T v = L_i^T (R^T P^T v). The
    # translation columns are the same for every landmark (F, scaled by sqrt(w_i)), so their
    # rows of the cross block are R's first two rows times the weighted basis sum.
    per_landmark = POSE_DIM - 2   # rotation and scale columns differ per landmark
    lifted_pose = np.matmul(fixed_pose[:, :per_landmark], projection[:, None])  # (B, 4, F, 3)
    cross = np.empty((batch, POSE_DIM, size))
    cross[:, :per_landmark] = (lifted_pose.reshape(batch * per_landmark, 3 * count)
                               @ fixed_basis_flat).reshape(batch, per_landmark, size)
    cross[:, per_landmark:] = np.matmul(projection * FLIP_Y[:, None], fixed_basis_sum)
    hessian[:, size:, :size] = cross
    hessian[:, :size, size:] = np.swapaxes(cross, 1, 2)
    pose_rows_t = fixed_pose.reshape(batch, POSE_DIM, 2 * count)
    # A contiguous transpose lets matmul hand the small products to BLAS.
    pose_rows = np.ascontiguousarray(np.swapaxes(pose_rows_t, 1, 2))
    hessian[:, size:, size:] = np.matmul(pose_rows_t, pose_rows)
    lifted_targets = np.matmul(fixed_targets, projection)
    gradient = np.concatenate(
        [lifted_targets.reshape(batch, -1) @ fixed_basis_flat,
         np.matmul(pose_rows_t, fixed_targets.reshape(batch, 2 * count, 1))[..., 0]], axis=1)
    if len(varying):
        extra_hessian, extra_gradient = _varying(
            varying_basis, projection, np.take(pose_columns, varying, axis=2),
            np.take(targets, varying, axis=1), varying_weights)
        hessian += extra_hessian
        gradient += extra_gradient
    return hessian, gradient


def _varying(basis: np.ndarray, projection: np.ndarray, pose_columns: np.ndarray,
             targets: np.ndarray, weights: np.ndarray | None):
    """Normal equations of the landmarks whose basis rows differ per face (sliding jaw).

    The same sums as :func:`_direct`, with the rows ``[A_i J_i]`` written into one array
    (no concatenation copy). basis (B, J, 3, K), projection (B, 2, 3), pose_columns
    (B, 6, J, 2), targets (B, J, 2), weights (1, J, 1) or None.
    """
    batch, count = targets.shape[:2]
    size = basis.shape[3]
    rows = np.empty((batch, count, 2, size + POSE_DIM))
    np.matmul(projection[:, None], basis, out=rows[..., :size])
    rows[..., size:] = np.moveaxis(pose_columns, 1, 3)
    rows = rows.reshape(batch, 2 * count, size + POSE_DIM)
    if weights is None:
        weighted_t = np.ascontiguousarray(np.swapaxes(rows, 1, 2))
    else:
        weighted_t = np.ascontiguousarray(np.swapaxes(rows * np.repeat(weights, 2, axis=1), 1, 2))
    hessian = np.matmul(weighted_t, rows)
    gradient = np.matmul(weighted_t, targets.reshape(batch, 2 * count, 1))[..., 0]
    return hessian, gradient


def _pose_jacobian_columns(rotated: np.ndarray) -> np.ndarray:
    """(B, 6, N, 2) derivative of ``P R X_i`` in mm w.r.t. the pose step ``(w, d_s, d_t)``,
    one (N, 2) array per pose parameter.

    ``w x p = -[p]x w`` gives rows ``(0, pz, -py)`` and ``(-pz, 0, px)``; the relative scale
    step gives ``P p``; the translation step ``s d_t`` in pixels gives ``F``.
    """
    columns = np.zeros((rotated.shape[0], POSE_DIM) + rotated.shape[1:2] + (2,))
    px, py, pz = rotated[..., 0], rotated[..., 1], rotated[..., 2]
    columns[:, 0, :, 1] = -pz
    columns[:, 1, :, 0] = pz
    columns[:, 2, :, 0] = -py
    columns[:, 2, :, 1] = px
    columns[:, 3] = rotated[..., :2]
    columns[:, 4, :, 0] = 1.0
    columns[:, 5, :, 1] = -1.0
    return columns


def _direct(basis: np.ndarray, projection: np.ndarray, pose_jacobian: np.ndarray,
            targets: np.ndarray, weights: np.ndarray | None):
    """Normal equations summed landmark by landmark (per-face basis rows or weights).

    basis (B, N, 3, K), projection (B, 2, 3), pose_jacobian (B, N, 2, 6), targets (B, N, 2),
    weights (B, N, 1), (1, N, 1) or None.
    """
    batch, count = targets.shape[:2]
    rows = np.concatenate([np.matmul(projection[:, None], basis), pose_jacobian],
                          axis=3).reshape(batch, 2 * count, -1)
    weighted = rows if weights is None else rows * np.repeat(weights, 2, axis=1)
    # A contiguous transpose lets matmul hand the products to BLAS.
    weighted_t = np.ascontiguousarray(np.swapaxes(weighted, 1, 2))
    hessian = np.matmul(weighted_t, rows)
    gradient = np.matmul(weighted_t, targets.reshape(batch, 2 * count, 1))[..., 0]
    return hessian, gradient
