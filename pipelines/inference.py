"""Landmark detection as a plain Beam ``DoFn``: batches of keyed images in, faces out.

Elements are lists of ``(key, image)`` pairs with ``image`` an ``(H, W, 3)`` uint8 RGB array;
the DoFn yields ``(key, image, ImageFaces)`` per image, so the crop that follows still has the
pixels. An image the detector crashes on yields ``ImageFaces`` with
``failure="detector_error: ..."`` instead of failing its batch: errors are data, handled the
same way on every runner.

This is not Beam's ``RunInference``: ``apache_beam.ml.inference.base`` imports torch whenever
it is installed (+180 MiB and torch's threads in a dlib run), its batching is not used here
(the pipeline makes its own batches, see ``generate``), and its model sharing reloads the
detector for every Dask partition. The detector loads once per worker process instead
(:func:`pipelines.resources.load_once`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apache_beam as beam

from fitting.landmarks import ImageFaces, create_landmarker
from pipelines.resources import load_once

# Images per detector batch: dlib works image by image; FAN stacks the faces of a batch of
# images into one network call.
BATCH_SIZES = {"dlib": 1, "fan": 16}

# What a detector raises on an image it cannot handle (dlib and torch raise RuntimeError).
DETECTOR_ERRORS = (RuntimeError, ValueError, MemoryError)


def _detect_one(model, image) -> ImageFaces:
    """Detect in one image; a crash becomes an ``ImageFaces`` with the reason."""
    try:
        return model.detect_batch([image])[0]
    except DETECTOR_ERRORS as error:
        size = (image.shape[1], image.shape[0]) if getattr(image, "ndim", 0) >= 2 else (0, 0)
        return ImageFaces(faces=(), image_size=size,
                          failure=f"detector_error: {type(error).__name__}: {error}")


def detect_keyed(model, batch: Sequence) -> list:
    """``[(key, image)]`` -> ``[(key, image, ImageFaces)]`` with one bad image isolated."""
    keys = [key for key, _ in batch]
    images = [image for _, image in batch]
    try:
        found = model.detect_batch(images)
    except DETECTOR_ERRORS:
        # One bad image must not fail its batch-mates: retry one by one.
        found = [_detect_one(model, image) for image in images]
    return list(zip(keys, images, found))


def load_landmarker(name: str, options: dict):
    """The loaded ``fitting.landmarks`` backend ``name`` of this process (loaded once)."""
    key = ("landmarker", name, tuple(sorted(options.items())))
    return load_once(key, lambda: create_landmarker(name, **options).load())


@beam.typehints.with_output_types(Any)
class DetectLandmarksDoFn(beam.DoFn):
    """A batch ``[(key, image)]`` -> ``(key, image, ImageFaces)`` per image.

    Parameters
    ----------
    name : {"dlib", "fan"}
    options : dict
        Constructor options of the backend (e.g. ``{"weights_path": ...}`` for FAN).
    """

    def __init__(self, name: str, options: dict | None = None):
        self.name = name
        self.options = dict(options or {})
        self.model = None

    @property
    def batch_size(self) -> int:
        return BATCH_SIZES.get(self.name, 1)

    def setup(self):
        self.model = load_landmarker(self.name, self.options)

    def process(self, batch):
        beam.metrics.Metrics.counter("expnet_landmarks", f"{self.name}_images").inc(len(batch))
        yield from detect_keyed(self.model, batch)
