"""Sampled frames of small generated videos: timestamps, chunks, rotation and bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fitting.video import (
    Chunk,
    VideoDecodeError,
    decode_chunk,
    plan_chunks,
    probe,
)
from tests.pipelines.videos import (
    audio_only,
    rotate_mp4,
    unknown_codec_avi,
    write_video,
)

LIMIT = 10_000_000


def gradient_frames(count: int, size=(64, 48)) -> list:
    """Frames whose mean brightness encodes their index (2 + 6 k), so a test can tell them
    apart after lossy coding."""
    width, height = size
    return [np.full((height, width, 3), 2 + 6 * index, np.uint8) for index in range(count)]


def frame_numbers(frames) -> list:
    return [int(round((frame.image.mean() - 2) / 6)) for frame in frames]


def decode_all(path, info, *, fps, chunk_seconds=60.0, max_frames=0):
    chunks = plan_chunks(info, fps=fps, chunk_seconds=chunk_seconds, max_frames=max_frames)
    return [frame for chunk in chunks
            for frame in decode_chunk(str(path), chunk, fps=fps, max_pixels=LIMIT,
                                      duration_s=info.duration_s)]


def test_variable_rate_frames_keep_their_own_timestamps(tmp_path):
    times_ms = [0, 90, 260, 300, 410, 650, 700, 990, 1210, 1400]
    path = write_video(tmp_path / "vfr.mkv", gradient_frames(len(times_ms)), times_ms=times_ms)
    info = probe(str(path), max_pixels=LIMIT)
    frames = decode_all(path, info, fps=5)
    # 200 ms slots: the first frame of each slot is kept; slot 5 (1.0-1.2 s) has no frame.
    assert [frame.sample_index for frame in frames] == [0, 1, 2, 3, 4, 6, 7]
    assert [frame.time_s for frame in frames] == pytest.approx(
        [0.0, 0.26, 0.41, 0.65, 0.99, 1.21, 1.40], abs=1e-9)
    assert frame_numbers(frames) == [0, 2, 4, 5, 7, 8, 9]


@pytest.mark.parametrize("container", ["mp4", "mkv", "webm"])
def test_chunks_decoded_after_seeks_equal_one_pass(tmp_path, container):
    codec = "libvpx-vp9" if container == "webm" else "libx264"
    path = write_video(tmp_path / f"clip.{container}", gradient_frames(30), fps=10, gop=4,
                       codec=codec)
    info = probe(str(path), max_pixels=LIMIT)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    whole = decode_all(path, info, fps=5)
    chunks = plan_chunks(info, fps=5, chunk_seconds=0.6)
    assert len(chunks) == 5 and chunks[-1].end_slot is None
    chunked = decode_all(path, info, fps=5, chunk_seconds=0.6)
    assert [frame.sample_index for frame in whole] == list(range(15))
    assert [frame.time_s for frame in chunked] == [frame.time_s for frame in whole]
    assert frame_numbers(whole) == list(range(0, 30, 2))
    for one, other in zip(whole, chunked):
        np.testing.assert_array_equal(one.image, other.image)


def test_max_frames_keeps_the_first_slots(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gradient_frames(30), fps=10)
    info = probe(str(path), max_pixels=LIMIT)
    frames = decode_all(path, info, fps=5, chunk_seconds=0.4, max_frames=5)
    assert [frame.sample_index for frame in frames] == [0, 1, 2, 3, 4]


def test_file_objects_decode_like_paths(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gradient_frames(10), fps=10)
    chunk = Chunk(1, 2, None)
    from_path = list(decode_chunk(str(path), chunk, fps=5, max_pixels=LIMIT))
    from_bytes = list(decode_chunk(io.BytesIO(path.read_bytes()), chunk, fps=5,
                                   max_pixels=LIMIT))
    assert [frame.sample_index for frame in from_bytes] == [2, 3, 4]
    assert [f.time_s for f in from_bytes] == [f.time_s for f in from_path]


def test_rotation_metadata_is_applied(tmp_path):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :16] = 255                      # a white band on the left
    path = write_video(tmp_path / "plain.mp4", [image] * 5, fps=10)
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(rotate_mp4(path.read_bytes()))
    [frame] = list(decode_chunk(str(rotated), Chunk(0, 0, 1), fps=5, max_pixels=LIMIT))
    # Shown turned 90 degrees clockwise: portrait, and the left band is now at the top.
    assert frame.image.shape == (64, 48, 3)
    assert frame.image[:12].mean() > 200 and frame.image[20:].mean() < 30


def test_probe_reports_each_kind_of_bad_file(tmp_path):
    def reason(data_or_path, **limits):
        source = data_or_path if isinstance(data_or_path, str) else io.BytesIO(data_or_path)
        with pytest.raises(VideoDecodeError) as raised:
            probe(source, **{"max_pixels": LIMIT, **limits})
        return raised.value.reason

    clip = write_video(tmp_path / "clip.mp4", gradient_frames(10), fps=10).read_bytes()
    avi = write_video(tmp_path / "clip.avi", gradient_frames(5), fps=10,
                      codec="mpeg4").read_bytes()
    long = write_video(tmp_path / "long.mkv", gradient_frames(2), times_ms=[0, 40_000])
    assert reason(b"") == "not_a_video"
    assert reason(b"RIFF not really a video" * 20) == "not_a_video"
    assert reason(clip[: len(clip) // 2]) == "not_a_video"     # its index is at the end
    assert reason(str(audio_only(tmp_path / "sound.mp4"))) == "no_video_stream"
    assert reason(unknown_codec_avi(avi)) == "unsupported_codec"
    assert reason(clip, max_pixels=64 * 48 - 1) == "too_many_pixels"
    assert reason(str(long), max_seconds=30) == "too_long"
    assert probe(str(long), max_pixels=LIMIT).duration_s > 30


def test_a_truncated_stream_gives_its_frames_then_an_error(tmp_path):
    path = write_video(tmp_path / "clip.mkv", gradient_frames(40), fps=10)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 3 // 4])   # flat frames: the first keyframe is most of it
    info = probe(str(cut), max_pixels=LIMIT)
    assert info.duration_s == pytest.approx(4.0, abs=0.11)   # the header still says 4 s
    kept = []
    with pytest.raises(VideoDecodeError) as raised:
        for frame in decode_chunk(str(cut), Chunk(0, 0, None), fps=5, max_pixels=LIMIT,
                                  duration_s=info.duration_s):
            kept.append(frame)
    assert raised.value.reason == "truncated"
    assert 0 < len(kept) < 20 and [f.sample_index for f in kept] == list(range(len(kept)))
