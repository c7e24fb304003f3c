"""Small videos made in the tests with PyAV: pans and zooms over the bundled photos, and
broken files. Nothing here is stored; every test makes what it reads."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"


def photo(name: str) -> Image.Image:
    return Image.open(EXAMPLES / name).convert("RGB")


# Face boxes of the bundled photos (dlib, x0 y0 x1 y1): where the camera of a test video looks.
FACE_BOXES = {"astronaut.png": (179, 83, 266, 170), "obama2.jpg": (164, 302, 474, 611),
              "obama.jpg": (366, 136, 624, 394), "biden.jpg": (439, 233, 749, 542)}


def pan_zoom(name: str, count: int, *, size: tuple = (224, 192), margin: float = 2.4,
             pan: tuple = (0.15, 0.0), zoom: float = 0.15) -> list:
    """``count`` frames of photo ``name``, each ``size`` (width, height) pixels: a camera
    looking at the face, its window ``margin`` times the face box, panning by ``pan`` (in
    window sides) and zooming in by ``zoom`` (a fraction of the window) over the clip.

    Returns
    -------
    list of (height, width, 3) uint8 arrays
    """
    image = photo(name)
    x0, y0, x1, y1 = FACE_BOXES[name]
    aspect = size[0] / size[1]
    frames = []
    for index in range(count):
        progress = index / max(count - 1, 1)
        side = margin * max(x1 - x0, y1 - y0) * (1 - zoom * progress)
        box_w, box_h = side * aspect, side
        cx = (x0 + x1) / 2 + pan[0] * side * (progress - 0.5)
        cy = (y0 + y1) / 2 + pan[1] * side * (progress - 0.5)
        box = (cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2)
        # EXTENT samples outside the photo as black, where a wide window leaves it.
        frames.append(np.asarray(image.transform(size, Image.EXTENT, box, Image.BILINEAR)))
    return frames


def side_by_side(left: list, right: list) -> list:
    """Two frame lists of the same length, each frame the two images next to each other."""
    return [np.concatenate([a, b], axis=1) for a, b in zip(left, right)]


def write_video(path: Path, frames: list, *, fps: int = 10, codec: str = "libx264",
                times_ms: list | None = None, gop: int = 0) -> Path:
    """Encode RGB frames into ``path`` (container from the suffix).

    Parameters
    ----------
    times_ms : list of int, optional
        Each frame's timestamp in milliseconds (a variable-rate file); default ``index / fps``.
    gop : int
        Keyframe interval in frames (0: the encoder's default), so seeks have keyframes to land on.
    """
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        encoded = []
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[index], Fraction(1, 1000)
            encoded.append(frame)
        _encode_all(container, stream, encoded)
    return path


def _encode_all(container, stream, frames) -> None:
    for frame in [*frames, None]:          # None flushes the encoder
        for packet in stream.encode(frame):
            container.mux(packet)


def rotate_mp4(data: bytes) -> bytes:
    """An mp4 whose video track's display matrix says: show rotated 90 degrees clockwise
    (as phones write portrait video): the identity matrix in ``tkhd`` is replaced."""
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    rotated = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    start = data.index(identity, data.index(b"tkhd"))
    return data[:start] + rotated + data[start + len(identity):]


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An .mp4 holding one AAC audio stream and no video."""
    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        frames = []
        for start in range(0, int(rate * seconds), 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = rate, start
            frames.append(frame)
        _encode_all(container, stream, frames)
    return path


def unknown_codec_avi(data: bytes) -> bytes:
    """An MPEG-4 .avi whose codec tag is replaced by one no decoder knows."""
    if data.count(b"FMP4") < 1:
        raise ValueError("expected an AVI written by FFmpeg's mpeg4 encoder")
    return data.replace(b"FMP4", b"QQQQ")
