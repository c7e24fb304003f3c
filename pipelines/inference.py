"""Landmark detectors as Beam ``ModelHandler``s, for ``RunInference``.

Elements are ``(key, image)`` pairs with ``image`` an ``(H, W, 3)`` uint8 RGB array; the
handler yields ``(key, image, ImageFaces)`` so the crop that follows still has the pixels.
An image the detector crashes on yields ``ImageFaces`` with ``failure="detector_error: ..."``
instead of failing the batch: errors are data, handled the same way on every runner
(``RunInference.with_exception_handling`` relies on tagged outputs, which Beam's Dask runner
does not route correctly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler

from fitting.landmarks import ImageFaces, create_landmarker

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


class LandmarkModelHandler(ModelHandler):
    """Runs a :mod:`fitting.landmarks` backend over batches of keyed images.

    Parameters
    ----------
    name : {"dlib", "fan"}
    options : dict
        Constructor options of the backend (e.g. ``{"weights_path": ...}`` for FAN).
    """

    def __init__(self, name: str, options: dict | None = None):
        super().__init__()
        self.batch_size = BATCH_SIZES.get(name, 1)
        self.name = name
        self.options = dict(options or {})

    def load_model(self):
        return create_landmarker(self.name, **self.options).load()

    def run_inference(self, batch: Sequence, model, inference_args=None) -> Iterable:
        keys = [key for key, _ in batch]
        images = [image for _, image in batch]
        try:
            found = model.detect_batch(images)
        except DETECTOR_ERRORS:
            # One bad image must not fail its batch-mates: retry one by one.
            found = [_detect_one(model, image) for image in images]
        return list(zip(keys, images, found))

    def get_num_bytes(self, batch: Sequence) -> int:
        return sum(image.nbytes for _, image in batch)

    def get_metrics_namespace(self) -> str:
        return f"expnet_landmarks_{self.name}"

    def share_model_across_processes(self) -> bool:
        # Sharing would proxy every image to a model server process; both backends are cheap
        # enough to hold once per process.
        return False
