"""The part of a morphable model the fitter touches, precomputed once per model.

The landmark vertices and contour candidates, their bases with the landmark centroid taken off
each column, and the Gram blocks of the fixed landmarks; plus the geometry the Gauss-Newton
loop and :func:`fitting.fitter.project` share (vertex positions, jaw blends, the fit's
origin), so both compute the same numbers to the last bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fitting.contour import CHIN_LANDMARK, contour_weights
from fitting.linearize import POSE_DIM, gram_blocks
from fitting.models import MorphableModel
from fitting.models.model import NUM_LANDMARKS

__all__ = ["FitDesign", "design_for"]

SLIDING_LANDMARKS = np.array([j for j in range(17) if j != CHIN_LANDMARK])
# Weight vectors whose weighted Gram blocks (about 0.5 MB each) are cached per design.
_MAX_WEIGHTED_DESIGNS = 8
# Attribute of a model holding its designs, keyed by sliding mode: the model owns them, so
# they live exactly as long as it does (as its content hash does).
_DESIGNS_ATTRIBUTE = "_fit_designs"


@dataclasses.dataclass(frozen=True, eq=False)
class FitDesign:
    """The part of a model the fit touches, precomputed once per model and sliding mode.

    Built by :func:`design_for`; ``weighted`` caches the designs of shared landmark weights
    (:meth:`for_weights`).

    ``R`` local vertices: the landmark vertices and all contour candidates.
    """

    mean: np.ndarray            # (R, 3) relative to ``centre``
    centre: np.ndarray          # (3,) model point the fit rotates about (landmark centroid)
    basis: np.ndarray           # (R, 3, K) identity then expression columns, each moved so
                                # that its landmark centroid is 0
    basis_shift: np.ndarray     # (3, K) what was taken off each column of ``basis``
    basis_flat: np.ndarray      # (K, 3R) for positions of all local vertices at once
    landmarks: np.ndarray       # (68,) local index of each landmark vertex
    candidates: np.ndarray | None  # (17, C) local candidate indices, -1 padded
    sliding_candidates: np.ndarray  # (J, C) local candidates of the sliding landmarks, 0 padded
    sliding_mean: np.ndarray    # (J, C, 3) ``mean`` of those candidates (gathered once)
    sliding_basis: np.ndarray   # (J, C, 3, K) ``basis`` of those candidates (gathered once)
    fixed: np.ndarray           # iBUG indices whose vertex never changes
    sliding: np.ndarray         # iBUG indices that slide (empty when not sliding)
    fixed_basis_flat: np.ndarray  # (3F, K) basis of the fixed landmarks
    fixed_basis_sum: np.ndarray   # (3, K) their sum (weighted by the landmark weights)
    fixed_gram: np.ndarray      # (9, (K+6)^2) sum over fixed landmarks of L_c^T L_d, c,d in
                                # xyz, zero-padded by the pose unknowns
    identity_dim: int
    stand_in: np.ndarray        # (68, 2) landmarks of the mean face, frontal, for failed rows
    weighted: dict              # weights.tobytes() -> this design for shared landmark weights

    def for_weights(self, weights: np.ndarray):
        """The design and the shared landmark weights for a chunk's ``weights`` (B, 68).

        When every face has the same landmark weights (a landmarker's noise profile), the
        weights' square roots are folded into the fixed landmarks' basis rows and Gram blocks
        once, so the fast Gram path of :func:`fitting.linearize.normal_equations` applies; the
        weighted design is cached per weight vector. Returns ``(design, None)`` for unit
        weights, ``(weighted design, (68,) weights)`` for shared ones and ``(design, False)``
        for per-face weights.
        """
        if np.all(weights == 1.0):
            return self, None
        if not np.all(weights == weights[0]):
            return self, False
        shared = weights[0].copy()
        key = shared.tobytes()
        if key not in self.weighted:
            if len(self.weighted) >= _MAX_WEIGHTED_DESIGNS:
                self.weighted.clear()  # a few landmarker profiles are expected, not many
            root = np.sqrt(shared[self.fixed])
            size = self.basis.shape[2]
            fixed_basis = self.fixed_basis_flat.reshape(-1, 3, size) * root[:, None, None]
            self.weighted[key] = dataclasses.replace(
                self, fixed_basis_flat=fixed_basis.reshape(-1, size),
                fixed_basis_sum=np.einsum("f,fck->ck", root, fixed_basis),
                fixed_gram=gram_blocks(fixed_basis, padding=POSE_DIM), weighted={})
        return self.weighted[key], shared


def design_for(model: MorphableModel, sliding: bool) -> FitDesign:
    """The model's design for a sliding mode, built on first use and kept on the model."""
    designs = model.__dict__.get(_DESIGNS_ATTRIBUTE)
    if designs is None:
        designs = {}
        object.__setattr__(model, _DESIGNS_ATTRIBUTE, designs)
    if sliding not in designs:
        designs[sliding] = _build_design(model, sliding)
    return designs[sliding]


def _build_design(model: MorphableModel, sliding: bool) -> FitDesign:
    used = [model.landmark_indices]
    if sliding:
        used.append(model.contour_candidates[model.contour_candidates >= 0])
    vertices, inverse = np.unique(np.concatenate(used), return_inverse=True)
    landmarks = inverse[:NUM_LANDMARKS]
    candidates = None
    if sliding:
        candidates = np.full(model.contour_candidates.shape, -1, dtype=np.int64)
        candidates[model.contour_candidates >= 0] = inverse[NUM_LANDMARKS:]
    basis = np.concatenate([model.identity_basis[vertices], model.expression_basis[vertices]],
                           axis=2)
    # A component that moves all vertices by the same vector changes only the translation, so
    # taking its landmark centroid off every column is an exact reparametrisation (the
    # translation absorbs it and is mapped back). It decouples the translation from the
    # coefficients: 4.55 -> 4.03 Gauss-Newton steps per face (RESULTS.md, "Fitter").
    basis_shift = basis[landmarks].mean(axis=0)
    basis = basis - basis_shift
    sliding_landmarks = SLIDING_LANDMARKS if sliding else np.zeros(0, dtype=np.int64)
    fixed = np.setdiff1d(np.arange(NUM_LANDMARKS), sliding_landmarks)
    fixed_basis = basis[landmarks[fixed]]
    size = basis.shape[2]
    # Rotating about the landmark centroid rather than a far-away model origin keeps rotation
    # and translation steps decoupled; the translation is mapped back to the model origin.
    centre = model.mean[model.landmark_indices].mean(axis=0)
    mean = model.mean[vertices] - centre
    frontal = mean[landmarks]
    stand_in = np.stack([frontal[:, 0], -frontal[:, 1]], axis=1)
    sliding_candidates = (candidates[sliding_landmarks].clip(min=0) if sliding
                          else np.zeros((0, 1), dtype=np.int64))
    return FitDesign(
        mean=mean,
        centre=centre,
        basis=basis,
        basis_shift=basis_shift,
        basis_flat=np.ascontiguousarray(basis.transpose(2, 0, 1).reshape(size, -1)),
        landmarks=landmarks,
        candidates=candidates,
        sliding_candidates=sliding_candidates,
        sliding_mean=mean[sliding_candidates],
        sliding_basis=basis[sliding_candidates],
        fixed=fixed,
        sliding=sliding_landmarks,
        fixed_basis_flat=np.ascontiguousarray(fixed_basis.reshape(-1, size)),
        fixed_basis_sum=fixed_basis.sum(axis=0),
        fixed_gram=gram_blocks(fixed_basis, padding=POSE_DIM),
        identity_dim=model.identity_dim,
        stand_in=stand_in,
        weighted={},
    )


def origin(design: FitDesign, coefficients: np.ndarray) -> np.ndarray:
    """(B, 3) model-frame position of the fit's origin for each face: the landmark centroid
    plus the shifts taken off the basis columns, weighted by the coefficients (B, K)."""
    return design.centre + coefficients @ design.basis_shift.T


def model_frame(design: FitDesign, points: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(B, N, 3) model-frame positions of ``points`` (B, N, 3) given in the fit's frame."""
    return points + origin(design, coefficients)[:, None, :]


def positions(design: FitDesign, coefficients: np.ndarray) -> np.ndarray:
    """(B, R, 3) positions of all the design's vertices (relative to its centre)."""
    return design.mean + (coefficients @ design.basis_flat).reshape(len(coefficients), -1, 3)


def jaw_weights(design: FitDesign, positions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(B, J, C) blend weights of the sliding landmarks' candidates; (B, 0, 1) if none slide."""
    if not len(design.sliding):
        return np.zeros((len(positions), 0, 1))
    # ``take`` keeps the gathers C-ordered (fancy indexing on axis 1 would not; see
    # :func:`fitting.linearize.normal_equations`).
    candidate_points = np.take(positions, design.candidates.clip(min=0), axis=1)
    return np.take(contour_weights(candidate_points, design.candidates, rotation),
                   design.sliding, axis=1)


def blend(jaw: np.ndarray, values: np.ndarray, *, per_face: bool) -> np.ndarray:
    """Blend candidate values -> (B, J, ...): ``values`` is (B, J, C, ...) when ``per_face``,
    else (J, C, ...), shared by all faces."""
    if per_face:
        return np.einsum("bjc,bjc...->bj...", jaw, values)
    # One (B, C) x (C, rest) product per landmark: BLAS rather than an einsum loop.
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    blended = np.matmul(np.swapaxes(jaw, 0, 1), flat)                  # (J, B, rest)
    return np.swapaxes(blended, 0, 1).reshape(jaw.shape[:2] + values.shape[2:])


def landmark_points(design: FitDesign, positions: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """(B, 68, 3) landmark positions: fixed vertices, and the blended jaw for sliding ones."""
    points = np.take(positions, design.landmarks, axis=1)
    if len(design.sliding):
        points[:, design.sliding] = blend(
            jaw, np.take(positions, design.sliding_candidates, axis=1), per_face=True)
    return points
