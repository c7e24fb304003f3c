"""The ``SubjectsFromFaces`` transform on hand-made faces with known descriptors."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fitting.camera import euler_to_rotation
from fitting.fitter import project
from fitting.identity_clusters import ClusterSettings, cluster_id
from pipelines import writing
from pipelines.faces import FaceRecord, ImageMeta
from pipelines.identity import (
    AUTO_SUBJECT_REMOVED,
    GIVEN_SUBJECT_FITTED_ALONE,
    SubjectsFromFaces,
)
from pipelines.labelling import FitDoFn
from pipelines.sources import Failure
from schemas import rows as columns
from synth.toy_model import make_synthetic_model


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


def _landmarks_of_two_people(model, count: int) -> np.ndarray:
    """(count + 1, 68, 2) pixels: ``count`` faces of one person, then one of a very
    different shape (the opposite identity), random expression and pose, 0.5 px noise."""
    rng = np.random.default_rng(11)
    person = 2.0 * rng.standard_normal(model.identity_dim)
    identities = np.vstack([np.repeat(person[None], count, axis=0), -person[None]])
    total = count + 1
    rotation = euler_to_rotation(rng.uniform(-20, 20, total), rng.uniform(-10, 10, total),
                                 np.zeros(total))
    landmarks = project(model, 0.5 * rng.standard_normal((total, model.expression_dim)),
                        identities, rotation, np.full(total, 1.3),
                        rng.uniform(200, 300, (total, 2)))
    return landmarks + rng.normal(0.0, 0.5, landmarks.shape)


def _fit_group(tmp_path, subject: str, *, check_subjects: bool):
    """Fit one pooled group of 7 faces (the last a stranger) with FitDoFn; ``(pending rows,
    parked rows)``."""
    model = make_synthetic_model(seed=0)
    faces = [dataclasses.replace(_face(f"p{index}", "one", None, subject=subject),
                                 crop_landmarks=points.astype(np.float32))
             for index, points in enumerate(_landmarks_of_two_people(model, 6))]
    fit = FitDoFn(str(tmp_path), "synthetic", model.content_hash, "dlib",
                  check_subjects=check_subjects)
    fit.model = model  # what setup() would load for a model file of this model
    results = list(fit.process((True, faces)))
    assert not [result for result in results if isinstance(result, Failure)]
    pending = [row for _, row in results]
    return pending, [writing.read_row(str(tmp_path), row.id) for row in pending]


def test_the_check_notes_an_auto_subject_it_takes_off_a_face(tmp_path):
    pending, rows = _fit_group(tmp_path, "auto:0123456789abcdef", check_subjects=False)
    # The stranger's row has no subject, like a face no cluster held; its note says why.
    assert [row.check_note for row in pending] == [None] * 6 + [AUTO_SUBJECT_REMOVED]
    assert [row[columns.SUBJECT] for row in rows] == ["auto:0123456789abcdef"] * 6 + [None]


def test_the_check_notes_a_given_subject_kept_on_a_face_fitted_alone(tmp_path):
    pending, rows = _fit_group(tmp_path, "alice", check_subjects=True)
    assert [row.check_note for row in pending] == [None] * 6 + [GIVEN_SUBJECT_FITTED_ALONE]
    assert all(row[columns.SUBJECT] == "alice" for row in rows)
    # Without --check-subjects a given subject is pooled as it is, and nothing is noted.
    unchecked, _ = _fit_group(tmp_path / "plain", "alice", check_subjects=False)
    assert [row.check_note for row in unchecked] == [None] * 7


def test_the_summary_prints_the_check_counts_that_are_not_zero(tmp_path):
    from pipelines.accounting import summarise
    from pipelines.summary import format_summary

    counts = {("source", "/in", "inputs"): 3, ("source", "/in", "written"): 3,
              ("rows", "", ""): 3, ("identity_check", AUTO_SUBJECT_REMOVED, ""): 2}
    stats = {**summarise(counts), "manifest": {"shards": []}}
    lines = format_summary(stats, str(tmp_path)).splitlines()
    assert "  identity check, auto subject removed: 2" in lines
    assert not [line for line in lines if "given subject" in line]
    # stats.json of a run before these counts: no identity check line, no error.
    del stats["identity_check"]
    assert "identity check" not in format_summary(stats, str(tmp_path))
