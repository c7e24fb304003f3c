"""The fit-based identity check: one person's images stay pooled, two people's do not."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.camera import euler_to_rotation
from fitting.fitter import fit_landmarks, project
from fitting.identity_check import fit_with_identity_check

IMAGES = 6


def _landmarks(model, identities: np.ndarray, seed: int, noise_px: float = 0.5):
    """Landmarks of faces with the given identities, random expression and pose, 0.5 px noise.

    (B, 68, 2) pixels; faces about 200 px wide (inter-ocular distance about 120 px).
    """
    rng = np.random.default_rng(seed)
    count = len(identities)
    rotation = euler_to_rotation(rng.uniform(-30, 30, count), rng.uniform(-10, 10, count),
                                 rng.uniform(-5, 5, count))
    expression = 0.5 * rng.standard_normal((count, model.expression_dim))
    landmarks = project(model, expression, identities, rotation, rng.uniform(1.2, 1.4, count),
                        rng.uniform(200, 300, (count, 2)))
    return landmarks + rng.normal(0.0, noise_px, landmarks.shape)


def _two_people(model, seed: int):
    """Identity vectors of two clearly different people, ``IMAGES`` rows each."""
    rng = np.random.default_rng(seed)
    first = 2.0 * rng.standard_normal(model.identity_dim)
    second = -first
    return np.repeat(np.stack([first, second]), IMAGES, axis=0)


def test_images_of_one_person_stay_pooled(synthetic_model):
    identities = _two_people(synthetic_model, 1)
    landmarks = _landmarks(synthetic_model, identities, 2)
    subjects = ["a"] * IMAGES + ["b"] * IMAGES
    checked = fit_with_identity_check(synthetic_model, landmarks, subject_ids=subjects)
    assert checked.pooled.all()
    plain = fit_landmarks(synthetic_model, landmarks, subject_ids=subjects)
    np.testing.assert_array_equal(checked.fit.expression, plain.expression)


def test_a_group_of_two_people_is_never_pooled_across_them(synthetic_model):
    identities = _two_people(synthetic_model, 3)
    landmarks = _landmarks(synthetic_model, identities, 4)
    checked = fit_with_identity_check(synthetic_model, landmarks,
                                      subject_ids=["mixed"] * (2 * IMAGES))
    # The first pooled fit cost the faces more than the check allows ...
    assert checked.residual_increase.mean() > 0.007
    # ... so whatever stays pooled is one person's.
    people = np.repeat([0, 1], IMAGES)
    assert len(set(people[checked.pooled])) <= 1
    alone = ~checked.pooled
    single = fit_landmarks(synthetic_model, landmarks)
    np.testing.assert_allclose(checked.fit.residual[alone], single.residual[alone], atol=1e-3)


def test_one_stranger_leaves_the_group_and_the_rest_stay_pooled(synthetic_model):
    identities = _two_people(synthetic_model, 5)[:IMAGES + 1]
    landmarks = _landmarks(synthetic_model, identities, 6)
    checked = fit_with_identity_check(synthetic_model, landmarks,
                                      subject_ids=["s"] * (IMAGES + 1))
    np.testing.assert_array_equal(checked.pooled, [True] * IMAGES + [False])
    np.testing.assert_array_equal(checked.taken_out, [False] * IMAGES + [True])
    shared = checked.fit.identity[:IMAGES]
    np.testing.assert_array_equal(shared, np.broadcast_to(shared[0], shared.shape))


def test_faces_without_subject_or_alone_in_theirs_are_fitted_alone(synthetic_model):
    identities = _two_people(synthetic_model, 7)[:3]
    landmarks = _landmarks(synthetic_model, identities, 8)
    checked = fit_with_identity_check(synthetic_model, landmarks,
                                      subject_ids=[None, "only", None])
    assert not checked.pooled.any()
    assert not checked.grouped.any() and not checked.taken_out.any()  # alone, not taken out
    np.testing.assert_array_equal(checked.fit.expression,
                                  fit_landmarks(synthetic_model, landmarks).expression)


def test_bad_arguments_raise(synthetic_model):
    landmarks = np.zeros((2, 68, 2))
    with pytest.raises(ValueError, match="subject ids"):
        fit_with_identity_check(synthetic_model, landmarks, subject_ids=["a"])
    with pytest.raises(ValueError, match="rounds"):
        fit_with_identity_check(synthetic_model, landmarks, subject_ids=["a", "a"], rounds=0)
