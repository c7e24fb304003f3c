"""Fit pose, identity and the 29 expression coefficients of a morphable model to 2D landmarks.

The fit minimises, for every face ``b`` with weighted landmarks ``x_bi``::

    sum_i w_bi ||x_bi - P_b(X_bi)||^2 / s_b^2  +  identity_weight * ||a_g(b)||^2
                                              +  expression_weight * ||e_b||^2

over the camera ``P_b`` (rotation, scale ``s_b``, translation; see :mod:`fitting.camera`), the
expression ``e_b`` and the identity ``a_g`` shared by all faces of subject ``g`` (sigma units;
the identity prior is counted once per subject). Dividing by ``s_b^2`` measures the landmark
error in model millimetres, so the prior weights are image-size independent: each weight is the
variance (mm^2) of landmark noise on the model's scale that the prior balances.

The fit is Gauss-Newton on all parameters at once (pose, expression and the pooled identity;
see :mod:`fitting.linearize` for the linearisation):

1. initial pose of the mean shape: affine Gold Standard estimate, nearest rotation, one
   Gauss-Newton pose step (:mod:`fitting.camera`). A second pose step on the mean shape saves
   no joint step (the first joint step moves identity by about 2 sigma, which moves the best
   pose anyway); without any, one noise-free face with a negligible prior needed more than 20
   joint steps (``benchmarks/RESULTS.md``, "Fitter");
2. repeat: build the normal equations with the current jaw correspondences; solve them with
   the identity pooled per subject (:func:`fitting.solve.solve_pooled`, exact Schur
   complement); update the coefficients and the pose; recompute the jaw correspondences from
   the new parameters (the continuous silhouette blend of :func:`fitting.contour.contour_weights`;
   a face whose steps stop shrinking moves its correspondences only part of the way);
   a subject stops when no coefficient changes by more than ``tolerance`` sigma, no pose
   parameter by more than ``tolerance`` (radians, relative scale, mm of translation) and no
   jaw blend weight by more than ``tolerance``.

A converged face is a fixed point: the jaw correspondences that the returned parameters give
(as ``project(..., slide_contour=True)`` computes them) are the ones of the last solve to within
``tolerance``. The reported residual of every face is computed with the correspondences of
the returned parameters, so ``project`` reproduces it. An earlier version chose hard
silhouette vertices for three iterations and then froze them; the last pose steps could then
turn the head by up to 20 degrees, so the stored pose and its jaw correspondences disagreed
(jaw landmarks 35-68 px off on half of the demo photos).

An earlier version alternated pose and shape (block coordinate descent); pose and identity are
so strongly coupled through depth that it needed far more than 30 iterations, where the joint
step converges in about 4.

Everything is vectorised over the batch; the only Python loops are over iterations, over
chunks of about ``chunk_size`` faces (whole subjects per chunk), which bound memory, and the
per-face Cholesky calls of :func:`fitting.solve.solve_spd` (numpy has no batched Cholesky
solve; one LAPACK call per face is 2x faster than its batched LU: 15 against 31 us on a
75 x 75 system, re-measured 2026-11-25).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Hashable, Sequence

import numpy as np

from fitting.blendshapes import blendshape_weights
from fitting.camera import (
    axis_angle_to_rotation,
    estimate_affine_camera,
    nearest_scaled_rotation,
    project_points,
    refine_pose,
    rotation_to_euler,
)
from fitting.contour import CHIN_LANDMARK, contour_weights
from fitting.linearize import POSE_DIM, gram_blocks, normal_equations
from fitting.models import MorphableModel
from fitting.solve import solve_pooled

__all__ = ["FitBatch", "fit_landmarks", "project", "FAILURE_REASONS"]

NUM_LANDMARKS = 68
OUTER_EYE_CORNERS = (36, 45)
SLIDING_LANDMARKS = np.array([j for j in range(17) if j != CHIN_LANDMARK])
FAILURE_REASONS = (
    "non_finite_landmarks",   # a landmark with positive weight is NaN or infinite
    "missing_eye_corners",    # landmark 36 or 45 is not finite: no inter-ocular distance
    "too_few_landmarks",      # fewer than ``min_landmarks`` landmarks with positive weight
    "degenerate_landmarks",   # the weighted landmarks are collapsed or collinear
    "numerical_failure",      # the fit produced non-finite values (should not happen)
)
# Gauss-Newton steps that refine the initial pose of the mean shape.
_INITIAL_POSE_STEPS = 1
# Weight vectors whose weighted Gram blocks (about 0.5 MB each) are cached per model.
_MAX_WEIGHTED_DESIGNS = 8
# Trust limits of one Gauss-Newton pose step (radians, relative scale): keep a badly conditioned
# face from jumping to a mirrored or collapsed pose.
_MAX_ROTATION_STEP = 0.5
_MAX_SCALE_STEP = 0.5
# Jaw relaxation: a face whose step is not at most this fraction of its previous one halves
# the share of the way its jaw correspondences move towards the new blend, down to the minimum.
# Faces that cycle between correspondences then settle: open-model sliding fits at 4 px of
# noise converged 95.1 -> 99.3 %, at 2 px 99.5 -> 100 %, with the same accuracy and no extra
# time (benchmarks/fit_accuracy.py; RESULTS.md, "Round-trip accuracy"). Faces converging
# normally shrink their steps far faster.
_STALL_RATIO = 0.8
_MIN_RELAXATION = 0.125
# Smallest ratio of the minor to the major spread of the landmarks for a usable face.
_MIN_ASPECT = 1e-3


@dataclasses.dataclass(frozen=True)
class FitBatch:
    """Fitted parameters of a batch of faces; batch axis first.

    Attributes
    ----------
    expression : (B, 29) float64       sigma units
    identity : (B, K_id) float64       sigma units; equal rows for faces of one subject
    rotation : (B, 3, 3) float64       model-to-camera rotation (:mod:`fitting.camera`)
    yaw, pitch, roll : (B,) float64    degrees, ``R = Rz(roll) Ry(yaw) Rx(pitch)``
    scale : (B,) float64               pixels per mm
    translation : (B, 2) float64       pixels
    residual : (B,) float64            RMS landmark reprojection error (weighted by the
                                       landmark weights) over the inter-ocular distance
                                       (outer eye corners 36-45) of the input landmarks
    converged : (B,) bool              parameters settled within ``tolerance``
    failure : (B,) object              None, or the reason (one of ``FAILURE_REASONS``);
                                       failed rows hold zeros and identity rotations
    blendshapes : (B, U) float64 or None   weights in [0, 1] of the model's named units
                                       (:func:`fitting.blendshapes.blendshape_weights`);
                                       None for a model without them
    """

    expression: np.ndarray
    identity: np.ndarray
    rotation: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    translation: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    failure: np.ndarray
    blendshapes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scale)


def project(model: MorphableModel, expression: np.ndarray, identity: np.ndarray,
            rotation: np.ndarray, scale: np.ndarray, translation: np.ndarray, *,
            slide_contour: bool = False) -> np.ndarray:
    """The forward model: image positions of the 68 landmark vertices.

    By default uses the fixed ``model.landmark_indices`` (no contour sliding) and the
    scaled-orthographic camera ``x = s (R X)_x + t_x``, ``y = -s (R X)_y + t_y`` (model y up,
    image y down); the Euler convention is in :mod:`fitting.camera`.

    Parameters
    ----------
    model : MorphableModel
    expression : (B, 29)         sigma units
    identity : (B, K_id)         sigma units
    rotation : (B, 3, 3)
    scale : (B,)                 pixels per mm
    translation : (B, 2)         pixels
    slide_contour : bool
        Put the jaw landmarks on the silhouette (the blend of contour candidates of
        :func:`fitting.contour.contour_weights`), the correspondences
        ``fit_landmarks(..., slide_contour=True)`` fits and reports its residual with.

    Returns
    -------
    landmarks_2d : (B, 68, 2) float64   image pixels, y down
    """
    expression = np.asarray(expression, dtype=np.float64)
    identity = np.asarray(identity, dtype=np.float64)
    rotation = np.asarray(rotation, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    batch = len(scale)
    expected = {
        "expression": (expression, (batch, model.expression_dim)),
        "identity": (identity, (batch, model.identity_dim)),
        "rotation": (rotation, (batch, 3, 3)),
        "scale": (scale, (batch,)),
        "translation": (translation, (batch, 2)),
    }
    for name, (value, shape) in expected.items():
        if value.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {value.shape}")
    sliding = slide_contour and model.contour_candidates is not None
    design = _design_for(model, sliding)
    coefficients = np.concatenate([identity, expression], axis=1)
    # The same arithmetic as the fit's, so that the jaw blend agrees with it to the last bit.
    positions = _positions(design, coefficients)
    points = _landmark_points(design, positions, _jaw_weights(design, positions, rotation))
    return project_points(_model_frame(design, points, coefficients), rotation, scale,
                          translation)


def fit_landmarks(
    model: MorphableModel,
    landmarks_2d: np.ndarray,
    *,
    subject_ids: Sequence[Hashable] | None = None,
    landmark_weights: np.ndarray | None = None,
    identity_weight: float = 1.0,
    expression_weight: float = 1.0,
    max_iterations: int = 20,
    tolerance: float = 5e-2,
    slide_contour: bool = True,
    contour_updates: int = 20,
    min_landmarks: int = 8,
    chunk_size: int = 128,
) -> FitBatch:
    """Fit pose, identity and expression to a batch of 68-point landmark sets.

    Parameters
    ----------
    model : MorphableModel
    landmarks_2d : (B, 68, 2) float
        iBUG-68 landmarks in image pixels, y down.
    subject_ids : (B,) sequence of hashables, optional
        Faces with equal ids share one identity vector, fitted from all their images;
        without ids every face has its own identity.
    landmark_weights : (B, 68) float, optional
        Non-negative confidence of each landmark (default all 1). A weight of 0 ignores the
        landmark, which may then be NaN. With the priors in mm^2, weight ``w`` treats the
        landmark's noise variance as ``prior / w``: ``fitting.noise.landmark_weights`` gives
        ``1 / variance`` of a landmarker's measured profile, the MAP weights with unit priors
        (what ``expnet generate`` uses).
    identity_weight : float
        Prior weight of the identity coefficients, > 0, in mm^2 (the landmark noise variance
        on the model scale it balances). Default from ``benchmarks/fit_regularisation.py``.
    expression_weight : float
        Prior weight of the expression coefficients, > 0, in mm^2.
    max_iterations : int
        Most alternations of contour, shape and pose steps.
    tolerance : float
        Convergence threshold on the largest step of a coefficient (sigma units), of a pose
        parameter (radians, relative scale, mm) and of a jaw blend weight. Gauss-Newton
        converges fast enough that stopping after a step below 5e-2 leaves the expression
        within 0.01 sigma of the fully converged one (median 0.001; with jaw sliding 0.04,
        median 0.003; ``benchmarks/RESULTS.md``, "Fitter"), far below the 0.6-0.8 sigma error
        of 1 px landmark noise, and saves one step in five.
    slide_contour : bool
        Slide jaw landmarks 0-7, 9-16 to the silhouette (:mod:`fitting.contour`). Ignored
        when the model has no ``contour_candidates``. Turn off to invert :func:`project`
        exactly.
    contour_updates : int
        Iterations in which the jaw correspondences follow the pose and shape (recomputed
        after every step); after that they are frozen. A face converges only when the
        correspondences its final parameters give (those of ``project(...,
        slide_contour=True)``, with which ``residual`` is computed) are those of its last solve
        to within ``tolerance``; with fewer updates than iterations that may fail.
    min_landmarks : int
        Fewest landmarks with positive weight for a fit (>= 4).
    chunk_size : int
        Faces processed together; subjects are never split, so a chunk holds at least one
        whole subject. Bounds memory at about ``chunk_size * (K_id + 29)^2`` floats. The
        default is the fastest on one core (per-call numpy overhead against cache size;
        ``benchmarks/RESULTS.md``, "Fitter").

    Returns
    -------
    FitBatch

    Raises
    ------
    ValueError
        When an argument has the wrong shape or an invalid value.
    """
    landmarks = np.asarray(landmarks_2d, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected landmarks_2d of shape (B, 68, 2), got {landmarks.shape}")
    batch = landmarks.shape[0]
    weights = _check_weights(landmark_weights, batch)
    _check_hyperparameters(identity_weight, expression_weight, max_iterations, tolerance,
                           contour_updates, min_landmarks, chunk_size)
    groups = _subject_groups(subject_ids, batch)

    failure = _face_failures(landmarks, weights, min_landmarks=min_landmarks)
    failed = np.array([reason is not None for reason in failure], dtype=bool)
    design = _design_for(model, slide_contour and model.contour_candidates is not None)
    # Failed faces are replaced by a harmless stand-in so that the batched maths stays finite;
    # they get groups of their own and their results are overwritten below.
    landmarks = landmarks.copy()
    landmarks[failed] = design.stand_in
    weights = np.where(failed[:, None], 1.0, weights)
    landmarks = np.where(weights[..., None] > 0, landmarks, 0.0)
    if failed.any():
        groups = groups.copy()
        groups[failed] = groups.max(initial=-1) + 1 + np.arange(failed.sum())

    settings = _Settings(identity_weight, expression_weight, max_iterations, tolerance,
                         contour_updates)
    parts = _empty_results(batch, model.identity_dim, model.expression_dim)
    for faces in _chunks(groups, chunk_size):
        _, local_groups = np.unique(groups[faces], return_inverse=True)
        chunk = _fit_chunk(design, landmarks[faces], weights[faces], local_groups, settings)
        for name, value in chunk.items():
            parts[name][faces] = value

    residual = _normalised_residual(design, parts, landmarks, weights)
    bad = ~failed & ~np.all(np.isfinite(np.concatenate(
        [parts["identity"], parts["expression"], parts["translation"],
         parts["scale"][:, None], residual[:, None]], axis=1)), axis=1)
    failure[bad] = "numerical_failure"
    fit = _assemble(parts, residual, failure)
    return dataclasses.replace(fit, blendshapes=blendshape_weights(model, fit.expression))


@dataclasses.dataclass(frozen=True)
class _Settings:
    identity_weight: float
    expression_weight: float
    max_iterations: int
    tolerance: float
    contour_updates: int


@dataclasses.dataclass(frozen=True, eq=False)
class _Design:
    """The part of a model the fit touches, precomputed once per model and sliding mode.

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


_DESIGNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _design_for(model: MorphableModel, sliding: bool) -> _Design:
    per_model = _DESIGNS.setdefault(model, {})
    if sliding not in per_model:
        per_model[sliding] = _build_design(model, sliding)
    return per_model[sliding]


def _build_design(model: MorphableModel, sliding: bool) -> _Design:
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
    return _Design(
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


def _fit_chunk(design: _Design, landmarks: np.ndarray, weights: np.ndarray,
               groups: np.ndarray, settings: _Settings) -> dict[str, np.ndarray]:
    """Fit one chunk of faces; ``groups`` are dense subject indices within the chunk."""
    batch = len(landmarks)
    size = design.basis.shape[2] + POSE_DIM
    identity_dim = design.identity_dim
    precision = np.concatenate([np.full(identity_dim, settings.identity_weight),
                                np.full(size - POSE_DIM - identity_dim,
                                        settings.expression_weight),
                                np.zeros(POSE_DIM)])
    design, shared_weights = _shared_weights_design(design, weights)
    coefficients = np.zeros((batch, size - POSE_DIM))
    points = np.broadcast_to(design.mean[design.landmarks], (batch, NUM_LANDMARKS, 3))
    affine, translation = estimate_affine_camera(landmarks, points, weights)
    rotation, scale = nearest_scaled_rotation(affine)
    rotation, scale, translation = refine_pose(landmarks, points, weights, rotation, scale,
                                               translation, steps=_INITIAL_POSE_STEPS)
    positions = _positions(design, coefficients)
    jaw = _jaw_weights(design, positions, rotation)
    converged = np.zeros(batch, dtype=bool)
    relaxation, previous_change = np.ones(batch), np.full(batch, np.inf)
    for iteration in range(settings.max_iterations):
        # Subjects whose every face has converged are frozen; the rest iterate together.
        active = np.flatnonzero(~converged)
        if len(active) == batch:
            # All faces active (the first steps): views instead of gathered copies.
            active, active_groups = slice(None), groups
        else:
            _, active_groups = np.unique(groups[active], return_inverse=True)
        state = _step(design, landmarks[active], weights[active], active_groups,
                      precision, coefficients[active], positions[active], jaw[active],
                      rotation[active], scale[active], translation[active], shared_weights,
                      follow=iteration < settings.contour_updates,
                      relaxation=relaxation[active])
        (coefficients[active], positions[active], jaw[active], rotation[active],
         scale[active], translation[active], change) = state
        # A face whose step did not shrink enough is cycling between jaw correspondences (or
        # creeping towards them): it moves them only part of the way from now on.
        stalled = change >= _STALL_RATIO * previous_change[active]
        relaxation[active] = np.where(stalled, np.maximum(relaxation[active] / 2.0,
                                                          _MIN_RELAXATION), relaxation[active])
        previous_change[active] = change
        # A subject converges as a whole: its identity is shared.
        if len(change) == active_groups.max() + 1:
            group_change = change  # one face per subject
        else:
            group_change = np.zeros(active_groups.max() + 1)
            np.maximum.at(group_change, active_groups, change)
        converged[active] = group_change[active_groups] < settings.tolerance
        if converged.all():
            break
    # The reported correspondences are the ones the final parameters give, as in
    # ``project(..., slide_contour=True)``; for a converged face they are the ones it was
    # fitted with (to within ``tolerance``).
    final_jaw = _jaw_weights(design, positions, rotation)
    if len(jaw[0]):
        converged &= np.abs(final_jaw - jaw).max(axis=(1, 2)) < settings.tolerance
    # x = s F P R (X - o) + t'  ==  s F P R X + (t' - s F P R o), o the per-face origin
    origin = _origin(design, coefficients)
    origin_shift = (scale[:, None] * np.einsum("bij,bj->bi", rotation[:, :2], origin)
                    * np.array([1.0, -1.0]))
    return {
        "identity": coefficients[:, :identity_dim],
        "expression": coefficients[:, identity_dim:],
        "rotation": rotation,
        "scale": scale,
        "translation": translation - origin_shift,
        "converged": converged,
        "points": _model_frame(design, _landmark_points(design, positions, final_jaw),
                               coefficients),
    }


def _origin(design: _Design, coefficients: np.ndarray) -> np.ndarray:
    """(B, 3) model-frame position of the fit's origin for each face: the landmark centroid
    plus the shifts taken off the basis columns, weighted by the coefficients (B, K)."""
    return design.centre + coefficients @ design.basis_shift.T


def _model_frame(design: _Design, points: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(B, N, 3) model-frame positions of ``points`` (B, N, 3) given in the fit's frame."""
    return points + _origin(design, coefficients)[:, None, :]


def _shared_weights_design(design: _Design, weights: np.ndarray):
    """The design and the ``shared_weights`` argument of :func:`_step` for a chunk's weights.

    When every face has the same landmark weights (a landmarker's noise profile), the weights'
    square roots are folded into the fixed landmarks' basis rows and Gram blocks once, so the
    fast Gram path of :func:`fitting.linearize.normal_equations` applies; the weighted design
    is cached per weight vector. Returns ``(design, None)`` for unit weights, ``(weighted
    design, (68,) weights)`` for shared ones and ``(design, False)`` for per-face weights.
    """
    if np.all(weights == 1.0):
        return design, None
    if not np.all(weights == weights[0]):
        return design, False
    shared = weights[0].copy()
    key = shared.tobytes()
    if key not in design.weighted:
        if len(design.weighted) >= _MAX_WEIGHTED_DESIGNS:
            design.weighted.clear()  # a few landmarker profiles are expected, not many
        root = np.sqrt(shared[design.fixed])
        size = design.basis.shape[2]
        fixed_basis = design.fixed_basis_flat.reshape(-1, 3, size) * root[:, None, None]
        design.weighted[key] = dataclasses.replace(
            design, fixed_basis_flat=fixed_basis.reshape(-1, size),
            fixed_basis_sum=np.einsum("f,fck->ck", root, fixed_basis),
            fixed_gram=gram_blocks(fixed_basis, padding=POSE_DIM), weighted={})
    return design.weighted[key], shared


def _positions(design: _Design, coefficients: np.ndarray) -> np.ndarray:
    """(B, R, 3) positions of all the design's vertices (relative to its centre)."""
    return design.mean + (coefficients @ design.basis_flat).reshape(len(coefficients), -1, 3)


def _jaw_weights(design: _Design, positions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(B, J, C) blend weights of the sliding landmarks' candidates; (B, 0, 1) if none slide."""
    if not len(design.sliding):
        return np.zeros((len(positions), 0, 1))
    # ``take`` keeps the gathers C-ordered (fancy indexing on axis 1 would not; see
    # :func:`fitting.linearize.normal_equations`).
    candidate_points = np.take(positions, design.candidates.clip(min=0), axis=1)
    return np.take(contour_weights(candidate_points, design.candidates, rotation),
                   design.sliding, axis=1)


def _blend(jaw: np.ndarray, values: np.ndarray, *, per_face: bool) -> np.ndarray:
    """Blend candidate values -> (B, J, ...): ``values`` is (B, J, C, ...) when ``per_face``,
    else (J, C, ...), shared by all faces."""
    if per_face:
        return np.einsum("bjc,bjc...->bj...", jaw, values)
    # One (B, C) x (C, rest) product per landmark: BLAS rather than an einsum loop.
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    blended = np.matmul(np.swapaxes(jaw, 0, 1), flat)                  # (J, B, rest)
    return np.swapaxes(blended, 0, 1).reshape(jaw.shape[:2] + values.shape[2:])


def _landmark_points(design: _Design, positions: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """(B, 68, 3) landmark positions: fixed vertices, and the blended jaw for sliding ones."""
    points = np.take(positions, design.landmarks, axis=1)
    if len(design.sliding):
        points[:, design.sliding] = _blend(
            jaw, np.take(positions, design.sliding_candidates, axis=1), per_face=True)
    return points


def _step(design: _Design, landmarks, weights, groups, precision, coefficients, positions, jaw,
          rotation, scale, translation, shared_weights, *, follow: bool,
          relaxation: np.ndarray):
    """One Gauss-Newton step (joint solve, pose update, new jaw correspondences).

    ``positions`` and ``jaw`` belong to the current parameters; the step returns those of the
    updated parameters (when ``follow``, ``jaw`` moves the fraction ``relaxation`` (B,) of the
    way to the blend the new parameters give) and each face's change: its largest coefficient
    (sigma) or pose step, or the largest difference between the blend it used and the one
    its new parameters give (the fixed-point residual, whatever the relaxation).
    """
    batch = len(landmarks)
    points = _landmark_points(design, positions, jaw)
    sliding = design.sliding
    mean_points = design.mean[design.landmarks][None].repeat(batch, axis=0)
    varying_basis = None
    if len(sliding):
        mean_points[:, sliding] = _blend(jaw, design.sliding_mean, per_face=False)
        varying_basis = _blend(jaw, design.sliding_basis, per_face=False)
    hessian, gradient = normal_equations(
        landmarks=landmarks, weights=weights if shared_weights is False else None,
        shared_weights=None if shared_weights is False else shared_weights,
        mean_points=mean_points, rotated=np.matmul(points, np.swapaxes(rotation, 1, 2)),
        rotation=rotation, scale=scale, translation=translation, fixed=design.fixed,
        fixed_basis_flat=design.fixed_basis_flat, fixed_basis_sum=design.fixed_basis_sum,
        fixed_gram=design.fixed_gram,
        varying=sliding, varying_basis=varying_basis)
    shared, own = solve_pooled(hessian, gradient, groups, num_shared=design.identity_dim,
                               precision=precision, overwrite_hessian=True)
    updated = np.concatenate([shared[groups], own[:, :-POSE_DIM]], axis=1)
    step = _limit_pose_step(own[:, -POSE_DIM:])
    change = np.maximum(np.abs(updated - coefficients).max(axis=1), np.abs(step).max(axis=1))
    rotation = np.matmul(axis_angle_to_rotation(step[:, :3]), rotation)
    translation = translation + scale[:, None] * step[:, 4:]
    scale = scale * (1.0 + step[:, 3])
    positions = _positions(design, updated)
    if follow and len(sliding):
        new_jaw = _jaw_weights(design, positions, rotation)
        change = np.maximum(change, np.abs(new_jaw - jaw).max(axis=(1, 2)))
        jaw = jaw + relaxation[:, None, None] * (new_jaw - jaw)
    return updated, positions, jaw, rotation, scale, translation, change


def _limit_pose_step(step: np.ndarray) -> np.ndarray:
    """Shrink pose steps beyond the trust limits; converging fits never reach them."""
    angle = np.linalg.norm(step[:, :3], axis=1)
    shrink = np.minimum(1.0, _MAX_ROTATION_STEP / np.maximum(angle, 1e-300))
    shrink = np.minimum(shrink, _MAX_SCALE_STEP / np.maximum(np.abs(step[:, 3]), 1e-300))
    return step * shrink[:, None]


def _normalised_residual(design: _Design, parts: dict, landmarks: np.ndarray,
                         weights: np.ndarray) -> np.ndarray:
    """Weighted RMS pixel error of the fitted landmarks over the inter-ocular distance."""
    predicted = project_points(parts["points"], parts["rotation"], parts["scale"],
                               parts["translation"])
    error = predicted - landmarks
    squared = error[..., 0] ** 2 + error[..., 1] ** 2
    rms = np.sqrt(np.sum(weights * squared, axis=1) / np.sum(weights, axis=1))
    left, right = OUTER_EYE_CORNERS
    interocular = np.linalg.norm(landmarks[:, left] - landmarks[:, right], axis=1)
    return rms / np.where(interocular > 0, interocular, 1.0)


def _empty_results(batch: int, identity_dim: int, expression_dim: int) -> dict:
    return {
        "identity": np.zeros((batch, identity_dim)),
        "expression": np.zeros((batch, expression_dim)),
        "rotation": np.tile(np.eye(3), (batch, 1, 1)),
        "scale": np.zeros(batch),
        "translation": np.zeros((batch, 2)),
        "converged": np.zeros(batch, dtype=bool),
        "points": np.zeros((batch, NUM_LANDMARKS, 3)),
    }


def _assemble(parts: dict, residual: np.ndarray, failure: np.ndarray) -> FitBatch:
    failed = np.array([reason is not None for reason in failure], dtype=bool)
    keep = ~failed
    identity = np.where(keep[:, None], parts["identity"], 0.0)
    expression = np.where(keep[:, None], parts["expression"], 0.0)
    rotation = np.where(keep[:, None, None], parts["rotation"], np.eye(3))
    scale = np.where(keep, parts["scale"], 0.0)
    translation = np.where(keep[:, None], parts["translation"], 0.0)
    yaw, pitch, roll = rotation_to_euler(rotation)
    return FitBatch(
        expression=expression,
        identity=identity,
        rotation=rotation,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        scale=scale,
        translation=translation,
        residual=np.where(keep, residual, 0.0),
        converged=parts["converged"] & keep,
        failure=failure,
    )


def _check_weights(landmark_weights, batch: int) -> np.ndarray:
    if landmark_weights is None:
        return np.ones((batch, NUM_LANDMARKS))
    weights = np.asarray(landmark_weights, dtype=np.float64)
    if weights.shape != (batch, NUM_LANDMARKS):
        raise ValueError(f"expected landmark_weights of shape ({batch}, 68), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("landmark_weights must be finite and non-negative")
    return weights


def _check_hyperparameters(identity_weight, expression_weight, max_iterations, tolerance,
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


def _subject_groups(subject_ids, batch: int) -> np.ndarray:
    """Dense group index per face: equal subject ids share a group; no ids, one per face."""
    if subject_ids is None:
        return np.arange(batch)
    if len(subject_ids) != batch:
        raise ValueError(f"expected subject_ids of shape ({batch},), got length "
                         f"{len(subject_ids)}")
    index: dict = {}
    return np.array([index.setdefault(subject, len(index)) for subject in subject_ids],
                    dtype=np.int64)


def _face_failures(landmarks: np.ndarray, weights: np.ndarray, *,
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


def _chunks(groups: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Split faces into chunks of about ``chunk_size`` without splitting a group."""
    if len(groups) == 0:
        return []
    if len(groups) <= chunk_size:
        return [np.arange(len(groups))]  # one chunk: every group is whole
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    # A group joins the chunk in which its first face falls.
    chunk_of = group_start // chunk_size
    boundaries = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]])
    return np.split(order, boundaries[1:])
