"""The labelling chain of ``expnet generate`` as composite transforms.

Input items -> read -> deduplicate -> decode, detect landmarks and crop (images; videos as
sampled frames; ``pipelines.faces``, ``pipelines.video``) -> link video faces into tracks -> fit the
morphable model -> ``(source, PendingRow)`` per face, with failures as data at every stage
(:class:`LabelFaces`). Crops and fitted rows are written in one named step each
(``LandmarkAndCrop``, ``FitMorphableModel``); the shard writer reads them back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np

from fitting.identity_clusters import ClusterSettings
from pipelines import writing
from pipelines.allocator import release_free_heap
from pipelines.faces import (
    DecodeImages,
    DetectAndCrop,
    FaceRecord,
    FrameImages,
    chunked,
    detect_batches,
)
from pipelines.identity import (
    AUTO_SUBJECT_REMOVED,
    GIVEN_SUBJECT_FITTED_ALONE,
    SubjectsFromFaces,
    is_automatic,
)
from pipelines.inference import DetectLandmarksDoFn
from pipelines.progress import PROGRESS
from pipelines.reading import Deduplicate, ReadSources, SplitFailures, text_key
from pipelines.resources import (
    filesystem_options,
    load_once,
    one_blas_thread,
    use_filesystems,
)
from pipelines.sources import Failure, Naming
from pipelines.video import (
    ChunkFrames,
    PlanVideoChunks,
    TrackFaces,
    VideoLimits,
    is_video_record,
)
from schemas import rows as columns

if TYPE_CHECKING:
    from pipelines.generate import GenerateOptions

FIT_BATCH_SIZE = 256


def load_worker_model(spec: str):
    """The morphable model ``spec`` of this process (loaded once)."""
    from fitting.models import load_model

    return load_once(("model", spec), lambda: load_model(spec))



def pool_id(face: FaceRecord) -> str | None:
    """Whose identity a face shares: its subject when given, else its video track."""
    return face.image.subject or face.track_id




@beam.typehints.with_output_types(Any)
class FitDoFn(beam.DoFn):
    """``(pooled, faces)`` -> ``(source, PendingRow)`` per fitted face, or ``fit`` failures.

    The row itself is parked beside the face's crop in ``output``'s temporary folder.

    The faces share one identity when ``pooled`` (they are one subject's, or one track's). A
    pooled group of ``auto:`` subjects, or of given subjects with ``check_subjects``, is checked
    against the fit (:func:`fitting.identity_check.fit_with_identity_check`): faces the shared
    identity does not fit are fitted alone, and an ``auto:`` subject is taken off such faces'
    rows. Their ``PendingRow.check_note`` says so, for the run's counts.
    """

    def __init__(self, output: str, model_spec: str, model_hash: str, landmarker: str,
                 filesystems: dict | None = None, *, check_subjects: bool = False):
        self.output = output
        self.model_spec = model_spec
        self.model_hash = model_hash
        self.landmarker = landmarker
        self.filesystems = filesystems
        self.check_subjects = check_subjects
        self.model = None

    def setup(self):
        use_filesystems(self.filesystems)
        self.model = load_worker_model(self.model_spec)
        if self.model.content_hash != self.model_hash:
            raise RuntimeError(f"model {self.model_spec!r} on this worker differs from the "
                               "one the pipeline was launched with")

    def process(self, element):
        from fitting.fitter import fit_landmarks
        from fitting.noise import NOISE_PROFILES, landmark_weights

        pooled, faces = element
        landmarks = np.stack([face.crop_landmarks for face in faces]).astype(np.float64)
        subject_ids = [pool_id(face) for face in faces] if pooled else None
        # Each point weighted by the inverse of the landmarker's measured noise variance, with
        # the fitter's unit priors: the MAP fit (fitting/noise.py; the profile is from
        # studies/landmark_noise.py, RESULTS.md "Landmark noise profile").
        weights = landmark_weights(NOISE_PROFILES[self.landmarker], len(faces))
        notes = [None] * len(faces)
        with one_blas_thread():
            if pooled and self._checked(faces):
                fit, faces, notes = self._fit_checked(landmarks, subject_ids, weights, faces)
            else:
                fit = fit_landmarks(self.model, landmarks, subject_ids=subject_ids,
                                    landmark_weights=weights)
        for index, face in enumerate(faces):
            if fit.failure[index] is not None:
                yield Failure(face.id, face.image.uri, face.image.source, "fit",
                              fit.failure[index], "the morphable-model fit failed")
                continue
            beam.metrics.Metrics.counter("expnet", "rows").inc()
            PROGRESS.add("rows")
            row = to_row(face, fit, index, landmarker=self.landmarker,
                         model_id=self.model.model_id)
            yield face.image.source, writing.park_row(self.output, row, face.crop_bytes,
                                                      check_note=notes[index])

    def finish_bundle(self):
        PROGRESS.flush()
        release_free_heap()  # the fits' temporaries, freed between live blocks

    def _checked(self, faces) -> bool:
        return self.check_subjects or is_automatic(faces[0].image.subject)

    def _fit_checked(self, landmarks, subject_ids, weights, faces):
        """The checked fit, the faces with ``auto:`` subjects taken off faces left alone, and
        each face's check note (``pipelines.identity.CHECK_NOTES``, or None)."""
        from fitting.identity_check import fit_with_identity_check

        checked = fit_with_identity_check(self.model, landmarks, subject_ids=subject_ids,
                                          landmark_weights=weights)
        notes = [_check_note(face, pooled, taken_out)
                 for face, pooled, taken_out in zip(faces, checked.pooled, checked.taken_out)]
        faces = [face if note != AUTO_SUBJECT_REMOVED
                 else dataclasses.replace(face, image=dataclasses.replace(face.image,
                                                                          subject=None))
                 for face, note in zip(faces, notes)]
        return checked.fit, faces, notes


def _check_note(face: FaceRecord, pooled: bool, taken_out: bool) -> str | None:
    """What the identity check did to a face that its row will not say."""
    if is_automatic(face.image.subject):
        return None if pooled else AUTO_SUBJECT_REMOVED
    return GIVEN_SUBJECT_FITTED_ALONE if taken_out else None


def _floats(values) -> np.ndarray:
    # Compact float32 arrays while rows wait in shuffles; lists only when the shard is built.
    return np.asarray(values, dtype=np.float32).ravel()


def to_row(face: FaceRecord, fit, index: int, *, landmarker: str, model_id: str) -> dict:
    """The schema row of face ``index`` of a ``FitBatch``: float32 at this boundary.

    The image bytes stay ``None`` until the shard is written (``writing.WriteShardDoFn``).
    """
    return {
        columns.ID: face.id,
        columns.SOURCE_URI: face.image.uri,
        columns.IMAGE: {"bytes": None, "path": f"{face.id}.jpg"},
        columns.LABEL: face.image.label,
        columns.SUBJECT: face.image.subject,
        columns.EXPRESSION: _floats(fit.expression[index]),
        columns.IDENTITY: _floats(fit.identity[index]),
        columns.ROTATION: _floats(fit.rotation[index]),
        columns.YAW: float(np.float32(fit.yaw[index])),
        columns.PITCH: float(np.float32(fit.pitch[index])),
        columns.ROLL: float(np.float32(fit.roll[index])),
        columns.SCALE: float(np.float32(fit.scale[index])),
        columns.TRANSLATION: _floats(fit.translation[index]),
        columns.LANDMARKS: _floats(face.crop_landmarks),
        columns.SOURCE_LANDMARKS: _floats(face.source_landmarks),
        columns.FACE_BOX: _floats(face.face_box),
        columns.FIT_RESIDUAL: float(np.float32(fit.residual[index])),
        columns.LANDMARKER: landmarker,
        columns.MODEL_ID: model_id,
        columns.BLENDSHAPES: None if fit.blendshapes is None else _floats(fit.blendshapes[index]),
        columns.FRAME_INDEX: face.image.frame_index,
        columns.TIME_S: face.image.time_s,
        columns.TRACK_ID: face.track_id,
        columns.FACE_DESCRIPTOR: None if face.descriptor is None else _floats(face.descriptor),
    }


FIT_BUCKETS = 64
SUBJECT_GROUP, BUCKET_GROUP = 1, 0


def fit_group(face: FaceRecord) -> tuple:
    """The fit group of a face: its subject (or video track), or one of ``FIT_BUCKETS`` hash
    buckets."""
    pool = pool_id(face)
    if pool:
        # Ints, never the subject's str: those hash differently in each worker process.
        return (SUBJECT_GROUP, *text_key(pool))
    return (BUCKET_GROUP, int(face.id[:8], 16) % FIT_BUCKETS)


def _fit_chunks(element, *, subject_chunk_size: int):
    """A group's faces sorted by id, in chunks: ``(pooled, faces)``."""
    (kind, *_), faces = element
    faces = sorted(faces, key=lambda face: face.id)
    size = subject_chunk_size if kind == SUBJECT_GROUP else FIT_BATCH_SIZE
    for chunk in chunked(faces, size):
        yield kind == SUBJECT_GROUP, chunk


class FitMorphableModel(beam.PTransform):
    """Faces -> ``(source, PendingRow)``; identity pooled per subject where subjects are known,
    else per video face track.

    Fitted rows are parked in ``output``'s temporary folder (``writing.park_row``).

    Faces are grouped (a GroupByKey) by subject, or by a hash bucket when they have none, and
    fitted in chunks sorted by id: a subject's faces share one identity (large subjects are
    split into chunks of ``subject_chunk_size``), bucketed faces get one each. Batches are
    thus the same on every runner and every run, and so are the float results; Beam's
    ``BatchElements`` would lose its last batch on the Dask runner.
    """

    def __init__(self, output: str, model_spec: str, model_hash: str, landmarker: str, *,
                 subject_chunk_size: int, filesystems: dict | None = None,
                 check_subjects: bool = False):
        super().__init__()
        self.output = output
        self.model_spec = model_spec
        self.model_hash = model_hash
        self.landmarker = landmarker
        self.subject_chunk_size = subject_chunk_size
        self.filesystems = filesystems
        self.check_subjects = check_subjects

    def expand(self, faces):
        return (faces
                | "KeyByFitGroup" >> beam.Map(lambda face: (fit_group(face), face))
                | "GroupForFit" >> beam.GroupByKey()
                | "ChunkGroups" >> beam.FlatMap(_fit_chunks,
                                                subject_chunk_size=self.subject_chunk_size)
                | "FitMorphableModel" >> beam.ParDo(FitDoFn(
                    self.output, self.model_spec, self.model_hash, self.landmarker,
                    self.filesystems, check_subjects=self.check_subjects))
                | "SplitFitFailures" >> SplitFailures())


class LabelFaces(beam.PTransform):
    """Input specs -> ``(rows, failures, duplicates, inputs)``: the whole labelling chain."""

    def __init__(self, options: GenerateOptions, model_hash: str, known_ids=None, *,
                 videos: bool = True):
        super().__init__()
        self.options = options
        self.model_hash = model_hash
        self.known_ids = known_ids
        # Without videos the graph has no video branch (and a run holds less in memory).
        self.videos = videos

    def expand(self, specs):
        opts = self.options
        filesystems = filesystem_options(opts)
        records, read_failures = specs | "Read" >> ReadSources(
            naming=naming(opts), max_file_bytes=opts.max_file_bytes, filesystems=filesystems)
        survivors, duplicates, existing = records | "Deduplicate" >> Deduplicate(
            self.known_ids)
        detector = DetectLandmarksDoFn(opts.landmarker, landmarker_options(opts))
        stills = survivors
        if self.videos:
            stills = survivors | "Stills" >> beam.Filter(
                lambda record: not is_video_record(record))
        detect = functools.partial(
            DetectAndCrop, detector, opts.output.rstrip("/"), policy=opts.faces,
            crop_size=opts.crop_size, jpeg_quality=opts.jpeg_quality, filesystems=filesystems,
            describe=describes_faces(opts))
        faces, detect_failures = (
            detect_batches(stills, batch_size=detector.batch_size)
            | "Detect" >> detect(images=DecodeImages(opts.max_pixels, opts.max_file_bytes)))
        failures = [detect_failures]
        if self.videos:
            # Frames get a detection step of their own: flattened with the images before
            # detection, Beam's multi-process DirectRunner lost 35 % of 12 000 faces
            # (RESULTS.md, "Scaling"). Faces, small records, meet after it.
            limits = video_limits(opts)
            chunks, plan_failures = (
                survivors
                | "Videos" >> beam.Filter(is_video_record)
                | "Video" >> PlanVideoChunks(limits, filesystems=filesystems))
            video_faces, frame_failures = chunks | "DetectFrames" >> detect(
                images=FrameImages(ChunkFrames(limits, batch_size=detector.batch_size)))
            tracked = video_faces | "Track" >> TrackFaces()
            faces = (faces, tracked) | "AllFaces" >> beam.Flatten()
            failures += [plan_failures, frame_failures]
        if opts.subject_from_faces:
            faces = faces | "SubjectsFromFaces" >> SubjectsFromFaces(
                cluster_settings(opts), bucket_bits=opts.identity_bucket_bits)
        fitted, fit_failures = faces | "Fit" >> FitMorphableModel(
            opts.output.rstrip("/"), opts.model, self.model_hash, opts.landmarker,
            subject_chunk_size=opts.subject_chunk_size, filesystems=filesystems,
            check_subjects=opts.check_subjects)
        failures = ((*failures, fit_failures) | "LabelFailures" >> beam.Flatten())
        inputs = records | "InputSources" >> beam.Map(lambda record: record.source)
        return {"rows": fitted, "failures": failures, "read_failures": read_failures,
                "duplicates": duplicates, "existing": existing, "inputs": inputs}


def naming(options: GenerateOptions) -> Naming:
    """How images from folders, globs and archives get labels and subjects from their paths."""
    return Naming(label_from_parent=options.label_from_parent,
                  subject_from_parent=options.subject_from_parent,
                  subject_pattern=options.subject_pattern)


def video_limits(options: GenerateOptions) -> VideoLimits:
    """How videos are sampled and refused, from the ``--video-*`` and ``--max-*`` flags."""
    return VideoLimits(fps=options.video_fps, chunk_seconds=options.video_chunk_seconds,
                       max_frames=options.max_frames_per_video,
                       max_seconds=options.max_video_seconds, max_pixels=options.max_pixels,
                       max_file_bytes=options.max_file_bytes)


def describes_faces(options: GenerateOptions) -> bool:
    """Whether faces get identity descriptors: asked for, or needed for pseudo-subjects."""
    return options.face_descriptors or options.subject_from_faces


def cluster_settings(options: GenerateOptions) -> ClusterSettings:
    return ClusterSettings(threshold=options.identity_threshold,
                           max_diameter=options.identity_max_diameter,
                           max_cluster_size=options.identity_max_cluster,
                           min_separation=options.identity_min_separation)


def landmarker_options(options: GenerateOptions) -> dict:
    if options.landmarker == "fan" and options.landmarker_weights:
        return {"weights_path": options.landmarker_weights}
    return {}
