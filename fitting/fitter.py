"""Fit pose, identity and the 29 expression coefficients of a morphable model to 2D landmarks.

The fit minimises, for every face ``b`` with weighted landmarks ``x_bi``::

    sum_i w_bi ||x_bi - P_b(X_bi)||^2 / s_b^2  +  identity_weight * ||a_g(b)||^2
                                              +  expression_weight * ||e_b||^2

over the camera ``P_b`` (rotation, scale ``s_b``, translation; :mod:`fitting.camera`), the
expression ``e_b`` and the identity ``a_g`` shared by all faces of subject ``g`` (sigma units;
the identity prior counted once per subject). Dividing by ``s_b^2`` measures the error in model
millimetres, so each prior weight is the landmark noise variance (mm^2) it balances. The loop is
:mod:`fitting.gauss_newton`, the model's precomputed part :mod:`fitting.design`, the input
checks :mod:`fitting.checks`; the history of the method is in ``docs/design-notes.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

import numpy as np

from fitting import design as geometry
from fitting.blendshapes import blendshape_weights
from fitting.camera import project_points, rotation_to_euler
from fitting.checks import (
    FAILURE_REASONS,
    check_hyperparameters,
    check_weights,
    face_failures,
    subject_groups,
)
from fitting.design import design_for
from fitting.gauss_newton import Settings, fit_chunk
from fitting.models import MorphableModel
from fitting.models.model import NUM_LANDMARKS, OUTER_EYE_CORNERS

__all__ = ["FitBatch", "fit_landmarks", "project", "FAILURE_REASONS"]


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
    design = design_for(model, sliding)
    coefficients = np.concatenate([identity, expression], axis=1)
    # The same arithmetic as the fit's, so that the jaw blend agrees with it to the last bit.
    positions = geometry.positions(design, coefficients)
    points = geometry.landmark_points(design, positions,
                                      geometry.jaw_weights(design, positions, rotation))
    return project_points(geometry.model_frame(design, points, coefficients), rotation, scale,
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
        on the model scale it balances). Default from ``studies/fit_regularisation.py``
        (``benchmarks/RESULTS.md``, "Fitter" / "Prior weights").
    expression_weight : float
        Prior weight of the expression coefficients, > 0, in mm^2. Default from the same
        study and table.
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
    weights = check_weights(landmark_weights, batch)
    check_hyperparameters(identity_weight, expression_weight, max_iterations, tolerance,
                          contour_updates, min_landmarks, chunk_size)
    groups = subject_groups(subject_ids, batch)

    failure = face_failures(landmarks, weights, min_landmarks=min_landmarks)
    failed = np.array([reason is not None for reason in failure], dtype=bool)
    design = design_for(model, slide_contour and model.contour_candidates is not None)
    # Failed faces are replaced by a harmless stand-in so that the batched maths stays finite;
    # they get groups of their own and their results are overwritten below.
    landmarks = landmarks.copy()
    landmarks[failed] = design.stand_in
    weights = np.where(failed[:, None], 1.0, weights)
    landmarks = np.where(weights[..., None] > 0, landmarks, 0.0)
    if failed.any():
        groups = groups.copy()
        groups[failed] = groups.max(initial=-1) + 1 + np.arange(failed.sum())

    settings = Settings(identity_weight, expression_weight, max_iterations, tolerance,
                        contour_updates)
    parts = _empty_results(batch, model.identity_dim, model.expression_dim)
    for faces in _chunks(groups, chunk_size):
        _, local_groups = np.unique(groups[faces], return_inverse=True)
        chunk = fit_chunk(design, landmarks[faces], weights[faces], local_groups, settings)
        for name, value in chunk.items():
            parts[name][faces] = value

    residual = _normalised_residual(design, parts, landmarks, weights)
    bad = ~failed & ~np.all(np.isfinite(np.concatenate(
        [parts["identity"], parts["expression"], parts["translation"],
         parts["scale"][:, None], residual[:, None]], axis=1)), axis=1)
    failure[bad] = "numerical_failure"
    fit = _assemble(parts, residual, failure)
    return dataclasses.replace(fit, blendshapes=blendshape_weights(model, fit.expression))


def _normalised_residual(design: geometry.FitDesign, parts: dict, landmarks: np.ndarray,
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
