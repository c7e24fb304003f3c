"""dlib's ResNet descriptor on the bundled photos: one person near, two people far."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fitting.image import decode_image
from fitting.landmarks import create_landmarker, select_faces
from fitting.landmarks.descriptor import DESCRIPTOR_DIM, FaceDescriptor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"


@pytest.fixture(scope="module")
def describe():
    landmarker = create_landmarker("dlib").load()
    network = FaceDescriptor().load()

    def run(name: str) -> np.ndarray:
        image = decode_image((EXAMPLES / name).read_bytes())
        [face] = select_faces(landmarker.detect(image))
        return network.describe(image, face.landmarks, face.box)

    return run


def test_one_person_is_near_and_two_people_are_far(describe):
    obama = [describe(name) for name in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    biden = describe("biden.jpg")
    assert all(vector.shape == (DESCRIPTOR_DIM,) for vector in obama)
    # dlib's own rule: one person within 0.6.
    for first, second in [(0, 1), (0, 2), (1, 2)]:
        assert np.linalg.norm(obama[first] - obama[second]) < 0.6
    assert min(np.linalg.norm(vector - biden) for vector in obama) > 0.6


def test_the_same_face_gives_the_same_descriptor(describe):
    np.testing.assert_array_equal(describe("obama.jpg"), describe("obama.jpg"))


def test_bad_landmarks_raise():
    network = FaceDescriptor()
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        network.describe(image, np.zeros((5, 2)), np.array([0, 0, 10, 10]))
    with pytest.raises(ValueError, match="RGB"):
        network.describe(np.zeros((64, 64)), np.zeros((68, 2)), np.array([0, 0, 10, 10]))
