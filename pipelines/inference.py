"""Landmark detectors as Beam ``ModelHandler``s, for ``RunInference``.

Elements are ``(key, image)`` pairs with ``image`` an ``(H, W, 3)`` uint8 RGB array; the
handler yields ``(key, image, ImageFaces)`` so the crop that follows still has the pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler

from fitting.landmarks import create_landmarker

# Batch sizes per backend: dlib works image by image, so large batches only add latency;
# FAN batches face crops across images on the GPU.
BATCH_SIZES = {"dlib": (1, 8), "fan": (8, 64)}


class LandmarkModelHandler(ModelHandler):
    """Runs a :mod:`fitting.landmarks` backend over batches of keyed images.

    Parameters
    ----------
    name : {"dlib", "fan"}
    options : dict
        Constructor options of the backend (e.g. ``{"weights_path": ...}`` for FAN).
    """

    def __init__(self, name: str, options: dict | None = None):
        minimum, maximum = BATCH_SIZES.get(name, (1, 16))
        super().__init__(min_batch_size=minimum, max_batch_size=maximum)
        self.name = name
        self.options = dict(options or {})

    def load_model(self):
        return create_landmarker(self.name, **self.options).load()

    def run_inference(self, batch: Sequence, model, inference_args=None) -> Iterable:
        keys = [key for key, _ in batch]
        images = [image for _, image in batch]
        found = model.detect_batch(images)
        return list(zip(keys, images, found))

    def get_num_bytes(self, batch: Sequence) -> int:
        return sum(image.nbytes for _, image in batch)

    def get_metrics_namespace(self) -> str:
        return f"expnet_landmarks_{self.name}"

    def share_model_across_processes(self) -> bool:
        # Sharing would proxy every image to a model server process; both backends are cheap
        # enough to hold once per process.
        return False
