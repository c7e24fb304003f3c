"""Stored JPEG crops -> float image tensors, and the resize the trainer puts after them."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

DECODERS = ("cv2", "pil")


def decode_image(data: bytes, *, decoder: str = "cv2") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG) to RGB pixels.

    Returns
    -------
    image : (H, W, 3) uint8 RGB

    Raises
    ------
    ValueError   when ``data`` is not a decodable image or ``decoder`` is unknown
    """
    if decoder == "cv2":
        import cv2

        # OpenCV >= 4.10 decodes straight to RGB, saving a pass over the pixels (5-10 % of
        # a 224x224 decode); older versions decode to BGR and convert.
        rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
        flag = cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
        if pixels is None:
            raise ValueError(f"cannot decode {len(data)} bytes as an image")
        return pixels if rgb_flag is not None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if decoder == "pil":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot decode {len(data)} bytes as an image: {error}") from error
    raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class ResizeImage:
    """Resize a (3, H, W) image or (B, 3, H, W) batch to size x size; a no-op when it already is.

    A class rather than a lambda so DataLoader workers can receive it by pickling.
    """

    def __init__(self, size: int):
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] == (self.size, self.size):
            return image
        if image.ndim not in (3, 4):
            raise ValueError(f"expected a (3, H, W) image or (B, 3, H, W) batch, "
                             f"got {tuple(image.shape)}")
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        resized = F.interpolate(batch, size=(self.size, self.size), mode="bilinear",
                                align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return resized.squeeze(0) if image.ndim == 3 else resized

    def __repr__(self) -> str:
        return f"ResizeImage({self.size})"
