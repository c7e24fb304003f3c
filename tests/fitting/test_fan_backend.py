"""The FAN landmark backend: real loading path, crop geometry, heatmap decoding, batching.

No weights are downloaded: the networks are face-alignment's ``FAN`` class with one hourglass,
saved under the 2DFAN4 file name in a temporary torch hub cache.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fitting.image import decode_image
from fitting.landmarks import create_landmarker
from fitting.landmarks.fan_backend import (
    SFD_WEIGHTS_FILE,
    WEIGHTS_FILE,
    FanLandmarker,
    crop_geometry,
    decode_heatmaps,
    modules_in_state_dict,
)
from tests.fitting.fan_networks import (
    colour_of_landmark,
    dot_tracking_fan,
    dots_image,
    install_weights,
    random_fan,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"


@pytest.fixture(scope="module")
def dot_weights(tmp_path_factory) -> Path:
    return install_weights(dot_tracking_fan(), tmp_path_factory.mktemp("dot-home"))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    return install_weights(random_fan(seed=7), tmp_path_factory.mktemp("random-home"))


@pytest.fixture(scope="module")
def photos() -> list:
    return [decode_image((EXAMPLES / name).read_bytes())
            for name in ("astronaut.png", "obama2.jpg", "coffee.png")]


def test_crop_geometry_by_hand():
    centers, scales = crop_geometry(np.array([[100.0, 50.0, 300.0, 250.0]]))
    # Centre of the box raised by 0.12 of its height; scale = (200 + 200) / 195.
    assert np.allclose(centers, [[200.0, 150.0 - 24.0]])
    assert np.allclose(scales, [400.0 / 195.0])
    with pytest.raises(ValueError, match=r"\(F, 4\)"):
        crop_geometry(np.zeros((2, 3)))


def test_decode_a_known_peak_by_hand():
    # Crop side 200 * 0.64 = 128 source px, so one heatmap cell is 2 source px.
    centers, scales = np.array([[100.0, 80.0]]), np.array([0.64])
    heatmaps = np.zeros((1, 3, 64, 64), np.float32)
    heatmaps[0, 0, 40, 10] = 1.0                      # symmetric neighbours: cell centre
    heatmaps[0, 1, 40, 10], heatmaps[0, 1, 40, 11] = 1.0, 0.5   # right neighbour larger
    heatmaps[0, 2, 0, 5] = 0.7                        # on the border: no quarter-cell step
    landmarks, confidence = decode_heatmaps(heatmaps, centers, scales)
    # x = ((col + 0.5) / 64 - 0.5) * 128 + 100, y likewise with row and 80.
    assert np.allclose(landmarks[0], [[57.0, 97.0], [57.5, 97.0], [47.0, 17.0]])
    assert np.allclose(confidence[0], [1.0, 1.0, 0.7])


def test_decode_agrees_with_face_alignment():
    from face_alignment.utils import get_preds_fromhm

    rng = np.random.default_rng(3)
    heatmaps = rng.random((2, 68, 64, 64)).astype(np.float32)
    center, scale = np.array([231.0, 187.0]), 1.37
    ours, confidence = decode_heatmaps(heatmaps, np.tile(center, (2, 1)), np.full(2, scale))
    _, theirs, scores = get_preds_fromhm(heatmaps, center, scale)
    # face-alignment truncates its source-pixel points to integers; ours keep the fraction.
    assert np.all(np.abs(ours - theirs) < 1.0 + 1e-6)
    assert np.array_equal(np.trunc(ours + 1e-6), theirs)
    assert np.allclose(confidence, scores)


def test_landmarks_follow_bright_spots_end_to_end(dot_weights):
    """The dot network's landmark k peaks on the dot of colour k % 3, through crop and decode."""
    fan = FanLandmarker(dot_weights, device="cpu").load()
    dots = {0: (140, 130), 1: (170, 190), 2: (110, 200)}
    image = dots_image(320, 300, dots)
    box = np.array([[80.0, 100.0, 220.0, 240.0]])
    [(landmarks, confidence)] = fan.landmarks_for_boxes([image], [box])
    _, scales = crop_geometry(box)
    cell = 200.0 * scales[0] / 64
    expected = np.array([dots[colour_of_landmark(k)] for k in range(68)], np.float64)
    assert landmarks.shape == (1, 68, 2) and confidence.shape == (1, 68)
    # The peak is quantised to heatmap cells (4 crop px): within one cell of the dot.
    assert np.max(np.abs(landmarks[0] - expected)) < cell
    assert np.all(confidence > 0)


def test_flip_input_keeps_a_symmetric_dot(dot_weights):
    fan = FanLandmarker(dot_weights, device="cpu", flip_input=True).load()
    image = dots_image(300, 300, {0: (150, 140), 1: (150, 140), 2: (150, 140)})
    box = np.array([[90.0, 90.0, 210.0, 210.0]])
    [(landmarks, _)] = fan.landmarks_for_boxes([image], [box])
    cell = 200.0 * crop_geometry(box)[1][0] / 64
    # Mirrored heatmaps, flipped back and added, still peak on the dot: within one cell.
    assert np.max(np.abs(landmarks[0] - [150.0, 140.0])) < cell


def test_batching_across_images_equals_one_image_at_a_time(random_weights, photos):
    batched = FanLandmarker(random_weights, device="cpu", batch_size=8).load()
    single = FanLandmarker(random_weights, device="cpu", batch_size=1).load()
    together = batched.detect_batch(photos)
    alone = [single.detect(image) for image in photos]
    assert [len(found.faces) for found in together] == [1, 1, 0]
    assert together[2].failure == "no_face" and together[0].failure is None
    for found_together, found_alone, image in zip(together, alone, photos):
        assert found_together.image_size == (image.shape[1], image.shape[0])
        for face, reference in zip(found_together.faces, found_alone.faces):
            assert np.array_equal(face.box, reference.box)
            # float32 convolutions in other batch shapes agree to rounding (heatmaps ~0.1-1).
            assert np.allclose(face.landmarks, reference.landmarks, atol=1e-6)
            assert np.allclose(face.landmark_confidence, reference.landmark_confidence,
                               rtol=0, atol=1e-5)


def test_landmarks_lie_in_the_crop_of_the_dlib_box(random_weights, photos):
    from fitting.landmarks.dlib_backend import DlibLandmarker

    fan = FanLandmarker(random_weights, device="cpu").load()
    found = fan.detect_batch(photos[:2])
    for image, result in zip(photos[:2], found):
        [face] = result.faces
        boxes, scores = DlibLandmarker().detect_boxes(image)
        assert np.array_equal(face.box, boxes[0]) and face.score == scores[0]
        centers, scales = crop_geometry(face.box[None])
        half = 100.0 * scales[0]
        assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float64
        # Every heatmap cell centre maps inside the crop square around the box.
        assert np.all(np.abs(face.landmarks - centers[0]) < half)


def test_missing_weights_fail_before_any_work(tmp_path, monkeypatch, photos):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fan = create_landmarker("fan", device="cpu")
    expected_dir = tmp_path / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE) as error:
        fan.check_available()
    assert str(expected_dir) in str(error.value)
    assert "--landmarker-weights" in str(error.value)
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        fan.detect_batch(photos[:1])
    # Nothing was fetched into the cache.
    assert not expected_dir.exists() or not any(expected_dir.iterdir())
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        FanLandmarker(tmp_path / "nowhere.pth").check_available()


def test_default_weights_are_found_in_the_hub_cache(tmp_path, monkeypatch, dot_weights):
    install_weights(dot_tracking_fan(), tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fan = FanLandmarker(device="cpu")
    assert fan.weights_file() == tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    fan.check_available()
    assert WEIGHTS_FILE in fan.version and "face-alignment-" in fan.version
    sfd = FanLandmarker(device="cpu", face_detector="sfd")
    with pytest.raises(FileNotFoundError, match=SFD_WEIGHTS_FILE):
        sfd.check_available()


def test_bad_arguments_are_refused(dot_weights):
    with pytest.raises(ValueError, match="face detector"):
        FanLandmarker(face_detector="mtcnn")
    with pytest.raises(ValueError, match="batch_size"):
        FanLandmarker(batch_size=0)
    fan = FanLandmarker(dot_weights, device="cpu")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        fan.detect_batch([np.zeros((20, 20), np.uint8)])
    assert modules_in_state_dict({"l0.weight": 0, "l3.weight": 0, "l3.bias": 0}) == 4
    with pytest.raises(ValueError, match="FAN state dict"):
        modules_in_state_dict({"conv.weight": 0})


def test_importing_fitting_does_not_import_torch():
    code = ("import sys, fitting, fitting.landmarks, fitting.landmarks.fan_backend; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_dlib_boxes_then_landmarks_equal_its_detect(photos):
    """The split dlib calls FAN and the benchmark use give exactly what ``detect`` gives."""
    from fitting.landmarks.dlib_backend import DlibLandmarker

    dlib = DlibLandmarker().load()
    boxes = [dlib.detect_boxes(image)[0] for image in photos]
    marked = dlib.landmarks_for_boxes(photos, boxes)
    for image, image_boxes, (landmarks, confidence) in zip(photos, boxes, marked):
        faces = dlib.detect(image).faces
        assert len(faces) == len(image_boxes) == len(landmarks) and confidence is None
        for face, box, points in zip(faces, image_boxes, landmarks):
            assert np.array_equal(face.box, box) and np.array_equal(face.landmarks, points)
