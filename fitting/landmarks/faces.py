"""The common result of every face and landmark detector, and face-selection policies."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

SELECTION_POLICIES = ("largest", "central", "all")


@dataclasses.dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes
    ----------
    box : (4,) float64            ``x0, y0, x1, y1`` in source-image pixels
    score : float                 detector score (backend-specific scale)
    landmarks : (68, 2) float64   iBUG-68 points in source-image pixels, y down
    landmark_confidence : (68,) float64 or None   per-point confidence where the backend has one
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    landmark_confidence: np.ndarray | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFaces:
    """Every face found in one image, or the reason none was.

    Attributes
    ----------
    faces : tuple of Face
    image_size : (width, height) of the searched image
    failure : str or None    e.g. ``"no_face"``; set exactly when ``faces`` is empty
    """

    faces: tuple
    image_size: tuple
    failure: str | None = None


class Landmarker(Protocol):
    """What every landmark backend offers (:mod:`fitting.landmarks.dlib_backend`, ``fan_backend``).

    Images are ``(H, W, 3)`` uint8 RGB; boxes are ``x0, y0, x1, y1`` in source pixels.
    """

    name: str

    @property
    def version(self) -> str: ...

    def load(self) -> Landmarker:
        """Load the heavy resources (weights); once per process, not at construction."""

    def detect_boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes of one image, without landmarks.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB

        Returns
        -------
        boxes : (F, 4) float64   ``x0, y0, x1, y1`` in source pixels, detector order
        scores : (F,) float64    detector scores (the backend's own scale)
        """

    def landmarks_for_boxes(self, images: list, boxes: list) -> list:
        """68 points for given face boxes.

        Parameters
        ----------
        images : list of (H, W, 3) uint8 RGB
        boxes : list of (F_i, 4) float   ``x0, y0, x1, y1`` face boxes of each image

        Returns
        -------
        list of (landmarks (F_i, 68, 2) float64, confidence (F_i, 68) float64 or None)
        """

    def detect_batch(self, images: list) -> list[ImageFaces]:
        """Faces and their landmarks in each image, faces in detector order."""


def check_rgb_image(image) -> None:
    """Raise ``ValueError`` unless ``image`` is an ``(H, W, 3)`` uint8 RGB array (what every
    landmark backend takes)."""
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8):
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {shape} "
                         f"{getattr(image, 'dtype', type(image).__name__)}")


def select_faces(found: ImageFaces, policy: str = "largest") -> list[Face]:
    """Apply a face-selection policy.

    Parameters
    ----------
    found : ImageFaces
    policy : {"largest", "central", "all"}
        ``largest`` keeps the face with the largest box; ``central`` the face whose box centre
        is closest to the image centre; ``all`` keeps every face in detector order.

    Returns
    -------
    list of Face   empty when ``found`` has no face
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"unknown face policy {policy!r}; use one of {SELECTION_POLICIES}")
    faces = list(found.faces)
    if not faces or policy == "all":
        return faces
    if policy == "largest":
        return [max(faces, key=lambda face: face.area)]
    width, height = found.image_size
    centre = np.array([width / 2.0, height / 2.0])

    def distance_to_centre(face: Face) -> float:
        box_centre = (face.box[:2] + face.box[2:]) / 2.0
        return float(np.linalg.norm(box_centre - centre))

    return [min(faces, key=distance_to_centre)]
