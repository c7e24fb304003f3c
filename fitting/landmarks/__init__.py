"""Face and 68-point landmark detectors behind one interface.

Every backend follows :class:`Landmarker`: ``name``, ``version``, ``load()`` (heavy, once per
process) and ``detect_batch(images) -> list[ImageFaces]`` over ``(H, W, 3)`` uint8 RGB images.
"""

from __future__ import annotations

from fitting.landmarks.faces import (
    SELECTION_POLICIES,
    Face,
    ImageFaces,
    Landmarker,
    select_faces,
)

__all__ = ["Face", "ImageFaces", "LANDMARKERS", "Landmarker", "SELECTION_POLICIES",
           "create_landmarker", "select_faces"]

LANDMARKERS = ("dlib", "fan")


def create_landmarker(name: str, **options) -> Landmarker:
    """A landmarker by name, not yet loaded.

    Parameters
    ----------
    name : {"dlib", "fan"}
    **options
        Passed to the backend's constructor (e.g. ``weights_path`` for FAN).
    """
    if name == "dlib":
        from fitting.landmarks.dlib_backend import DlibLandmarker

        return DlibLandmarker(**options)
    if name == "fan":
        from fitting.landmarks.fan_backend import FanLandmarker

        return FanLandmarker(**options)
    raise ValueError(f"unknown landmarker {name!r}; use one of {LANDMARKERS}")
