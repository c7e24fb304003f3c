"""Descriptor clusters: recovery of known identities, determinism, order, cap, threshold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fitting.identity_clusters import (
    ClusterSettings,
    cluster_descriptors,
    cluster_id,
    descriptor_bucket,
    nearest_neighbours,
)


def _people(count: int, images: int, *, spread: float, seed: int, dim: int = 128):
    """``count`` identities with ``images`` descriptors each: ``(ids, descriptors, truth)``.

    Centres lie on a sphere of radius 1 in ``dim`` dimensions, so two centres are about
    sqrt(2) = 1.41 apart; each image adds Gaussian noise of ``spread`` per axis, which puts
    two images of one person ``spread * sqrt(2 * dim)`` apart on average.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(count), images)
    descriptors = centres[truth] + rng.normal(0.0, spread, (len(truth), dim))
    ids = [f"{index:04x}-face" for index in range(len(truth))]
    return ids, descriptors, truth


def _as_labels(ids, clusters):
    label = {face_id: -1 for face_id in ids}
    for number, members in enumerate(clusters):
        label.update((member, number) for member in members)
    return np.array([label[face_id] for face_id in ids])


def _pairs(labels):
    return {(a, b) for a, b in itertools.combinations(range(len(labels)), 2)
            if labels[a] >= 0 and labels[a] == labels[b]}


def test_well_separated_people_are_recovered_exactly():
    # Images of one person about 0.2 apart (spread 0.0125 * sqrt(256)), people about 1.4.
    ids, descriptors, truth = _people(12, 5, spread=0.0125, seed=1)
    clusters = cluster_descriptors(ids, descriptors)
    assert _pairs(_as_labels(ids, clusters)) == _pairs(truth)
    assert [len(members) for members in clusters] == [5] * 12


def test_same_faces_in_any_order_give_the_same_clusters():
    ids, descriptors, _ = _people(20, 6, spread=0.02, seed=2)
    reference = cluster_descriptors(ids, descriptors)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(ids))
        shuffled = cluster_descriptors([ids[i] for i in order], descriptors[order])
        assert shuffled == reference
    assert reference == sorted(reference)
    assert all(list(members) == sorted(members) for members in reference)


def test_cluster_size_is_capped():
    ids, descriptors, _ = _people(1, 30, spread=0.01, seed=3)
    # No separation rule: parts of one person never stand out from each other.
    clusters = cluster_descriptors(ids, descriptors,
                                   settings=ClusterSettings(max_cluster_size=8,
                                                            min_separation=0.0))
    assert clusters and max(len(members) for members in clusters) == 8
    assert len({member for members in clusters for member in members}) == sum(
        len(members) for members in clusters)


def test_faces_farther_than_the_threshold_stay_alone():
    base = np.zeros(128)
    other = base.copy()
    other[0] = 0.45
    ids = ["a", "b"]
    tight = cluster_descriptors(ids, np.stack([base, other]),
                                settings=ClusterSettings(threshold=0.4))
    loose = cluster_descriptors(ids, np.stack([base, other]),
                                settings=ClusterSettings(threshold=0.5, max_diameter=0.5))
    assert tight == [] and loose == [("a", "b")]


def test_a_chain_of_look_alikes_is_cut_by_the_diameter():
    # Faces 0.3 apart on a line: each is within the threshold of the next, the ends 2.7 apart.
    line = np.zeros((10, 128))
    line[:, 0] = 0.3 * np.arange(10)
    ids = [f"f{index}" for index in range(10)]
    clusters = cluster_descriptors(ids, line, settings=ClusterSettings(min_separation=0.0))
    assert clusters
    for members in clusters:
        positions = line[[ids.index(member) for member in members], 0]
        assert positions.max() - positions.min() <= ClusterSettings().max_diameter + 1e-12


def test_faces_of_one_image_never_share_a_cluster():
    ids, descriptors, _ = _people(1, 4, spread=0.01, seed=4)
    images = ["image-1", "image-1", "image-2", "image-3"]
    clusters = cluster_descriptors(ids, descriptors, exclusive=images,
                                   settings=ClusterSettings(min_separation=0.0))
    assert clusters
    for members in clusters:
        owners = [images[ids.index(member)] for member in members]
        assert len(owners) == len(set(owners))
    assert not any({ids[0], ids[1]} <= set(members) for members in clusters)


def test_a_crowd_of_look_alikes_gets_no_cluster():
    # 100 people, one image each, all within about 0.35 of each other: a crowd dlib would call
    # one person. Without the separation rule the cap and the diameter still keep it from
    # becoming one subject; with it, no cluster stands out and every face stays alone.
    ids, descriptors, _ = _people(100, 1, spread=0.0, seed=5)
    descriptors = 0.25 * descriptors
    loose = cluster_descriptors(ids, descriptors, settings=ClusterSettings(min_separation=0.0))
    assert loose and len(loose) > 1
    assert max(len(members) for members in loose) <= 64
    assert cluster_descriptors(ids, descriptors) == []


def test_a_pair_stands_out_only_when_its_nearest_outsider_is_far():
    pair = np.zeros((2, 128))
    pair[1, 0] = 0.36
    near, far = np.zeros((1, 128)), np.zeros((1, 128))
    near[0, :2] = 0.18, 0.38           # 0.42 from both: no edge, but 1.17 diameters away
    far[0, :2] = 0.18, 0.8             # 0.82: 2.3 diameters
    ids = ["p1", "p2", "x"]
    assert cluster_descriptors(ids, np.concatenate([pair, near])) == []
    assert cluster_descriptors(ids, np.concatenate([pair, far])) == [("p1", "p2")]


def test_hnsw_search_agrees_with_exact_search_on_separated_data():
    ids, descriptors, truth = _people(30, 4, spread=0.0125, seed=6)
    exact = cluster_descriptors(ids, descriptors)
    approximate = cluster_descriptors(ids, descriptors, settings=ClusterSettings(exact_up_to=8))
    assert approximate == exact
    assert _pairs(_as_labels(ids, approximate)) == _pairs(truth)


def test_exact_neighbours_are_nearest_first_without_self():
    points = np.array([[0.0], [1.0], [3.0], [3.5]])
    indices, distances = nearest_neighbours(points, 2)
    np.testing.assert_array_equal(indices, [[1, 2], [0, 2], [3, 1], [2, 1]])
    np.testing.assert_allclose(distances, [[1.0, 3.0], [1.0, 2.0], [0.5, 2.0], [0.5, 2.5]])


def test_cluster_ids_and_buckets_are_stable():
    assert cluster_id(["b", "a"]) == cluster_id(["a", "b"]) != cluster_id(["a", "c"])
    assert len(cluster_id(["a"])) == 16
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((200, 128))
    buckets = [descriptor_bucket(vector, 3) for vector in vectors]
    assert buckets == [descriptor_bucket(vector, 3) for vector in vectors]
    assert set(buckets) == set(range(8))
    assert descriptor_bucket(vectors[0], 0) == 0


@pytest.mark.parametrize("bad", [
    {"ids": ["a", "a"], "descriptors": np.zeros((2, 4)), "message": "unique"},
    {"ids": ["a", "b"], "descriptors": np.zeros((3, 4)), "message": "shape"},
    {"ids": ["a", "b"], "descriptors": np.full((2, 4), np.nan), "message": "finite"},
])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError, match=bad["message"]):
        cluster_descriptors(bad["ids"], bad["descriptors"])


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="threshold"):
        ClusterSettings(threshold=0.6, max_diameter=0.5)
    with pytest.raises(ValueError, match="max_cluster_size"):
        ClusterSettings(max_cluster_size=1)
    with pytest.raises(ValueError, match="min_separation"):
        ClusterSettings(min_separation=-1.0)
