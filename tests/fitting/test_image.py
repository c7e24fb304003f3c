"""Decoding awkward image files into 8-bit RGB, or a failure reason."""

import numpy as np
import pytest

from fitting.image import ImageDecodeError, decode_image
from tests.fitting.image_corpus import build_corpus

CORPUS = build_corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_file_decodes_or_fails_with_its_reason(name):
    data, expectation = CORPUS[name]
    if expectation[0] == "ok":
        _, shape, probe = expectation
        image = decode_image(data)
        assert image.dtype == np.uint8 and image.shape == shape
        assert probe(image), f"{name}: pixel content is wrong"
    else:
        with pytest.raises(ImageDecodeError) as raised:
            decode_image(data)
        assert raised.value.reason == expectation[1]


def test_pixel_limit_is_a_parameter():
    data, _ = CORPUS["rgb.png"]
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data, max_pixels=64 * 48 - 1)
    assert raised.value.reason == "too_many_pixels"
    assert decode_image(data, max_pixels=64 * 48).shape == (48, 64, 3)
