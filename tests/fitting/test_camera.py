"""Scaled-orthographic camera: projection conventions, estimation, refinement, Euler angles."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.camera import (
    axis_angle_to_rotation,
    estimate_affine_camera,
    euler_to_rotation,
    nearest_scaled_rotation,
    project_points,
    refine_pose,
    rotation_to_euler,
)


def _random_scene(rng, batch=16, count=68, max_angle=60.0):
    yaw, pitch, roll = (rng.uniform(-max_angle, max_angle, batch) for _ in range(3))
    rotation = euler_to_rotation(yaw, pitch, roll)
    scale = rng.uniform(0.5, 3.0, batch)
    translation = rng.uniform(0.0, 500.0, (batch, 2))
    points_3d = rng.normal(0.0, 50.0, (batch, count, 3))
    return points_3d, rotation, scale, translation


def test_euler_round_trip():
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-89, 89, 50)
    pitch, roll = rng.uniform(-179, 179, 50), rng.uniform(-179, 179, 50)
    recovered = rotation_to_euler(euler_to_rotation(yaw, pitch, roll))
    # Exact maths; 1e-9 degrees leaves room for arcsin/atan2 rounding only.
    np.testing.assert_allclose(np.stack(recovered), np.stack([yaw, pitch, roll]), atol=1e-9)


@pytest.mark.parametrize(
    ("angles", "point", "axis", "sign"),
    [
        ((30.0, 0.0, 0.0), (0.0, 0.0, 100.0), 0, +1),  # yaw > 0: nose to the image right
        ((0.0, 30.0, 0.0), (0.0, 0.0, 100.0), 1, +1),  # pitch > 0: nose down (image y grows)
        ((0.0, 0.0, 30.0), (0.0, 100.0, 0.0), 0, -1),  # roll > 0: crown to the image left
    ],
)
def test_angle_sign_conventions(angles, point, axis, sign):
    rotation = euler_to_rotation(*(np.array([angle]) for angle in angles))
    origin = np.array([[100.0, 100.0]])
    image = project_points(np.array([[point]]), rotation, np.array([1.0]), origin)[0, 0]
    assert sign * (image[axis] - origin[0, axis]) > 10.0  # 100 mm * sin 30 deg = 50 px


def test_image_y_points_down():
    image = project_points(np.array([[[0.0, 10.0, 0.0]]]), np.eye(3)[None], np.array([2.0]),
                           np.array([[50.0, 50.0]]))
    np.testing.assert_allclose(image[0, 0], [50.0, 30.0])  # model y up -> smaller image y


def test_affine_estimate_recovers_exact_pose():
    rng = np.random.default_rng(1)
    points_3d, rotation, scale, translation = _random_scene(rng)
    points_2d = project_points(points_3d, rotation, scale, translation)
    affine, estimated_translation = estimate_affine_camera(points_2d, points_3d,
                                                           np.ones(points_2d.shape[:2]))
    estimated_rotation, estimated_scale = nearest_scaled_rotation(affine)
    # Noise-free correspondences: only floating-point rounding separates estimate and truth.
    np.testing.assert_allclose(estimated_rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(estimated_scale, scale, rtol=1e-9)
    np.testing.assert_allclose(estimated_translation, translation, atol=1e-7)


def test_nearest_rotation_is_proper_even_from_a_mirrored_camera():
    rng = np.random.default_rng(2)
    affine = rng.normal(size=(64, 2, 3))
    affine[:32, 1] *= -1.0  # flip handedness of half of them
    rotation, scale = nearest_scaled_rotation(affine)
    identity = np.broadcast_to(np.eye(3), rotation.shape)
    # Orthonormality and det +1 hold to rounding.
    np.testing.assert_allclose(rotation @ np.swapaxes(rotation, 1, 2), identity, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)
    assert np.all(scale > 0)


def test_nearest_rotation_is_the_polar_factor():
    # The closed form must equal the SVD definition: the proper rotation nearest (Frobenius) to
    # the normalised rows completed by their normalised cross product.
    rng = np.random.default_rng(4)
    affine = rng.normal(size=(64, 2, 3))
    rotation, scale = nearest_scaled_rotation(affine)
    rows = affine * np.array([1.0, -1.0])[:, None]
    unit = rows / np.linalg.norm(rows, axis=2, keepdims=True)
    third = np.cross(unit[:, 0], unit[:, 1])
    target = np.concatenate([unit, (third / np.linalg.norm(third, axis=1, keepdims=True))[:, None]],
                            axis=1)
    left, _, right = np.linalg.svd(target)
    np.testing.assert_allclose(rotation, left @ right, atol=1e-12)
    np.testing.assert_allclose(scale, np.linalg.norm(rows, axis=2).mean(axis=1), rtol=1e-12)


def test_refine_pose_converges_from_a_perturbed_start():
    rng = np.random.default_rng(3)
    points_3d, rotation, scale, translation = _random_scene(rng)
    points_2d = project_points(points_3d, rotation, scale, translation)
    start = axis_angle_to_rotation(rng.normal(0.0, 0.05, (16, 3))) @ rotation  # ~5 degrees off
    refined = refine_pose(points_2d, points_3d, np.ones(points_2d.shape[:2]), start, scale * 1.05,
                          translation + 3.0, steps=6)
    # Gauss-Newton on a zero-residual problem converges quadratically: 6 steps reach rounding.
    np.testing.assert_allclose(refined[0], rotation, atol=1e-9)
    np.testing.assert_allclose(refined[1], scale, rtol=1e-9)
    np.testing.assert_allclose(refined[2], translation, atol=1e-7)


def test_refine_pose_lowers_the_reprojection_error_of_the_affine_estimate():
    rng = np.random.default_rng(4)
    points_3d, rotation, scale, translation = _random_scene(rng)
    points_2d = project_points(points_3d, rotation, scale, translation)
    points_2d += rng.normal(0.0, 2.0, points_2d.shape)
    weights = np.ones(points_2d.shape[:2])
    affine, affine_translation = estimate_affine_camera(points_2d, points_3d, weights)
    start_rotation, start_scale = nearest_scaled_rotation(affine)
    refined = refine_pose(points_2d, points_3d, weights, start_rotation, start_scale,
                          affine_translation, steps=3)

    def error(pose):
        return np.sum((project_points(points_3d, *pose) - points_2d) ** 2, axis=(1, 2))

    assert np.all(error(refined) <= error((start_rotation, start_scale, affine_translation)) + 1e-9)


def test_axis_angle_to_rotation():
    quarter_turn = axis_angle_to_rotation(np.array([[0.0, 0.0, np.pi / 2], [0.0, 0.0, 0.0]]))
    expected = np.array([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.eye(3)])
    np.testing.assert_allclose(quarter_turn, expected, atol=1e-15)  # exact up to cos(pi/2)
