"""Pixels to faces: images and video frames decoded, landmarked and cropped in one step.

``DetectAndCrop`` turns each element (a batch of source records, or a video chunk) into
``FaceRecord``s, small records of one face each whose crop waits in the run's temporary folder,
and failures at ``decode`` and ``detect``. The pixels exist only inside its one step
(``LandmarkAndCrop``): Beam's Dask runner keeps a step's outputs for a whole partition in one
list, so decoded images between steps would hold a partition's pixels in worker memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
import numpy as np

from fitting.crop import encode_jpeg, expnet_crop
from fitting.image import ImageDecodeError, decode_image
from fitting.landmarks import select_faces
from pipelines import writing
from pipelines.inference import DetectLandmarksDoFn
from pipelines.progress import PROGRESS
from pipelines.reading import SplitFailures, is_failure
from pipelines.resources import load_once, use_filesystems
from pipelines.sources import Failure
from pipelines.video import ChunkFrames, frame_id


def load_descriptor():
    """The face identity descriptor network of this process (loaded once)."""
    from fitting.landmarks.descriptor import FaceDescriptor

    return load_once(("face_descriptor",), lambda: FaceDescriptor().load())


@dataclasses.dataclass(frozen=True)
class ImageMeta:
    """An input image (or a sampled video frame) after deduplication, minus its pixels.

    A frame's ``id`` is ``<video id>-t<slot>``; ``video_id``, ``frame_index`` (the slot) and
    ``time_s`` are None for a still image.
    """

    id: str
    uri: str
    source: str
    label: str | None
    subject: str | None
    video_id: str | None = None
    frame_index: int | None = None
    time_s: float | None = None


def frame_meta(record, frame) -> ImageMeta:
    """The ``ImageMeta`` of a ``fitting.video.SampledFrame`` of a video's record."""
    return ImageMeta(frame_id(record.content_id, frame.sample_index), record.uri,
                     record.source, record.label, record.subject,
                     video_id=record.content_id, frame_index=frame.sample_index,
                     time_s=frame.time_s)


def _frame_images(batch: list) -> list:
    """``[(record, SampledFrame)]`` -> ``[(ImageMeta, image)]``, what the detector takes."""
    return [(frame_meta(record, frame), frame.image) for record, frame in batch]


@dataclasses.dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face, cropped, waiting for its fit.

    ``crop_landmarks`` and ``source_landmarks`` are (68, 2) float32, ``face_box`` (4,),
    ``descriptor`` the (128,) float32 identity descriptor or None when not computed. The
    crop's JPEG waits in the run's temporary folder (``writing.crop_name``): shuffles carry
    only these small records, which keeps memory flat in the size of the collection.
    """

    id: str
    image: ImageMeta
    crop_bytes: int
    crop_landmarks: np.ndarray
    source_landmarks: np.ndarray
    face_box: np.ndarray
    track_id: str | None = None
    descriptor: np.ndarray | None = None




DETECT_BUCKETS = 64


def detect_batches(records, *, batch_size: int):
    """Records -> lists of at most ``batch_size`` records, the detector's batches.

    Batches above one image come from a GroupByKey on hash buckets, not from Beam's
    ``BatchElements``, whose last batch of a bundle the Dask runner drops.
    """
    if batch_size == 1:
        return records | "OneImageBatches" >> beam.Map(lambda record: [record])
    return (records
            | "KeyByDetectBucket" >> beam.Map(
                lambda record: (int(record.content_id[:8], 16) % DETECT_BUCKETS, record))
            | "GroupForDetect" >> beam.GroupByKey()
            | "ChunkForDetect" >> beam.FlatMapTuple(
                lambda _, group: chunked(sorted(group, key=lambda r: r.content_id),
                                         batch_size)))


def chunked(items: list, size: int):
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class DecodeImages:
    """A batch of source records -> its ``decode`` failures, then one list of
    ``(ImageMeta, RGB image)``.

    Records whose bytes were dropped before the deduplication shuffle are read again here. A
    plain callable, not a step: the detection step calls it (:class:`DetectAndCrop`).
    """

    def __init__(self, max_pixels: int, max_file_bytes: int):
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes

    def __call__(self, records):
        decoded = []
        for record in records:
            record = record.with_data(max_file_bytes=self.max_file_bytes)
            if is_failure(record):
                yield record
                continue
            meta = ImageMeta(record.content_id, record.uri, record.source, record.label,
                             record.subject)
            try:
                decoded.append((meta, decode_image(record.data, max_pixels=self.max_pixels)))
            except ImageDecodeError as error:
                yield Failure(meta.id, meta.uri, meta.source, "decode", error.reason,
                              str(error))
        if decoded:
            yield decoded


class FrameImages:
    """A ``VideoChunk`` -> lists of ``(ImageMeta, frame image)`` and its ``decode`` failure."""

    def __init__(self, frames: ChunkFrames):
        self.frames = frames

    def __call__(self, task):
        for batch in self.frames(task):
            yield batch if is_failure(batch) else _frame_images(batch)


@beam.typehints.with_output_types(Any)
class FacesDoFn(beam.DoFn):
    """An element -> one ``FaceRecord`` per selected face, and failures: pixels are made,
    landmarked and cropped in this one step.

    ``images`` turns the element into lists of ``(ImageMeta, RGB image)`` (and failures,
    passed on); ``None`` takes the element as such a list. Pixels never leave the step: Beam's
    Dask runner keeps every output of a step's partition in one list, which for decoded
    250 x 250 images was 137 MiB a partition of 729 (RESULTS.md, "Dask shuffles, pixels and
    warm workers"). With ``describe``, each face also gets its identity descriptor, computed
    here where the source pixels still are.
    """

    def __init__(self, detector: DetectLandmarksDoFn, output: str, *, images=None,
                 policy: str, crop_size: int, jpeg_quality: int,
                 filesystems: dict | None = None, describe: bool = False):
        self.detector = detector
        self.images = images
        self.output = output
        self.policy = policy
        self.crop_size = crop_size
        self.jpeg_quality = jpeg_quality
        self.filesystems = filesystems
        self.describe = describe
        self.descriptor = None

    def setup(self):
        use_filesystems(self.filesystems)
        self.detector.setup()
        if self.describe:
            self.descriptor = load_descriptor()

    def _describe(self, image, face) -> np.ndarray | None:
        """The face's descriptor; None when off, or when the network refuses the face (the
        face then keeps its identity per image: no evidence, no pooling)."""
        if self.descriptor is None:
            return None
        try:
            values = self.descriptor.describe(image, face.landmarks, face.box)
        except (ValueError, RuntimeError):
            beam.metrics.Metrics.counter("expnet_identity", "descriptor_failed").inc()
            return None
        return values.astype(np.float32)

    def process(self, element):
        for batch in [element] if self.images is None else self.images(element):
            if is_failure(batch):
                yield batch
                continue
            for meta, image, found in self.detector.process(batch):
                yield from self._faces(meta, image, found)

    def _faces(self, meta, image, found):
        """``FaceRecord``s of the faces selected in one image, or its ``detect`` failure."""
        PROGRESS.add("images")
        faces = select_faces(found, self.policy)
        if not faces:
            reason, _, message = (found.failure or "no_face").partition(": ")
            yield Failure(meta.id, meta.uri, meta.source, "detect", reason,
                          message or "no face found")
            return
        for index, face in enumerate(faces):
            # Video faces always carry their index: ``<video id>-t<slot>-f<k>``.
            several = self.policy == "all" or meta.frame_index is not None
            face_id = f"{meta.id}-f{index}" if several else meta.id
            crop = expnet_crop(image, face.landmarks, crop_size=self.crop_size)
            jpeg = encode_jpeg(crop.image, quality=self.jpeg_quality)
            writing.write_crop(self.output, face_id, jpeg)
            yield FaceRecord(
                id=face_id, image=meta, crop_bytes=len(jpeg),
                # float32, as stored: the fit sees exactly the landmarks a reader gets.
                crop_landmarks=crop.landmarks.astype(np.float32),
                source_landmarks=face.landmarks.astype(np.float32),
                face_box=face.box, descriptor=self._describe(image, face))

    def finish_bundle(self):
        PROGRESS.flush()


class DetectAndCrop(beam.PTransform):
    """Elements -> cropped faces with landmarks; failures at ``decode`` and ``detect``.

    ``images`` (:class:`DecodeImages`, :class:`FrameImages`, or ``None`` for elements that
    are already lists of ``(ImageMeta, RGB image)``) makes each element's pixels inside the
    step; the batches are made by this pipeline (see :func:`detect_batches`).
    """

    def __init__(self, detector: DetectLandmarksDoFn, output: str, **settings):
        super().__init__()
        # The step's DoFn, made here: ``settings`` are :class:`FacesDoFn`'s keywords.
        self.faces = FacesDoFn(detector, output, **settings)

    def expand(self, elements):
        return (elements
                | "LandmarkAndCrop" >> beam.ParDo(self.faces)
                | "SplitDetectFailures" >> SplitFailures())


