"""`expnet evaluate emotions` on synthetic shards whose labels shape the features."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.training.conftest import make_row, write_shard
from training import evaluate
from training.features import LEFT_EYE, RIGHT_EYE, normalize_landmarks

EMOTIONS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE = np.full((16, 16, 3), 128, dtype=np.uint8)


def base_shape(rng: np.random.Generator) -> np.ndarray:
    """(68, 2) face-like points: eyes at x = -1 (image left) and +1, the rest scattered."""
    shape = rng.normal(scale=1.0, size=(68, 2))
    shape[RIGHT_EYE] = [-1.0, -0.5] + 0.1 * rng.normal(size=(6, 2))
    shape[LEFT_EYE] = [1.0, -0.5] + 0.1 * rng.normal(size=(6, 2))
    return shape


def random_similarity(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by up to 25 degrees, scale by 20..120 px and translate: pose, not shape."""
    angle = np.deg2rad(rng.uniform(-25.0, 25.0))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rng.uniform(20.0, 120.0) * points @ rotation.T + rng.uniform(50.0, 150.0, size=2)


def emotion_rows(*, subjects: int, per_class: int, seed: int, ckplus_layout: bool) -> list:
    """Rows whose expression is a class mean plus noise and whose landmarks a class shape.

    Class means are 1.5 sigma apart per coordinate on average (29 dims): far apart next to
    unit noise. Landmark shapes differ by 0.15 per point by class, with 0.1 of noise, seen
    under a random pose.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.5, size=(len(EMOTIONS), 29))
    shape = base_shape(rng)
    offsets = rng.normal(scale=0.15, size=(len(EMOTIONS), 68, 2))
    offsets[:, 36:48] = 0.0  # keep the eyes where they are: the class is in the rest
    rows = []
    for subject in range(subjects):
        for label_index, label in enumerate(EMOTIONS):
            for take in range(per_class):
                expression = means[label_index] + rng.normal(size=29)
                landmarks = shape + offsets[label_index] + 0.1 * rng.normal(size=(68, 2))
                row_id = hashlib.sha256(f"{seed}-{subject}-{label}-{take}".encode()).hexdigest()
                row = make_row(row_id=row_id, expression=expression, image=IMAGE,
                               label=None if ckplus_layout else label,
                               subject=None if ckplus_layout else f"subject{subject:02d}",
                               landmarks=random_similarity(landmarks, rng))
                if ckplus_layout:
                    row["source_uri"] = (f"/data/ckplus/{label}/"
                                         f"S{subject + 10:03d}_{label_index + 1:03d}_"
                                         f"{take + 8:08d}.png")
                rows.append(row)
    return rows


@pytest.fixture(scope="module")
def emotion_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emotions")
    rows = emotion_rows(subjects=10, per_class=2, seed=11, ckplus_layout=False)
    write_shard(folder / "part-00000-of-00002.parquet", rows[::2], row_group_size=50)
    write_shard(folder / "part-00001-of-00002.parquet", rows[1::2], row_group_size=50)
    return folder


def run_json(tmp_path, *argv) -> dict:
    output = tmp_path / "results.json"
    assert evaluate.main([*map(str, argv), "--json", str(output)]) == 0
    results = json.loads(output.read_text())
    return {(entry["features"], entry["classifier"]): entry for entry in results["results"]}


def test_expression_features_separate_emotions(emotion_shards, tmp_path, capsys):
    results = run_json(tmp_path, emotion_shards, "--folds", "5")
    # Class means ~2.5 noise-sigmas apart in 29-D: both classifiers should nearly never err.
    assert results["expression", "knn"]["accuracy"] > 0.9
    assert results["expression", "linear-svm"]["accuracy"] > 0.9
    # Landmarks under random pose: k-NN on raw points scores about 0.26 here; normalised
    # points must give the class shapes back.
    assert results["landmarks", "knn"]["accuracy"] > 0.8
    for entry in results.values():
        assert len(entry["fold_accuracies"]) == 5
        assert entry["classes"] == list(EMOTIONS)
        assert np.sum(entry["confusion"]) == 140  # every face predicted once, out of fold
        assert np.trace(entry["confusion"]) == pytest.approx(entry["accuracy"] * 140, abs=5)
    printed = capsys.readouterr().out
    assert "140 faces, 10 subjects, 7 classes, 5-fold" in printed
    assert printed.count("confusion matrix") == 4


def test_shuffled_labels_fall_to_chance(emotion_shards, tmp_path):
    results = run_json(tmp_path, emotion_shards, "--folds", "5", "--shuffle-labels")
    # Chance is 1/7 = 0.14; with 140 faces the binomial spread is about 0.03.
    for entry in results.values():
        assert entry["accuracy"] < 0.3


def test_folds_never_share_a_subject():
    # Each subject shows every (features, random label) pair twice: 1-NN scores 1.0 if a
    # subject's twin row can sit in the training fold, and chance when folds keep subjects
    # apart.
    rng = np.random.default_rng(4)
    features = np.repeat(rng.normal(size=(120, 29)), 2, axis=0)
    labels = np.repeat(rng.choice(["a", "b", "c", "d"], size=120), 2)
    subjects = np.repeat([f"s{index}" for index in range(20)], 12)
    result = evaluate.cross_validate(features, labels, subjects, classifier="knn", folds=5,
                                     neighbors=1)
    # Chance is 0.25; 240 faces give a binomial spread of about 0.03.
    assert result.accuracy < 0.4


def test_ckplus_folder_layout_labels_and_subjects(tmp_path):
    rows = emotion_rows(subjects=4, per_class=1, seed=3, ckplus_layout=True)
    write_shard(tmp_path / "shards" / "part-00000-of-00001.parquet", rows)
    data = evaluate.load_emotion_data(tmp_path / "shards", label_from_parent=True)
    assert sorted(set(data.labels.tolist())) == list(EMOTIONS)
    assert sorted(set(data.subjects.tolist())) == ["S010", "S011", "S012", "S013"]
    unlabelled = evaluate.load_emotion_data(tmp_path / "shards")
    assert unlabelled.left_out == {"no label": 28} and len(unlabelled.labels) == 0


def test_normalised_landmarks_forget_pose():
    rng = np.random.default_rng(0)
    shapes = np.stack([base_shape(rng) for _ in range(5)])
    posed = np.stack([random_similarity(shape, rng) for shape in shapes])
    normalized = normalize_landmarks(posed)
    # Pure float64 similarity algebra on O(1) numbers: agreement to rounding.
    np.testing.assert_allclose(normalized, normalize_landmarks(shapes), atol=1e-12)
    np.testing.assert_allclose(normalized.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=(1, 2)), 1.0, atol=1e-12)
    eye_line = normalized[:, LEFT_EYE].mean(axis=1) - normalized[:, RIGHT_EYE].mean(axis=1)
    np.testing.assert_allclose(eye_line[:, 1], 0.0, atol=1e-12)
    assert np.all(eye_line[:, 0] > 0)


def test_degenerate_landmarks_are_refused_with_the_face_named():
    landmarks = np.stack([base_shape(np.random.default_rng(1)), np.ones((68, 2))])
    with pytest.raises(ValueError, match=r"faces \[1\]"):
        normalize_landmarks(landmarks)
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        normalize_landmarks(np.zeros((68, 2)))


def test_bad_flags_fail_with_status_2(emotion_shards):
    assert evaluate.main([str(emotion_shards), "--folds", "1"]) == 2
    assert evaluate.main([str(emotion_shards), "--subject-pattern", "("]) == 2
