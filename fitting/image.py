"""Robust decoding of image bytes into 8-bit RGB arrays, EXIF orientation applied."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
# File endings taken as images when a folder is listed (the pipelines' sources, the evaluator).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MIN_SIDE_PX = 16


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; ``reason`` is a short machine-readable code.

    Reasons: ``empty_file``, ``not_an_image``, ``truncated``, ``too_many_pixels``,
    ``too_small``, ``unsupported_mode``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = MIN_SIDE_PX) -> np.ndarray:
    """Decode JPEG/PNG/WebP/BMP/TIFF/GIF bytes into an RGB image.

    The EXIF orientation is applied; grayscale, palette, RGBA, CMYK and 16-bit images are
    converted to 8-bit RGB (alpha dropped). Multi-frame files (animated GIF, multi-page TIFF)
    give their first frame. The pixel count is checked from the header, before decoding, so
    decompression bombs cost nothing.

    Parameters
    ----------
    data : bytes
    max_pixels : int    refuse images with more pixels than this
    min_side : int      refuse images whose shorter side is below this

    Returns
    -------
    image : (H, W, 3) uint8

    Raises
    ------
    ImageDecodeError   with a ``reason`` code
    """
    if not data:
        raise ImageDecodeError("empty_file", "the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    "too_many_pixels",
                    f"{width}x{height} exceeds the limit of {max_pixels} pixels")
            if min(width, height) < min_side:
                raise ImageDecodeError(
                    "too_small", f"{width}x{height} is below {min_side} px on a side")
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return _to_rgb8(oriented)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError("too_many_pixels", str(error)) from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not_an_image", "not a recognised image format") from error
    except (OSError, SyntaxError, EOFError) as error:
        # Pillow reports truncated and corrupt streams as OSError (sometimes SyntaxError).
        raise ImageDecodeError("truncated", f"corrupt or truncated image: {error}") from error


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit data: keep the most significant byte.
        values = np.asarray(image, dtype=np.int64)
        gray = np.clip(values, 0, 65535) >> 8
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA")
    try:
        rgb = image.convert("RGB")
    except ValueError as error:
        raise ImageDecodeError("unsupported_mode", f"cannot convert mode {mode}: {error}") \
            from error
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
