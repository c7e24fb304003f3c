"""Sampled frames of a video, decoded with PyAV: probe, plan time chunks, decode one chunk.

Sampling grid
-------------
With a sampling rate ``F`` (frames per second), time is cut into slots ``[k / F, (k + 1) / F)``
and the first decoded frame of each slot is kept, with ``sample_index = k`` (its "frame
index" in the dataset). Frame times come from the stream's timestamps,
``(pts - start_pts) * time_base``, so variable-rate files are sampled right; a slot with no
frame (a source slower than ``F``) is simply empty.

Whether a frame is kept depends only on its own time and on the frame before it being in an
earlier slot, so a video can be cut into chunks of whole slots and each chunk decoded
independently, after a seek, with exactly the frames a single pass would keep.

Rotation metadata (the display matrix) is applied to every kept frame.

PyAV is imported inside the functions: importing ``fitting`` stays free of FFmpeg.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

DEFAULT_VIDEO_FPS = 5.0
DEFAULT_CHUNK_SECONDS = 60.0
DEFAULT_MAX_VIDEO_SECONDS = 24 * 3600.0
MIN_SIDE_PX = 16


class VideoDecodeError(ValueError):
    """The file is not a usable video; ``reason`` is a short machine-readable code.

    Reasons: ``empty_file``, ``not_a_video`` (corrupt, truncated before its index, or not a
    container), ``no_video_stream`` (audio only), ``unsupported_codec``, ``too_many_pixels``,
    ``too_small``, ``too_long``, ``decode_error`` (the stream breaks while decoding),
    ``truncated`` (frames stop well before the declared duration).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream.

    Attributes
    ----------
    width, height : int         coded size in pixels (before rotation)
    duration_s : float or None  declared duration, None when the container has none
    codec : str                 FFmpeg decoder name
    average_fps : float or None the stream's average frame rate
    """

    width: int
    height: int
    duration_s: float | None
    codec: str
    average_fps: float | None


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A run of whole sampling slots ``[first_slot, end_slot)``; ``end_slot`` None: to the end."""

    index: int
    first_slot: int
    end_slot: int | None


@dataclasses.dataclass(frozen=True, eq=False)
class SampledFrame:
    """One kept frame.

    Attributes
    ----------
    sample_index : int        slot ``k`` of the sampling grid
    time_s : float            the frame's own timestamp, seconds from the stream's start
    image : (H, W, 3) uint8   RGB, rotation applied
    """

    sample_index: int
    time_s: float
    image: np.ndarray


def sampling_rate(fps: float) -> Fraction:
    """``fps`` as an exact fraction, so slot boundaries compare exactly with timestamps."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"the sampling rate must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1000)


def _open(file):
    import av

    try:
        return av.open(file, mode="r")
    except av.error.FFmpegError as error:
        raise VideoDecodeError("not_a_video", f"not a readable video container: {error}") \
            from error


def _video_stream(container):
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        raise VideoDecodeError("no_video_stream",
                               f"the file has no video stream (streams: {kinds or 'none'})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError("unsupported_codec",
                               "this FFmpeg build has no decoder for the video stream's codec")
    return stream


def probe(file, *, max_pixels: int, max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
          min_side: int = MIN_SIDE_PX) -> VideoInfo:
    """Read a video's header and check it against the limits, decoding nothing.

    Parameters
    ----------
    file : path or binary file object (readable and seekable)
    max_pixels : int      refuse frames with more pixels than this
    max_seconds : float   refuse videos declared longer than this
    min_side : int        refuse frames whose shorter side is below this

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoDecodeError   with a ``reason`` code
    """
    container = _open(file)
    with container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise VideoDecodeError("too_many_pixels",
                                   f"{width}x{height} exceeds the limit of {max_pixels} pixels")
        if min(width, height) < min_side:
            raise VideoDecodeError("too_small",
                                   f"{width}x{height} is below {min_side} px on a side")
        duration = _duration_s(container, stream)
        if duration is not None and duration > max_seconds:
            raise VideoDecodeError("too_long", f"declared duration {duration:.0f} s exceeds "
                                               f"the limit of {max_seconds:.0f} s")
        rate = stream.average_rate
        return VideoInfo(width=width, height=height, duration_s=duration,
                         codec=stream.codec_context.name,
                         average_fps=float(rate) if rate else None)


def _duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE units
    return None


def plan_chunks(info: VideoInfo, *, fps: float, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                max_frames: int = 0) -> list[Chunk]:
    """The chunks a video is decoded in: whole slots, ``chunk_seconds`` long or less.

    Parameters
    ----------
    info : VideoInfo
    fps : float            sampling rate
    chunk_seconds : float  length of a chunk
    max_frames : int       keep slots ``0 .. max_frames - 1`` only; 0 keeps every slot

    Returns
    -------
    list of Chunk   one chunk (to the end) when the duration is unknown
    """
    rate = sampling_rate(fps)
    slots_per_chunk = max(1, int(round(chunk_seconds * rate)))
    if info.duration_s is None:
        return [Chunk(0, 0, max_frames or None)]
    total = max(1, math.ceil(Fraction(info.duration_s) * rate))
    if max_frames:
        total = min(total, max_frames)
    starts = range(0, total, slots_per_chunk)
    # The last chunk runs to the end of the stream: a declared duration may be a little short.
    return [Chunk(index, start, start + slots_per_chunk if index < len(starts) - 1 else
                  (max_frames or None))
            for index, start in enumerate(starts)]


def decode_chunk(file, chunk: Chunk, *, fps: float, max_pixels: int,
                 duration_s: float | None = None):
    """Decode the kept frames of one chunk, in time order.

    Parameters
    ----------
    file : path or binary file object (readable and seekable)
    chunk : Chunk
    fps : float              sampling rate (the one the chunk was planned with)
    max_pixels : int         a frame larger than this (a mid-stream size change) is an error
    duration_s : float, optional
        The declared duration: a last chunk whose frames stop well before it raises
        ``truncated`` after yielding what it has.

    Yields
    ------
    SampledFrame

    Raises
    ------
    VideoDecodeError   after the frames decoded so far, when the stream breaks
    """
    import av

    rate = sampling_rate(fps)
    container = _open(file)
    with container:
        stream = _video_stream(container)
        time_base = stream.time_base
        start_pts = stream.start_time or 0
        start = Fraction(chunk.first_slot) / rate
        end = None if chunk.end_slot is None else Fraction(chunk.end_slot) / rate
        last_slot, last_time = chunk.first_slot - 1, None
        try:
            if chunk.first_slot > 0:
                # To the keyframe at or before the chunk; frames before it are skipped below.
                container.seek(start_pts + math.floor(start / time_base), stream=stream,
                               backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                time = (frame.pts - start_pts) * time_base
                if time < start:
                    continue
                if end is not None and time >= end:
                    return
                last_time = time
                slot = math.floor(time * rate)
                if slot <= last_slot:
                    continue
                last_slot = slot
                yield SampledFrame(slot, float(time), _rgb(frame, max_pixels))
        except av.error.FFmpegError as error:
            raise VideoDecodeError("decode_error", f"the stream breaks after "
                                   f"{_seconds(last_time)}: {error}") from error
        _check_complete(chunk, last_time, start, end, duration_s, stream.average_rate)


def _seconds(time) -> str:
    return "its start" if time is None else f"{float(time):.3f} s"


def _check_complete(chunk: Chunk, last_time, start, end, duration_s, average_rate) -> None:
    """Raise ``truncated`` when the stream ended before the chunk (or the video) should."""
    limits = [limit for limit in (end, None if duration_s is None else Fraction(duration_s))
              if limit is not None]
    if not limits:
        return
    expected_end = min(limits)
    # A frame interval or two of slack: a declared duration covers the last frame's length.
    slack = 2 / Fraction(average_rate) if average_rate else Fraction(1, 2)
    reached = last_time if last_time is not None else start
    if reached < expected_end - slack:
        found = (f"frames stop at {float(last_time):.3f} s" if last_time is not None else
                 f"no frames from {float(start):.3f} s")
        raise VideoDecodeError("truncated", f"{found}, the stream should reach "
                                            f"{float(expected_end):.3f} s (chunk {chunk.index})")


def _rgb(frame, max_pixels: int) -> np.ndarray:
    if frame.width * frame.height > max_pixels:
        raise VideoDecodeError("too_many_pixels", f"a {frame.width}x{frame.height} frame "
                                                  f"exceeds the limit of {max_pixels} pixels")
    image = frame.to_ndarray(format="rgb24")
    # FFmpeg's rotation is counter-clockwise degrees of the display matrix; np.rot90 turns
    # counter-clockwise too.
    turns = int(round((frame.rotation or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
