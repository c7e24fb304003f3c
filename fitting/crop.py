"""The ExpNet face crop: a square box around the landmarks, enlarged, padded and resized."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class FaceCrop:
    """A face crop and where it came from.

    Attributes
    ----------
    image : (S, S, 3) uint8 RGB
    landmarks : (N, 2) float64   the input landmarks in crop pixels
    box : (4,) float64           ``x0, y0, x1, y1`` of the square crop box in source pixels
    """

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray


def square_box(landmarks_2d: np.ndarray, *, enlarge: float = 0.25) -> np.ndarray:
    """Square box around the landmarks' extent, enlarged by ``enlarge`` of its side per side.

    Parameters
    ----------
    landmarks_2d : (N, 2) float   source pixels
    enlarge : float               fraction of the side added on each side (ExpNet: 0.25)

    Returns
    -------
    box : (4,) int-valued float64  ``x0, y0, x1, y1`` with ``x1 - x0 == y1 - y0``
    """
    points = np.asarray(landmarks_2d, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.all(np.isfinite(points)):
        raise ValueError(f"expected finite (N, 2) landmarks, got {points.shape}")
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2.0
    side = max(float(np.max(high - low)) * (1.0 + 2.0 * enlarge), 1.0)
    x0, y0 = np.round(centre - side / 2.0)
    side = float(np.ceil(side))
    return np.array([x0, y0, x0 + side, y0 + side])


def expnet_crop(image: np.ndarray, landmarks_2d: np.ndarray, *, crop_size: int = 224,
                enlarge: float = 0.25) -> FaceCrop:
    """Crop a face the ExpNet way; regions outside the image are padded with black.

    Parameters
    ----------
    image : (H, W, 3) uint8
    landmarks_2d : (N, 2) float   source pixels, y down
    crop_size : int               output side in pixels (ExpNet: 224)
    enlarge : float               box enlargement per side (ExpNet: 0.25)

    Returns
    -------
    FaceCrop
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    if crop_size < 8:
        raise ValueError(f"crop_size must be at least 8, got {crop_size}")
    box = square_box(landmarks_2d, enlarge=enlarge)
    x0, y0, x1, y1 = box.astype(int)
    height, width = image.shape[:2]
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    window = image[max(0, y0):min(height, y1), max(0, x0):min(width, x1)]
    window = cv2.copyMakeBorder(window, *pad, borderType=cv2.BORDER_CONSTANT, value=0)
    side = x1 - x0
    interpolation = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
    crop = cv2.resize(window, (crop_size, crop_size), interpolation=interpolation)
    scale = crop_size / side
    # Pixel centres sit at integer coordinates in both images.
    moved = (np.asarray(landmarks_2d, np.float64) - box[:2] + 0.5) * scale - 0.5
    return FaceCrop(image=crop, landmarks=moved, box=box)


def encode_jpeg(image: np.ndarray, *, quality: int = 95) -> bytes:
    """Encode an RGB image as JPEG bytes (deterministic for equal input).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
    quality : int   1..100
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the crop as JPEG")
    return encoded.tobytes()
