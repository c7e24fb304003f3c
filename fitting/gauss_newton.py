"""The Gauss-Newton loop of the fitter: joint steps on pose, expression and pooled identity.

Each step builds the normal equations with the current jaw correspondences
(:mod:`fitting.linearize`), solves them with the identity pooled per subject
(:func:`fitting.solve.solve_pooled`), updates the coefficients and the pose and recomputes the
jaw blend (:mod:`fitting.contour`); a subject stops when no parameter moves by more than the
tolerance. Why joint steps, the relaxation and the limits: ``docs/design-notes.md``, "Fitter".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fitting import design as geometry
from fitting.camera import (
    axis_angle_to_rotation,
    estimate_affine_camera,
    nearest_scaled_rotation,
    refine_pose,
)
from fitting.design import FitDesign
from fitting.linearize import POSE_DIM, normal_equations
from fitting.models.model import NUM_LANDMARKS
from fitting.solve import solve_pooled

__all__ = ["Settings", "fit_chunk"]

# Gauss-Newton steps that refine the initial pose of the mean shape.
_INITIAL_POSE_STEPS = 1
# Trust limits of one Gauss-Newton pose step (radians, relative scale): keep a badly conditioned
# face from jumping to a mirrored or collapsed pose.
_MAX_ROTATION_STEP = 0.5
_MAX_SCALE_STEP = 0.5
# Jaw relaxation: a face whose step is not at most this fraction of its previous one halves
# the share of the way its jaw correspondences move towards the new blend, down to the minimum
# (studies/fit_accuracy.py; benchmarks/RESULTS.md, "Round-trip accuracy").
_STALL_RATIO = 0.8
_MIN_RELAXATION = 0.125


@dataclasses.dataclass(frozen=True)
class Settings:
    """The loop's hyperparameters (see :func:`fitting.fitter.fit_landmarks`)."""

    identity_weight: float
    expression_weight: float
    max_iterations: int
    tolerance: float
    contour_updates: int


@dataclasses.dataclass(frozen=True)
class Observations:
    """What a step fits: the active faces' landmarks and the solve's fixed inputs.

    landmarks : (B, 68, 2)   weights : (B, 68)   groups : (B,) dense subject indices
    precision : (K + 6,) prior precision   shared_weights : None, (68,) or False
    (see :meth:`fitting.design.FitDesign.for_weights`)
    """

    landmarks: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    precision: np.ndarray
    shared_weights: np.ndarray | bool | None


@dataclasses.dataclass(frozen=True)
class FaceState:
    """The parameters of a batch of faces and what they give.

    coefficients : (B, K) identity then expression   positions : (B, R, 3) design vertices
    jaw : (B, J, C) jaw blend weights   rotation : (B, 3, 3)   scale : (B,)
    translation : (B, 2) of the fit's origin
    """

    coefficients: np.ndarray
    positions: np.ndarray
    jaw: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    translation: np.ndarray

    def take(self, faces) -> FaceState:
        """The state of ``faces`` (an index array, or ``slice(None)`` for views of all)."""
        return FaceState(*(getattr(self, field.name)[faces]
                           for field in dataclasses.fields(self)))

    def put(self, faces, other: FaceState) -> None:
        """Write ``other``, the state of ``faces``, into this one's arrays."""
        for field in dataclasses.fields(self):
            getattr(self, field.name)[faces] = getattr(other, field.name)


@dataclasses.dataclass(frozen=True)
class Step:
    """A step's result: the updated state, and each face's change (B,)."""

    state: FaceState
    change: np.ndarray


def fit_chunk(design: FitDesign, landmarks: np.ndarray, weights: np.ndarray,
              groups: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """Fit one chunk of faces; ``groups`` are dense subject indices within the chunk."""
    batch = len(landmarks)
    size = design.basis.shape[2] + POSE_DIM
    identity_dim = design.identity_dim
    precision = np.concatenate([np.full(identity_dim, settings.identity_weight),
                                np.full(size - POSE_DIM - identity_dim,
                                        settings.expression_weight),
                                np.zeros(POSE_DIM)])
    design, shared_weights = design.for_weights(weights)
    coefficients = np.zeros((batch, size - POSE_DIM))
    points = np.broadcast_to(design.mean[design.landmarks], (batch, NUM_LANDMARKS, 3))
    affine, translation = estimate_affine_camera(landmarks, points, weights)
    rotation, scale = nearest_scaled_rotation(affine)
    rotation, scale, translation = refine_pose(landmarks, points, weights, rotation, scale,
                                               translation, steps=_INITIAL_POSE_STEPS)
    positions = geometry.positions(design, coefficients)
    state = FaceState(coefficients, positions, geometry.jaw_weights(design, positions, rotation),
                      rotation, scale, translation)
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
        observed = Observations(landmarks[active], weights[active], active_groups, precision,
                                shared_weights)
        step = _step(design, observed, state.take(active),
                     follow=iteration < settings.contour_updates, relaxation=relaxation[active])
        state.put(active, step.state)
        change = step.change
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
    coefficients, positions, rotation = state.coefficients, state.positions, state.rotation
    scale, translation = state.scale, state.translation
    final_jaw = geometry.jaw_weights(design, positions, rotation)
    if len(state.jaw[0]):
        converged &= np.abs(final_jaw - state.jaw).max(axis=(1, 2)) < settings.tolerance
    # x = s F P R (X - o) + t'  ==  s F P R X + (t' - s F P R o), o the per-face origin
    origin = geometry.origin(design, coefficients)
    origin_shift = (scale[:, None] * np.einsum("bij,bj->bi", rotation[:, :2], origin)
                    * np.array([1.0, -1.0]))
    return {
        "identity": coefficients[:, :identity_dim],
        "expression": coefficients[:, identity_dim:],
        "rotation": rotation,
        "scale": scale,
        "translation": translation - origin_shift,
        "converged": converged,
        "points": geometry.model_frame(
            design, geometry.landmark_points(design, positions, final_jaw), coefficients),
    }


def _step(design: FitDesign, observed: Observations, state: FaceState, *, follow: bool,
          relaxation: np.ndarray) -> Step:
    """One Gauss-Newton step (joint solve, pose update, new jaw correspondences).

    ``state.positions`` and ``state.jaw`` belong to its parameters; the step returns those of
    the updated parameters (when ``follow``, ``jaw`` moves the fraction ``relaxation`` (B,) of the
    way to the blend the new parameters give) and each face's change: its largest coefficient
    (sigma) or pose step, or the largest difference between the blend it used and the one
    its new parameters give (the fixed-point residual, whatever the relaxation).
    """
    landmarks, weights, groups = observed.landmarks, observed.weights, observed.groups
    shared_weights = observed.shared_weights
    jaw, rotation, scale, translation = state.jaw, state.rotation, state.scale, state.translation
    batch = len(landmarks)
    points = geometry.landmark_points(design, state.positions, jaw)
    sliding = design.sliding
    mean_points = design.mean[design.landmarks][None].repeat(batch, axis=0)
    varying_basis = None
    if len(sliding):
        mean_points[:, sliding] = geometry.blend(jaw, design.sliding_mean, per_face=False)
        varying_basis = geometry.blend(jaw, design.sliding_basis, per_face=False)
    hessian, gradient = normal_equations(
        landmarks=landmarks, weights=weights if shared_weights is False else None,
        shared_weights=None if shared_weights is False else shared_weights,
        mean_points=mean_points, rotated=np.matmul(points, np.swapaxes(rotation, 1, 2)),
        rotation=rotation, scale=scale, translation=translation, fixed=design.fixed,
        fixed_basis_flat=design.fixed_basis_flat, fixed_basis_sum=design.fixed_basis_sum,
        fixed_gram=design.fixed_gram,
        varying=sliding, varying_basis=varying_basis)
    shared, own = solve_pooled(hessian, gradient, groups, num_shared=design.identity_dim,
                               precision=observed.precision, overwrite_hessian=True)
    updated = np.concatenate([shared[groups], own[:, :-POSE_DIM]], axis=1)
    step = _limit_pose_step(own[:, -POSE_DIM:])
    change = np.maximum(np.abs(updated - state.coefficients).max(axis=1), np.abs(step).max(axis=1))
    rotation = np.matmul(axis_angle_to_rotation(step[:, :3]), rotation)
    translation = translation + scale[:, None] * step[:, 4:]
    scale = scale * (1.0 + step[:, 3])
    positions = geometry.positions(design, updated)
    if follow and len(sliding):
        new_jaw = geometry.jaw_weights(design, positions, rotation)
        change = np.maximum(change, np.abs(new_jaw - jaw).max(axis=(1, 2)))
        jaw = jaw + relaxation[:, None, None] * (new_jaw - jaw)
    return Step(FaceState(updated, positions, jaw, rotation, scale, translation), change)


def _limit_pose_step(step: np.ndarray) -> np.ndarray:
    """Shrink pose steps beyond the trust limits; converging fits never reach them."""
    angle = np.linalg.norm(step[:, :3], axis=1)
    shrink = np.minimum(1.0, _MAX_ROTATION_STEP / np.maximum(angle, 1e-300))
    shrink = np.minimum(shrink, _MAX_SCALE_STEP / np.maximum(np.abs(step[:, 3]), 1e-300))
    return step * shrink[:, None]
