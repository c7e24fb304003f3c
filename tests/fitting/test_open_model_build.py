"""Pieces of the open-model build on synthetic data: target PCA, symmetric landmark snapping,
silhouette contour candidates."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.models.build.landmark_placement import (
    IBUG_MIDLINE,
    IBUG_MIRROR_PAIRS,
    contour_candidates,
    symmetric_landmark_vertices,
    yaw_rotation,
)
from fitting.models.pca import target_pca


def test_target_pca_equals_the_pca_of_the_materialised_samples():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(12, 90)) * rng.uniform(0.1, 3.0, size=(12, 1))
    weights = rng.uniform(0.0, 1.0, size=(500, 12)) * (rng.uniform(size=(500, 12)) < 0.3)
    pca = target_pca(targets, weights, num_components=5)
    samples = weights @ targets                                        # (N, 3V), uncentred
    _, singular, right = np.linalg.svd(samples / np.sqrt(len(samples)), full_matrices=False)
    # Same numbers by two routes; only float rounding differs.
    np.testing.assert_allclose(pca.score_rms, singular[:5], rtol=1e-9)
    np.testing.assert_allclose(np.abs(pca.components.T @ right[:5].T), np.eye(5), atol=1e-9)
    assert pca.kept_energy == pytest.approx(np.sum(singular[:5] ** 2) / np.sum(singular ** 2))
    # Scores of the samples have RMS score_rms and are uncorrelated (second moment diagonal).
    scores = samples @ pca.components
    np.testing.assert_allclose(scores.T @ scores / len(scores), np.diag(pca.score_rms ** 2),
                               atol=1e-8 * pca.score_rms[0] ** 2)
    # The sign rule: the largest-magnitude entry of every component is positive.
    columns = np.arange(5)
    assert np.all(pca.components[np.argmax(np.abs(pca.components), axis=0), columns] > 0)


def test_target_pca_basis_is_in_sigma_units():
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(6, 3 * 10))
    pca = target_pca(targets, rng.normal(0.0, 0.5, size=(2000, 6)), num_components=6)
    basis = pca.basis(10)
    assert basis.shape == (10, 3, 6)
    flat = basis.reshape(30, 6)
    np.testing.assert_allclose(flat.T @ flat, np.diag(pca.score_rms ** 2), atol=1e-9)
    # All 6 components of 6 targets keep everything.
    assert pca.kept_energy == pytest.approx(1.0)


def test_target_pca_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"targets \(P, 3V\) and weights \(N, P\)"):
        target_pca(np.zeros((4, 9)), np.zeros((10, 5)), num_components=2)
    with pytest.raises(ValueError, match="num_components"):
        target_pca(np.ones((4, 9)), np.ones((10, 4)), num_components=5)


def symmetric_cloud(seed: int = 0):
    """A mirror-symmetric point cloud: 400 pairs (x < 0 and its reflection) and 60 on x = 0."""
    rng = np.random.default_rng(seed)
    left = rng.uniform([-60.0, -80.0, 0.0], [-2.0, 80.0, 40.0], size=(400, 3))
    mid = np.column_stack([np.zeros(60), rng.uniform(-80, 80, 60), rng.uniform(0, 40, 60)])
    vertices = np.vstack([left, left * [-1, 1, 1], mid])
    mirror = np.concatenate([np.arange(400, 800), np.arange(400), np.arange(800, 860)])
    return vertices, mirror


def test_symmetric_landmarks_are_mirror_pairs_and_midline_vertices():
    vertices, mirror = symmetric_cloud()
    rng = np.random.default_rng(2)
    # Landmarks of a symmetric face seen with detector noise of 3 mm.
    base = rng.uniform([-50.0, -70.0, 5.0], [-5.0, 70.0, 35.0], size=(68, 3))
    points = base.copy()
    for first, second in IBUG_MIRROR_PAIRS:
        points[second] = base[first] * [-1, 1, 1]
    for landmark in IBUG_MIDLINE:
        points[landmark, 0] = 0.0
    points += rng.normal(0.0, 3.0, points.shape)
    candidates = np.ones(len(vertices), bool)
    indices = symmetric_landmark_vertices(points, vertices, mirror, candidates)
    assert len(np.unique(indices)) == 68
    for first, second in IBUG_MIRROR_PAIRS:
        assert mirror[indices[first]] == indices[second]
        assert vertices[indices[first], 0] < 0
    for landmark in IBUG_MIDLINE:
        assert mirror[indices[landmark]] == indices[landmark]
    # The first landmark snapped is the nearest right-side vertex to its symmetrised target.
    target = (points[0] + points[16] * [-1, 1, 1]) / 2
    right = np.flatnonzero(vertices[:, 0] < 0)
    nearest = right[np.argmin(np.linalg.norm(vertices[right] - target, axis=1))]
    assert indices[0] == nearest


def test_symmetric_landmarks_respect_the_candidate_mask():
    vertices, mirror = symmetric_cloud(3)
    points = np.random.default_rng(4).uniform(-40, 40, (68, 3))
    candidates = vertices[:, 2] > 20.0
    indices = symmetric_landmark_vertices(points, vertices, mirror, candidates)
    assert candidates[indices].all()


def sphere(radius: float = 50.0, step_degrees: float = 1.0):
    """Vertices on a latitude-longitude grid of a sphere; longitude 0 faces the camera (+z)."""
    latitudes = np.deg2rad(np.arange(-30.0, 30.0 + 1e-9, step_degrees))
    longitudes = np.deg2rad(np.arange(-179.0, 180.0, step_degrees))
    lat, lon = np.meshgrid(latitudes, longitudes, indexing="ij")
    points = np.column_stack([np.cos(lat.ravel()) * np.sin(lon.ravel()), np.sin(lat.ravel()),
                              np.cos(lat.ravel()) * np.cos(lon.ravel())])
    return radius * points, np.rad2deg(lon.ravel())


def equator_jaw_landmarks(vertices: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """68 landmark vertices whose jaw points sit on the equator at 80 degrees from the front,
    left and right, and the chin (8) straight ahead."""
    landmarks = np.zeros(68, dtype=np.int64)
    on_equator = np.abs(vertices[:, 1]) < 1e-9
    for jaw in range(17):
        angle = -80.0 if jaw < 8 else 80.0
        landmarks[jaw] = np.flatnonzero(on_equator & np.isclose(longitude, angle))[0]
    landmarks[8] = np.flatnonzero(on_equator & np.isclose(longitude, 0.0))[0]
    return landmarks


def test_contour_candidates_follow_the_silhouette_of_a_sphere():
    vertices, longitude = sphere()
    landmarks = equator_jaw_landmarks(vertices, longitude)
    # No depth limit here: on a sphere the silhouette moves 44 mm behind the landmarks.
    table = contour_candidates(vertices, landmarks, band=0.5, yaw_step=3.0, max_yaw=60.0,
                               max_depth=np.inf)
    assert table.shape[0] == 17
    np.testing.assert_array_equal(table[:, 0], landmarks[:17])
    assert np.all(table[8, 1:] == -1)
    for jaw, side in ((0, -1.0), (16, 1.0)):
        row = table[jaw][table[jaw] >= 0]
        for turn in (-45.0, -20.0, 20.0, 45.0):
            # The fitter's rule (fitting.contour): the outermost rotated candidate. On a sphere
            # the silhouette is at 90 degrees from the view direction: longitude 90 - turn on
            # the right side (x < 0, mirrored sign) for a turn of the face to image right.
            rotated_x = (vertices[row] @ yaw_rotation(turn).T)[:, 0]
            chosen = row[np.argmax(side * rotated_x)]
            expected = side * 90.0 - turn
            # The candidates are 3 degrees of turn apart on a 1-degree grid.
            assert abs(longitude[chosen] - expected) <= 3.0, (jaw, turn)


def test_contour_candidates_stay_within_the_depth_limit():
    vertices, longitude = sphere()
    landmarks = equator_jaw_landmarks(vertices, longitude)
    limited = contour_candidates(vertices, landmarks, band=0.5, max_depth=20.0)
    unlimited = contour_candidates(vertices, landmarks, band=0.5, max_depth=np.inf)
    for jaw in (0, 16):
        row = limited[jaw][limited[jaw] >= 0]
        depth = vertices[landmarks[jaw], 2] - vertices[row, 2]
        assert depth.max() <= 20.0
        # The limit cuts off the silhouettes of the strongest turns towards the camera, which
        # the unlimited table reaches (44 mm behind at a 45-degree turn).
        full = unlimited[jaw][unlimited[jaw] >= 0]
        assert (vertices[landmarks[jaw], 2] - vertices[full, 2]).max() > 40.0


def test_ordered_products_are_the_matrix_product_summed_in_index_order():
    from fitting.models.build.open_model import ordered_products

    rng = np.random.default_rng(3)
    left = rng.normal(size=(7, 300)) * 1e3
    right = rng.normal(size=(300, 5))
    found = ordered_products(left, right)
    np.testing.assert_allclose(found, left @ right, rtol=1e-12, atol=1e-9)
    # One entry by hand: each product rounded, then added left to right.
    by_hand = 0.0
    for n in range(300):
        by_hand += float(left[2, n]) * float(right[n, 4])
    assert found[2, 4] == by_hand
    # The inputs' memory layout does not change a bit of the result (BLAS's may).
    assert np.array_equal(ordered_products(np.asfortranarray(left), np.asfortranarray(right)),
                          found)
