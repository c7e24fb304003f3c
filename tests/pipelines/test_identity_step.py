"""The ``SubjectsFromFaces`` transform on hand-made faces with known descriptors."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fitting.identity_clusters import ClusterSettings, cluster_id
from pipelines.identity import SubjectsFromFaces
from pipelines.labelling import FaceRecord, ImageMeta


def _face(name: str, folder: str, descriptor, subject=None, track=None) -> FaceRecord:
    meta = ImageMeta(id=f"id-{name}", uri=f"/data/{folder}/{name}.jpg", source="/data",
                     label=None, subject=subject)
    return FaceRecord(id=f"id-{name}", image=meta, crop_bytes=0,
                      crop_landmarks=np.zeros((68, 2), np.float32),
                      source_landmarks=np.zeros((68, 2), np.float32),
                      face_box=np.zeros(4, np.float32),
                      descriptor=None if descriptor is None else np.asarray(descriptor,
                                                                            np.float32),
                      track_id=track)


def _point(axis: int, offset: float = 0.0) -> np.ndarray:
    vector = np.zeros(128)
    vector[axis] = 1.0 + offset
    return vector


FACES = [
    _face("a1", "one", _point(0)), _face("a2", "one", _point(0, 0.1)),
    _face("b1", "one", _point(1)), _face("b2", "one", _point(1, 0.05)),
    _face("c1", "one", _point(2)),                                   # alone: no subject
    _face("a3", "two", _point(0, 0.05)),                             # another folder
    _face("given", "one", _point(0, 0.02), subject="alice"),         # given: untouched
    _face("blind", "one", None),                                     # no descriptor
    _face("tracked", "one", _point(1, 0.02), track="video-track-0"),  # pooled by its track
]


def test_faces_get_auto_subjects_per_folder_and_given_ones_stay():
    a = "auto:" + cluster_id(["id-a1", "id-a2"])
    b = "auto:" + cluster_id(["id-b1", "id-b2"])
    expected = [("id-a1", a), ("id-a2", a), ("id-b1", b), ("id-b2", b), ("id-c1", None),
                ("id-a3", None), ("id-given", "alice"), ("id-blind", None),
                ("id-tracked", None)]
    with TestPipeline() as pipeline:
        subjects = (pipeline
                    | beam.Create(FACES)
                    | SubjectsFromFaces(ClusterSettings())
                    | beam.Map(lambda face: (face.id, face.image.subject)))
        assert_that(subjects, equal_to(expected), label="SubjectsByFace")


def test_identity_flags_are_validated_before_anything_runs():
    from pipelines.generate import GenerateOptions, validate_options

    def problems(*flags):
        return validate_options(GenerateOptions(["--input", "x", "--output", "y", *flags]))

    assert problems("--subject-from-faces") == []
    assert problems("--identity-threshold", "0.7") == [
        "need 0 < --identity-threshold <= --identity-max-diameter, got 0.7 and 0.5"]
    assert problems("--identity-max-cluster", "1") == ["--identity-max-cluster must be >= 2, got 1"]
    assert problems("--identity-min-separation", "-1") == [
        "--identity-min-separation must be >= 0, got -1.0"]
    assert problems("--identity-bucket-bits", "17") == [
        "--identity-bucket-bits must be in 0..16, got 17"]
