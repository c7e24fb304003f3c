"""The jaw silhouette rule: hard choice and its continuous blend."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.camera import euler_to_rotation
from fitting.contour import CHIN_LANDMARK, contour_weights


def _row_of_candidates(rng, count=5, spacing=6.0):
    """17 jaw rows of ``count`` candidates each spaced ``spacing`` mm further out, -1 padded."""
    outward = np.sign(np.arange(17) - CHIN_LANDMARK)[:, None]
    x = outward * (40.0 + spacing * np.arange(count))[None, :]
    points = np.stack([x, rng.uniform(-40, 0, (17, count)), -3.0 * np.abs(x) / 10.0], axis=-1)
    candidates = np.arange(17 * count).reshape(17, count)
    candidates[CHIN_LANDMARK, 1:] = -1
    candidates[3, 3:] = -1
    return points, candidates


def test_blend_is_the_hard_choice_when_candidates_are_far_apart():
    rng = np.random.default_rng(0)
    points, candidates = _row_of_candidates(rng)
    rotation = euler_to_rotation(np.array([0.0, 10.0]), np.zeros(2), np.zeros(2))
    batch_points = np.broadcast_to(points, (2,) + points.shape)
    weights = contour_weights(batch_points, candidates, rotation)
    # The hard rule written out: per jaw row the valid candidate that is furthest out in
    # rotated x (the chin row has one candidate).
    outward = np.einsum("bjcd,bd->bjc", batch_points, rotation[:, 0, :]) * np.sign(
        np.arange(17) - CHIN_LANDMARK)[:, None]
    hard = candidates[np.arange(17), np.where(candidates >= 0, outward, -np.inf).argmax(axis=2)]
    # Rows are distributions over the valid candidates only.
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, atol=1e-12)
    assert np.all(weights[:, candidates < 0] == 0.0)
    assert np.all(weights[:, CHIN_LANDMARK, 0] == 1.0)
    # Candidates several mm apart in rotated x against a 2 mm temperature: the outermost one
    # takes nearly all the weight (gaps >= 5.6 mm here: above 0.9 even with 4 rivals).
    chosen = candidates[np.arange(17), weights.argmax(axis=2)]
    np.testing.assert_array_equal(chosen, hard)
    assert weights.max(axis=2).min() > 0.9


def test_blend_splits_a_tie_and_moves_continuously_with_the_pose():
    points = np.zeros((1, 17, 2, 3))
    points[0, :, 0] = [-50.0, 0.0, 0.0]
    points[0, :, 1] = [-50.0, 0.0, -10.0]       # same x, 10 mm behind: tied when frontal
    points[0, 9:, :, 0] *= -1.0
    candidates = np.arange(34).reshape(17, 2)
    yaws = np.array([0.0, 0.5, 1.0])
    weights = np.concatenate([contour_weights(points, candidates, euler_to_rotation(
        np.array([yaw]), np.zeros(1), np.zeros(1))) for yaw in yaws])
    np.testing.assert_allclose(weights[0, 0], [0.5, 0.5], atol=1e-12)  # an exact tie
    # A half-degree turn moves the deeper candidate by 10 sin(0.5 deg) = 0.087 mm in x: the
    # weights shift by a few percent, not by a whole candidate as the hard rule would.
    assert 0.0 < abs(weights[1, 0, 1] - 0.5) < 0.05
    assert np.all(np.diff(weights[:, 0, 1]) != 0.0)


def test_wrong_shapes_and_softness_raise():
    candidates = np.zeros((17, 3), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(B, 17, 3, 3\)"):
        contour_weights(np.zeros((1, 17, 2, 3)), candidates, np.eye(3)[None])
    with pytest.raises(ValueError, match="softness"):
        contour_weights(np.zeros((1, 17, 3, 3)), candidates, np.eye(3)[None], softness=0.0)
