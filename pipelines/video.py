"""Video inputs of the labelling chain: time chunks, sampled frames and face tracks.

A video survives deduplication as one record (its content id, no bytes). It is probed and cut
into chunks of whole sampling slots (``fitting.video.plan_chunks``); after a shuffle each
chunk is decoded on its own, from a seek, so the chunks of a long video spread over workers.
A chunk is decoded inside the step that landmarks its frames, so frames never cross a step.
After detection, the faces of one video meet in one group (a few hundred bytes a face) and
are linked into tracks (``fitting.tracks.link_tracks``): linking over the whole video links
across chunk boundaries.

The composites here are runner-neutral: keys crossing a shuffle are tuples of ints.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
import numpy as np

from fitting.tracks import link_tracks
from fitting.video import Chunk, VideoDecodeError, decode_chunk, plan_chunks, probe
from pipelines.archive_members import open_member
from pipelines.reading import SplitFailures, content_key
from pipelines.resources import use_filesystems
from pipelines.sources import Failure, SourceRecord, content_id, is_video_name, open_location

EMPTY_CONTENT_ID = content_id(b"")


@dataclasses.dataclass(frozen=True)
class VideoLimits:
    """How videos are sampled and what is refused (the ``--video-*`` and ``--max-*`` flags);
    ``max_file_bytes`` bounds a video member of a compressed tar, which is read into memory."""

    fps: float
    chunk_seconds: float
    max_frames: int
    max_seconds: float
    max_pixels: int
    max_file_bytes: int


@dataclasses.dataclass(frozen=True)
class VideoChunk:
    """One chunk of a video to decode: the video's record (without bytes) and its slots."""

    record: SourceRecord
    chunk: Chunk
    duration_s: float | None


def chunk_key(task: VideoChunk) -> tuple[int, ...]:
    """The shuffle key of a chunk: its video's content key and its index (ints only)."""
    return (*content_key(task.record.content_id), task.chunk.index)


def is_video_record(record: SourceRecord) -> bool:
    return is_video_name(record.uri)


def frame_id(video_id: str, sample_index: int) -> str:
    """The id of a sampled frame: ``<video content id>-t<slot>``; zero-padded so that ids sort
    in time order."""
    return f"{video_id}-t{sample_index:06d}"


def track_id(video_id: str, number: int) -> str:
    """The id of a face track: ``<video content id>-k<number>``."""
    return f"{video_id}-k{number}"


def open_video(record: SourceRecord, *, max_file_bytes: int):
    """A seekable binary file of a video record: its file, or its member of an archive."""
    if record.member is None:
        return open_location(record.location)
    return open_member(record.location, record.member, max_bytes=max_file_bytes)


def _decode_failure(record: SourceRecord, failure_id: str, reason: str, message: str):
    beam.metrics.Metrics.counter("expnet", "video_failures").inc()
    return Failure(failure_id, record.uri, record.source, "decode", reason, message)


def plan_video(record: SourceRecord, *, limits: VideoLimits, filesystems: dict | None = None):
    """A video record -> its ``VideoChunk``s, or one ``decode`` failure.

    ``filesystems``: the run's filesystem flags (``pipelines.resources.filesystem_options``),
    for workers whose runner does not configure Beam's FileSystems.

    Yields
    ------
    VideoChunk or Failure
    """
    use_filesystems(filesystems)
    if record.content_id == EMPTY_CONTENT_ID:
        yield _decode_failure(record, record.content_id, "empty_file", "the file is empty")
        return
    try:
        with open_video(record, max_file_bytes=limits.max_file_bytes) as handle:
            info = probe(handle, max_pixels=limits.max_pixels, max_seconds=limits.max_seconds)
    except VideoDecodeError as error:
        yield _decode_failure(record, record.content_id, error.reason, str(error))
        return
    except OSError as error:
        yield _decode_failure(record, record.content_id, "unreadable", str(error))
        return
    beam.metrics.Metrics.counter("expnet", "videos").inc()
    for chunk in plan_chunks(info, fps=limits.fps, chunk_seconds=limits.chunk_seconds,
                             max_frames=limits.max_frames):
        yield VideoChunk(record, chunk, info.duration_s)


class ChunkFrames:
    """A ``VideoChunk`` -> lists of at most ``batch_size`` ``(record, SampledFrame)``; a
    stream that breaks or ends early adds one ``decode`` failure after the frames it gave.

    A plain callable, not a step: the detection step calls it (``faces.DetectAndCrop``)
    so that decoded frames never leave the step that landmarks them.
    """

    def __init__(self, limits: VideoLimits, batch_size: int):
        self.limits = limits
        self.batch_size = batch_size

    def __call__(self, task: VideoChunk):
        record, batch = task.record, []
        failure_id = frame_id(record.content_id, task.chunk.first_slot)
        try:
            with open_video(record, max_file_bytes=self.limits.max_file_bytes) as handle:
                for frame in decode_chunk(handle, task.chunk, fps=self.limits.fps,
                                          max_pixels=self.limits.max_pixels,
                                          duration_s=task.duration_s):
                    beam.metrics.Metrics.counter("expnet", "video_frames").inc()
                    batch.append((record, frame))
                    if len(batch) == self.batch_size:
                        yield batch
                        batch = []
        except VideoDecodeError as error:
            failure = _decode_failure(record, failure_id, error.reason, str(error))
        except OSError as error:
            failure = _decode_failure(record, failure_id, "unreadable", str(error))
        else:
            failure = None
        if batch:
            yield batch
        if failure is not None:
            yield failure


class PlanVideoChunks(beam.PTransform):
    """Video records -> ``(VideoChunk``s spread over workers, failures at stage decode)``.

    The chunks are decoded where their frames are landmarked (:class:`ChunkFrames`).
    """

    def __init__(self, limits: VideoLimits, *, filesystems: dict | None = None):
        super().__init__()
        self.limits = limits
        self.filesystems = filesystems

    def expand(self, videos):
        chunks, plan_failures = (
            videos
            | "PlanChunks" >> beam.FlatMap(plan_video, limits=self.limits,
                                           filesystems=self.filesystems)
            .with_output_types(Any)
            | "SplitPlanFailures" >> SplitFailures())
        spread = (
            chunks
            # A GroupByKey on (video, chunk), not a Reshuffle: Beam's Dask runner drops
            # Reshuffles but hashes grouped keys over its partitions, so one video's chunks
            # reach different workers on every runner.
            | "KeyByChunk" >> beam.Map(lambda task: (chunk_key(task), task))
            | "SpreadChunks" >> beam.GroupByKey()
            | "ChunkTasks" >> beam.FlatMapTuple(lambda _, tasks: sorted(
                tasks, key=lambda task: task.record.uri)))
        return spread, plan_failures


def assign_tracks(faces: list) -> list:
    """The faces of one video, each with its ``track_id``, sorted by id.

    Faces are records with ``id``, ``image.video_id``, ``image.frame_index``, ``face_box``
    (4,) and ``source_landmarks`` (68, 2); they come back as copies with ``track_id`` set.
    """
    faces = sorted(faces, key=lambda face: face.id)
    numbers = link_tracks(
        np.array([face.image.frame_index for face in faces], dtype=np.int64),
        np.stack([np.asarray(face.face_box, dtype=np.float64) for face in faces]),
        np.stack([np.asarray(face.source_landmarks, dtype=np.float64).reshape(-1, 2)
                  for face in faces]))
    beam.metrics.Metrics.counter("expnet", "tracks").inc(int(numbers.max()) + 1)
    return [dataclasses.replace(face, track_id=track_id(face.image.video_id, int(number)))
            for face, number in zip(faces, numbers)]


class TrackFaces(beam.PTransform):
    """Faces of video frames -> the same faces with ``track_id`` (one group per video)."""

    def expand(self, faces):
        return (faces
                | "KeyByVideo" >> beam.Map(
                    lambda face: (content_key(face.image.video_id), face))
                | "GroupByVideo" >> beam.GroupByKey()
                | "LinkTracks" >> beam.FlatMapTuple(lambda _, group: assign_tracks(list(group))))
