"""Jaw-line contour sliding: which model vertex each jaw landmark (iBUG 0-16) sits on.

A detector puts the jaw landmarks on the visible outline of the face, which is not a fixed set
of vertices: as the head turns, the outline moves over the surface. A model lists, for each jaw
landmark, candidate vertices ordered from the frontal landmark vertex outwards towards the side
of the head (``MorphableModel.contour_candidates``, ``-1`` padded).

Rule (the silhouette rule, as in the "landmark marching" of Zhu et al., CVPR 2015, restricted to
the model's candidates): for each jaw landmark, take the candidate that is outermost in the
rotated face, i.e. has the most negative rotated x for landmarks 0-7 (the subject's right, image
left) and the most positive rotated x for landmarks 9-16. The outline is where the surface
turns away from the camera, which is where the rotated x along the candidate row peaks. The
chin (landmark 8) stays on its landmark vertex.
"""

from __future__ import annotations

import numpy as np

__all__ = ["JAW_LANDMARKS", "CHIN_LANDMARK", "outward_sign", "select_contour_vertices"]

JAW_LANDMARKS = np.arange(17)
CHIN_LANDMARK = 8


def outward_sign() -> np.ndarray:
    """(17,) sign of the image x direction pointing away from the face centre per jaw landmark.

    -1 for landmarks 0-7 (image left), +1 for 9-16 (image right), 0 for the chin.
    """
    return np.sign(JAW_LANDMARKS - CHIN_LANDMARK).astype(np.float64)


def select_contour_vertices(candidate_points: np.ndarray, candidates: np.ndarray,
                            rotation: np.ndarray, chin_vertex: int) -> np.ndarray:
    """Apply the silhouette rule for a batch of faces.

    Parameters
    ----------
    candidate_points : (B, 17, C) + (3,) float   model-frame positions of the candidates of each
                                                 face (values at padded slots are ignored)
    candidates : (17, C) int                     candidate vertex indices, ``-1`` padded
    rotation : (B, 3, 3) float                   current head rotations
    chin_vertex : int                            vertex of landmark 8

    Returns
    -------
    vertices : (B, 17) int64   chosen vertex per jaw landmark
    """
    if candidate_points.shape[1:] != candidates.shape + (3,):
        raise ValueError(
            f"expected candidate_points (B, {candidates.shape[0]}, {candidates.shape[1]}, 3), "
            f"got {candidate_points.shape}"
        )
    rotated_x = np.einsum("bjcd,bd->bjc", candidate_points, rotation[:, 0, :])
    outward = rotated_x * outward_sign()[:, None]
    outward = np.where(candidates[None] >= 0, outward, -np.inf)
    choice = np.argmax(outward, axis=2)
    vertices = candidates[JAW_LANDMARKS[None, :], choice]
    vertices[:, CHIN_LANDMARK] = chin_vertex
    return vertices
