"""dlib backend on real photos: native-scale search, small faces found by the retry."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from fitting.image import decode_image
from fitting.landmarks.dlib_backend import DlibLandmarker, default_predictor_path

PHOTO = Path(__file__).resolve().parents[2] / "examples" / "faces" / "astronaut.png"


@pytest.fixture(scope="module")
def landmarker():
    return DlibLandmarker().load()


@pytest.fixture(scope="module")
def photo():
    return decode_image(PHOTO.read_bytes())


def test_face_and_68_points_on_the_photo(landmarker, photo):
    [face] = landmarker.detect(photo).faces
    x0, y0, x1, y1 = face.box
    assert face.landmarks.shape == (68, 2)
    # The inner face (brows, eyes, nose, mouth: points 17-67) lies inside the detector box.
    inner = face.landmarks[17:]
    assert np.all((inner[:, 0] > x0) & (inner[:, 0] < x1) & (inner[:, 1] > y0 - 0.1 * (y1 - y0)))
    # Eyes above the nose tip, above the mouth (image y points down).
    assert face.landmarks[36:48, 1].mean() < face.landmarks[30, 1] < face.landmarks[48:68, 1].mean()


def test_small_face_is_found_by_the_upsampled_retry(landmarker, photo):
    [face] = landmarker.detect(photo).faces
    side = face.box[2] - face.box[0]
    # Shrink the photo so the face box is about 40 px, well below dlib's native ~80 px.
    scale = 40.0 / side
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    native_only = DlibLandmarker(upsample=0).load()
    assert native_only.detect(small).failure == "no_face"
    [small_face] = landmarker.detect(small).faces
    assert np.allclose(small_face.landmarks[30], face.landmarks[30] * scale, atol=4.0)


def test_no_face_is_a_reason(landmarker):
    flat = np.full((120, 160, 3), 128, np.uint8)
    found = landmarker.detect(flat)
    assert found.faces == () and found.failure == "no_face"


def test_bad_image_and_missing_predictor_are_refused(landmarker, tmp_path):
    with pytest.raises(ValueError, match="uint8 RGB"):
        landmarker.detect(np.zeros((10, 10), np.uint8))
    assert default_predictor_path().name == "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(FileNotFoundError, match="not found"):
        DlibLandmarker(tmp_path / "missing.dat").check_available()
