"""A corpus of awkward image files, generated (never committed): name -> (bytes, expectation).

The expectation is either ``("ok", (H, W, 3), probe)`` where ``probe(image)`` checks pixel
content, or ``("fail", reason)``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _gradient(width=64, height=48) -> np.ndarray:
    """An RGB image whose left half is red and right half blue: orientation is visible."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (220, 20, 20)
    pixels[:, width // 2:] = (20, 20, 220)
    return pixels


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb's header)."""
    small = _encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return small[:8] + patched + small[8 + 25:]


def _exif_rotated() -> bytes:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view)."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(_gradient(), k=1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.fromarray(_gradient()).convert("P"),
              Image.new("P", (64, 48), 0)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _multipage_tiff() -> bytes:
    pages = [Image.fromarray(_gradient()), Image.new("RGB", (64, 48), (0, 255, 0))]
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _left_is_red(image: np.ndarray) -> bool:
    left, right = image[:, : image.shape[1] // 4], image[:, -image.shape[1] // 4:]
    return left[..., 0].mean() > 150 > right[..., 0].mean()


def _is_gray(image: np.ndarray) -> bool:
    return bool(np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2]))


def build_corpus() -> dict:
    rgb = Image.fromarray(_gradient())
    good_jpeg = _encode(rgb, "JPEG", quality=95)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    noisy_png = _encode(noise, "PNG")
    gray16 = Image.fromarray((np.tile(np.linspace(0, 65535, 64), (48, 1))).astype(np.uint16))
    return {
        "rgb.jpg": (good_jpeg, ("ok", (48, 64, 3), _left_is_red)),
        "rgb.png": (_encode(rgb, "PNG"), ("ok", (48, 64, 3), _left_is_red)),
        "rgb.webp": (_encode(rgb, "WEBP", lossless=True), ("ok", (48, 64, 3), _left_is_red)),
        "rgb.bmp": (_encode(rgb, "BMP"), ("ok", (48, 64, 3), _left_is_red)),
        "cmyk.jpg": (_encode(rgb.convert("CMYK"), "JPEG", quality=95),
                     ("ok", (48, 64, 3), _left_is_red)),
        "gray.png": (_encode(rgb.convert("L"), "PNG"), ("ok", (48, 64, 3), _is_gray)),
        "gray16.png": (_encode(gray16, "PNG"),
                       ("ok", (48, 64, 3), lambda im: _is_gray(im) and im[0, -1, 0] >= 250)),
        "palette.png": (_encode(rgb.convert("P"), "PNG"), ("ok", (48, 64, 3), _left_is_red)),
        "rgba.png": (_encode(rgb.convert("RGBA"), "PNG"), ("ok", (48, 64, 3), _left_is_red)),
        "exif_rotated.jpg": (_exif_rotated(), ("ok", (48, 64, 3), _left_is_red)),
        "animated.gif": (_animated_gif(), ("ok", (48, 64, 3), _left_is_red)),
        "multipage.tiff": (_multipage_tiff(), ("ok", (48, 64, 3), _left_is_red)),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], ("fail", "truncated")),
        "truncated.png": (noisy_png[: len(noisy_png) // 2], ("fail", "truncated")),
        "empty.jpg": (b"", ("fail", "empty_file")),
        "text.jpg": (b"this is not an image\n" * 4, ("fail", "not_an_image")),
        "one_pixel.png": (_encode(Image.new("RGB", (1, 1)), "PNG"), ("fail", "too_small")),
        "bomb.png": (_png_with_size(20000, 20000), ("fail", "too_many_pixels")),
    }
