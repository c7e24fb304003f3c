"""Synthetic sequences: one identity, expression and pose moving smoothly, exact labels."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.models import load_model
from synth.geometry import load_geometry
from synth.sequences import smoothstep_blend, synthesize_sequence


@pytest.fixture(scope="module")
def geometry():
    return load_geometry("model", load_model("open"))


def test_the_blend_runs_through_every_keyframe_without_jumps():
    before, weight = smoothstep_blend(21, 3)
    position = before + weight                     # 0 at the first frame, 2 at the last
    assert (position[0], position[10], position[-1]) == (0.0, 1.0, 2.0)
    assert np.all(np.diff(position) >= 0)
    # Smoothstep: the speed is zero at each keyframe, highest between them.
    steps = np.diff(position)
    assert steps[0] < steps[4] and steps[9] < steps[4]


def test_a_sequence_is_one_identity_with_smoothly_moving_labels(geometry):
    faces = synthesize_sequence(geometry, seed=0, index=3, frames=24, image_size=64)
    assert len(faces) == 24
    identities = np.array([face.identity for face in faces])
    np.testing.assert_array_equal(identities, np.repeat(identities[:1], 24, axis=0))
    expression = np.array([face.expression for face in faces])
    yaw = np.array([face.yaw for face in faces])
    # Neighbouring frames differ by far less than the sequence moves overall.
    spread = np.abs(expression - expression.mean(axis=0)).max()
    assert np.abs(np.diff(expression, axis=0)).max() < 0.25 * spread
    assert np.abs(np.diff(yaw)).max() < 0.25 * (yaw.max() - yaw.min() + 1e-9)
    # Each frame is its own render: same scene, but not the same pixels.
    assert not np.array_equal(faces[0].image, faces[1].image)


def test_sequences_are_deterministic_and_distinct(geometry):
    first = synthesize_sequence(geometry, seed=1, index=0, frames=3, image_size=48)
    again = synthesize_sequence(geometry, seed=1, index=0, frames=3, image_size=48)
    other = synthesize_sequence(geometry, seed=1, index=1, frames=3, image_size=48)
    for one, two in zip(first, again):
        np.testing.assert_array_equal(one.image, two.image)
        np.testing.assert_array_equal(one.expression, two.expression)
    assert not np.array_equal(first[0].identity, other[0].identity)
