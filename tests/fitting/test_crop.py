"""The ExpNet crop: box geometry, padding and landmarks moved into the crop."""

import cv2
import numpy as np
import pytest

from fitting.crop import encode_jpeg, expnet_crop, square_box


def test_square_box_is_enlarged_25_percent_per_side():
    points = np.array([[100.0, 50.0], [200.0, 50.0], [150.0, 130.0]])
    x0, y0, x1, y1 = square_box(points)
    # Extent 100 x 80: the longer side, 100, grows by 25 % on each side to 150.
    assert x1 - x0 == y1 - y0 == 150
    assert (x0 + x1) / 2 == pytest.approx(150, abs=0.5)
    assert (y0 + y1) / 2 == pytest.approx(90, abs=0.5)


@pytest.mark.parametrize("crop_size", [224, 64])
def test_landmarks_follow_the_pixels_into_the_crop(crop_size):
    rng = np.random.default_rng(3)
    image = np.full((400, 500, 3), 30, np.uint8)
    points = rng.uniform([150, 120], [330, 300], size=(5, 2)).round()
    marked = points[2]
    cv2.circle(image, (int(marked[0]), int(marked[1])), 6, (255, 255, 255), -1)
    crop = expnet_crop(image, points, crop_size=crop_size)
    assert crop.image.shape == (crop_size, crop_size, 3)
    bright = np.argwhere(crop.image[..., 0] > 128)
    centre_yx = bright.mean(axis=0)
    # The dot's centroid sits where the moved landmark says, within a pixel of resampling.
    assert np.allclose(centre_yx[::-1], crop.landmarks[2], atol=1.0)


def test_box_outside_the_image_is_padded_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    points = np.array([[0.0, 0.0], [40.0, 40.0]])
    crop = expnet_crop(image, points, crop_size=60)
    assert crop.box[0] < 0 and crop.box[1] < 0
    assert crop.image[0, 0].max() == 0 and crop.image[-1, -1].min() == 200


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="landmarks"):
        square_box(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(np.zeros((8, 8, 3), np.uint8), quality=0)


def test_jpeg_encoding_is_deterministic():
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert encode_jpeg(image, quality=90) == encode_jpeg(image.copy(), quality=90)
