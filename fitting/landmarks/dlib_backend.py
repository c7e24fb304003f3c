"""dlib's HOG frontal face detector with its 68-point shape predictor.

The predictor file is the one shipped by the ``face-recognition-models`` package. Importing
that package needs ``pkg_resources`` (gone from current setuptools), so the file is located
through ``importlib.util.find_spec`` without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fitting.landmarks.faces import Face, ImageFaces, check_rgb_image

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def default_predictor_path() -> Path:
    """Path of dlib's 68-point predictor inside the installed ``face-recognition-models``.

    Raises
    ------
    FileNotFoundError
        When the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'face-recognition-models' package is not installed; it ships dlib's "
            f"{PREDICTOR_FILE} (pip install face-recognition-models)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{PREDICTOR_FILE} not found in face-recognition-models")


NATIVE_MIN_FACE_PX = 80
MAX_RETRY_SIDE_PX = 1024


def needs_upsampled_retry(width: int, height: int, *, min_face_px: int = 40) -> bool:
    """Whether an image without a face at native scale is searched again, upsampled 2x.

    dlib's HOG detector finds faces of about 80 px and larger at its native scale. Every
    image is searched at native scale first, which is all that images with large faces
    (most face collections) pay; only images where nothing was found, and that are small
    enough for the 4x cost, are searched again upsampled, to find faces down to 40 px.

    Parameters
    ----------
    width, height : int   image size in pixels
    min_face_px : int     smallest face to look for
    """
    return min_face_px < NATIVE_MIN_FACE_PX and max(width, height) <= MAX_RETRY_SIDE_PX


class DlibLandmarker:
    """Face detection and iBUG-68 landmarks with dlib.

    Parameters
    ----------
    predictor_path : str or Path, optional
        A ``shape_predictor_68_face_landmarks.dat``; defaults to the packaged one.
    upsample : int or None
        Fixed number of upsamplings, or None: native scale, then one upsampling for small
        images where nothing was found (see :func:`needs_upsampled_retry`).
    min_face_px : int
        Smallest face to look for when choosing upsampling automatically.
    """

    name = "dlib"

    def __init__(self, predictor_path=None, *, upsample: int | None = None,
                 min_face_px: int = 40):
        self.predictor_path = predictor_path
        self.upsample = upsample
        self.min_face_px = min_face_px
        self._detector = None
        self._predictor = None

    @property
    def version(self) -> str:
        import dlib

        return f"dlib-{dlib.__version__}/hog+{PREDICTOR_FILE}"

    def check_available(self) -> None:
        """Raise ``FileNotFoundError`` naming the file when the predictor is missing."""
        path = Path(self.predictor_path) if self.predictor_path else default_predictor_path()
        if not path.is_file():
            raise FileNotFoundError(f"dlib shape predictor not found: {path}")

    def load(self) -> DlibLandmarker:
        """Load the detector and predictor (heavy; call once per process)."""
        import dlib

        self.check_available()
        path = Path(self.predictor_path) if self.predictor_path else default_predictor_path()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        return self

    def detect(self, image: np.ndarray) -> ImageFaces:
        """Find faces and their 68 landmarks in one RGB image.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB

        Returns
        -------
        ImageFaces   faces in detector order, or ``failure="no_face"``
        """
        check_rgb_image(image)
        if self._predictor is None:
            self.load()
        height, width = image.shape[:2]
        image = np.ascontiguousarray(image)
        boxes, scores = self._run_detector(image)
        faces = []
        for box, score in zip(boxes, scores):
            shape = self._predictor(image, box)
            points = np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float64)
            faces.append(Face(
                box=np.array([box.left(), box.top(), box.right(), box.bottom()], np.float64),
                score=float(score),
                landmarks=points,
            ))
        return ImageFaces(faces=tuple(faces), image_size=(width, height),
                          failure=None if faces else "no_face")

    def _run_detector(self, image: np.ndarray) -> tuple:
        """dlib rectangles and scores of the HOG detector on a contiguous RGB image."""
        if self._detector is None:
            import dlib

            # The detector alone needs no predictor file (FAN reuses it for its boxes).
            self._detector = dlib.get_frontal_face_detector()
        if self.upsample is not None:
            boxes, scores, _ = self._detector.run(image, self.upsample, 0.0)
            return boxes, scores
        boxes, scores, _ = self._detector.run(image, 0, 0.0)
        height, width = image.shape[:2]
        if not boxes and needs_upsampled_retry(width, height, min_face_px=self.min_face_px):
            boxes, scores, _ = self._detector.run(image, 1, 0.0)
        return boxes, scores

    def detect_boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Landmarker.detect_boxes`: needs no predictor file; scores are HOG margins."""
        check_rgb_image(image)
        rectangles, scores = self._run_detector(np.ascontiguousarray(image))
        boxes = np.array([[box.left(), box.top(), box.right(), box.bottom()]
                          for box in rectangles], dtype=np.float64).reshape(-1, 4)
        return boxes, np.asarray(scores, dtype=np.float64).reshape(-1)

    def landmarks_for_boxes(self, images: list, boxes: list) -> list:
        """:meth:`Landmarker.landmarks_for_boxes`; confidence is None (dlib has none)."""
        import dlib

        if self._predictor is None:
            self.load()
        results = []
        for image, image_boxes in zip(images, boxes, strict=True):
            image = np.ascontiguousarray(image)
            points = [[(part.x, part.y) for part in self._predictor(
                image, dlib.rectangle(*(int(round(value)) for value in box))).parts()]
                for box in np.reshape(image_boxes, (-1, 4))]
            results.append((np.array(points, dtype=np.float64).reshape(-1, 68, 2), None))
        return results

    def detect_batch(self, images: list) -> list:
        """:meth:`detect` over a list of images (dlib has no batched HOG)."""
        return [self.detect(image) for image in images]
