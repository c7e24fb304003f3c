"""Each transform of the labelling chain on its own, in a ``TestPipeline``.

Detection runs a fake landmark handler that returns known landmarks, so the crop and the fit
are checked against ground truth without a detector in the loop.
"""

from __future__ import annotations

import shutil

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from threadpoolctl import threadpool_limits

from fitting.camera import euler_to_rotation
from fitting.crop import expnet_crop
from fitting.fitter import fit_landmarks, project
from fitting.landmarks import Face, ImageFaces
from fitting.models import load_model
from fitting.noise import NOISE_PROFILES, landmark_weights
from pipelines import generate, writing
from pipelines.accounting import CountOutcomes, summarise
from pipelines.faces import DetectAndCrop, FaceRecord, ImageMeta
from pipelines.inference import DetectLandmarksDoFn
from pipelines.labelling import FitDoFn, FitMorphableModel
from pipelines.reading import Deduplicate, ReadSources
from pipelines.resources import one_blas_thread
from pipelines.sources import Failure, Naming
from schemas import DatasetMetadata
from schemas.layout import shard_name, shard_of
from tests.pipelines.conftest import EXAMPLES, FACE_PHOTOS, run_generate
from tests.pipelines.test_reliability import dataset_bytes

IMAGE_SIZE = 320


@pytest.fixture(scope="module")
def model():
    return load_model("open")


def _truth(model, count: int, seed: int, *, identity=None) -> dict:
    """Known faces about 150 px wide in a ``IMAGE_SIZE`` image: pose, identity, expression."""
    rng = np.random.default_rng(seed)
    if identity is None:
        identity = rng.standard_normal((count, model.identity_dim))
    return {
        "expression": rng.standard_normal((count, model.expression_dim)),
        "identity": identity,
        "rotation": euler_to_rotation(rng.uniform(-20, 20, count), rng.uniform(-10, 10, count),
                                      rng.uniform(-5, 5, count)),
        "scale": rng.uniform(0.95, 1.05, count),
        "translation": rng.uniform(150.0, 170.0, (count, 2)),
    }


def _landmarks(model, truth: dict) -> np.ndarray:
    return project(model, truth["expression"], truth["identity"], truth["rotation"],
                   truth["scale"], truth["translation"])


class FakeLandmarker:
    """Returns the landmarks of the image whose first pixel holds their index (255: none)."""

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks

    def detect_batch(self, images):
        found = []
        for image in images:
            index = int(image[0, 0, 0])
            size = (image.shape[1], image.shape[0])
            if index == 255:
                found.append(ImageFaces(faces=(), image_size=size))
                continue
            points = self.landmarks[index]
            box = np.concatenate([points.min(axis=0), points.max(axis=0)])
            found.append(ImageFaces(faces=(Face(box=box, score=1.0, landmarks=points),),
                                    image_size=size))
        return found


class FakeDetectDoFn(DetectLandmarksDoFn):
    """``DetectLandmarksDoFn`` with the fake handler in place of a loaded backend."""

    def __init__(self, landmarks: np.ndarray):
        super().__init__("dlib")
        self.landmarks = landmarks

    def setup(self):
        self.model = FakeLandmarker(self.landmarks)


def _image(index: int) -> np.ndarray:
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 90, dtype=np.uint8)
    image[0, 0, 0] = index
    return image


def _meta(name: str, subject: str | None = None) -> ImageMeta:
    return ImageMeta(id=f"{name:0>64}", uri=f"/faces/{name}.png", source="/faces",
                     label=None, subject=subject)


def test_read_sources_and_deduplicate(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in FACE_PHOTOS[:2]:
        shutil.copy(EXAMPLES / name, folder / name)
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], folder / "zz-copy.png")
    (folder / "empty.jpg").write_bytes(b"")  # read fine; decoding fails later
    source, nothing = str(folder), str(tmp_path / "missing" / "*.png")
    with BeamTestPipeline() as pipeline:
        records, failures = (pipeline
                             | beam.Create([source, nothing])
                             | ReadSources(naming=Naming(), max_file_bytes=1 << 26))
        survivors, duplicates, existing = records | Deduplicate()
        assert_that(survivors | "Names" >> beam.Map(lambda r: r.uri.rsplit("/", 1)[1]),
                    equal_to([*FACE_PHOTOS[:2], "empty.jpg"]), label="survivors")
        assert_that(duplicates, equal_to([(source, str(folder / "zz-copy.png"))]),
                    label="duplicates")
        assert_that(existing, equal_to([]), label="existing")
        assert_that(failures | "Where" >> beam.Map(lambda f: (f.source, f.stage, f.reason)),
                    equal_to([(nothing, "read", "no_match")]), label="failures")


def test_detect_and_crop_with_a_fake_landmarker(model, tmp_path):
    landmarks = _landmarks(model, _truth(model, 3, seed=1))
    images = [(_meta(f"face{index}"), _image(index)) for index in range(3)]
    batches = [images[:2], [*images[2:], (_meta("blank"), _image(255))]]
    output = str(tmp_path)
    with BeamTestPipeline() as pipeline:
        faces, failures = (pipeline
                           | beam.Create(batches, reshuffle=False)
                           | DetectAndCrop(FakeDetectDoFn(landmarks), output, policy="largest",
                                           crop_size=224, jpeg_quality=95))
        assert_that(faces | "Check" >> beam.Map(_crop_error, landmarks),
                    equal_to([(_meta(f"face{index}").id, 0.0) for index in range(3)]),
                    label="faces")
        assert_that(failures | "Reasons" >> beam.Map(lambda f: (f.id, f.stage, f.reason)),
                    equal_to([(_meta("blank").id, "detect", "no_face")]), label="failures")
    for index in range(3):
        assert (tmp_path / writing.crop_name(_meta(f"face{index}").id)).stat().st_size > 1000


def _crop_error(face: FaceRecord, landmarks: np.ndarray) -> tuple:
    """``(id, largest error)`` of a face's stored landmarks against the crop of the truth."""
    index = int(face.image.uri.rsplit("face", 1)[1].split(".")[0])
    expected = expnet_crop(_image(index), landmarks[index], crop_size=224).landmarks
    error = float(np.abs(face.crop_landmarks - expected.astype(np.float32)).max())
    source_error = float(np.abs(face.source_landmarks - landmarks[index]).max())
    return face.id, round(max(error, source_error), 3)


def _records(model, tmp_path, truth: dict, subjects: list) -> list:
    """FaceRecords with known crop landmarks, their crops parked as the pipeline parks them."""
    landmarks = _landmarks(model, truth).astype(np.float32)
    records = []
    for index, subject in enumerate(subjects):
        meta = _meta(f"fit{index}", subject)
        writing.write_crop(str(tmp_path), meta.id, b"jpeg bytes")
        records.append(FaceRecord(id=meta.id, image=meta, crop_bytes=10,
                                  crop_landmarks=landmarks[index],
                                  source_landmarks=landmarks[index],
                                  face_box=np.zeros(4, np.float32)))
    return records


def _fit(pipeline, records: list, model, output: str):
    """``(fitted, failures)`` of ``FitMorphableModel`` with the open model and dlib's weights."""
    return (pipeline
            | beam.Create(records)
            | FitMorphableModel(output, "open", model.content_hash, "dlib",
                                subject_chunk_size=256))


def test_fit_morphable_model_recovers_known_expressions_and_pools_subjects(model, tmp_path):
    count = 12
    identity = np.random.default_rng(7).standard_normal((count, model.identity_dim))
    identity[:6] = identity[0]          # faces 0..5 are one person
    truth = _truth(model, count, seed=2, identity=identity)
    subjects = ["ann"] * 6 + [None] * 6
    records = _records(model, tmp_path, truth, subjects)
    output = str(tmp_path)
    with BeamTestPipeline() as pipeline:
        fitted, failures = _fit(pipeline, records, model, output)
        assert_that(failures, equal_to([]), label="no failures")
        assert_that(fitted | "Ids" >> beam.MapTuple(lambda source, pending: pending.id),
                    equal_to([record.id for record in records]), label="one row per face")
    rows = {record.id: writing.read_row(output, record.id) for record in records}
    # Exactly the fitter's answer on the same landmarks: one identity for ann, one per face
    # for the others, weighted by the dlib noise profile.
    for group, subject_ids in ((records[:6], ["ann"] * 6), (records[6:], None)):
        landmarks = np.stack([record.crop_landmarks for record in group]).astype(np.float64)
        with one_blas_thread():  # as the step fits
            direct = fit_landmarks(model, landmarks, subject_ids=subject_ids,
                                   landmark_weights=landmark_weights(NOISE_PROFILES["dlib"],
                                                                     len(group)))
        for index, record in enumerate(group):
            row = rows[record.id]
            assert np.array_equal(row["expression"], direct.expression[index].astype(np.float32))
            assert np.array_equal(row["identity"], direct.identity[index].astype(np.float32))
            assert row["fit_residual"] == np.float32(direct.residual[index])
    # The fit reproduces the known faces' landmarks, and pooled faces share one identity.
    assert max(row["fit_residual"] for row in rows.values()) < 2.0
    pooled = [rows[record.id]["identity"] for record in records[:6]]
    assert all(np.array_equal(pooled[0], other) for other in pooled[1:])
    assert not np.array_equal(rows[records[6].id]["identity"], rows[records[7].id]["identity"])


def test_the_fit_runs_on_one_blas_thread_whatever_the_process_has(model, tmp_path,
                                                                   monkeypatch):
    # OpenBLAS splits large products over its threads and the split changes the rounding: a
    # pooled fit of 120 noisy faces gives other float64 values on one thread than on two, and
    # 12 000 video frames gave other shard bytes (RESULTS.md, "Threads per worker").
    from threadpoolctl import threadpool_info

    import fitting.fitter

    seen, real_fit = [], fitting.fitter.fit_landmarks

    def recording_fit(*args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpool_info()
                    if pool["user_api"] == "blas")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(fitting.fitter, "fit_landmarks", recording_fit)
    truth = _truth(model, 6, seed=4)
    records = _records(model, tmp_path, truth, ["one"] * 6)
    fit = FitDoFn(str(tmp_path), "open", model.content_hash, "dlib")
    fit.setup()
    with threadpool_limits(limits=2, user_api="blas"):
        rows = list(fit.process((True, records)))
    assert len(rows) == 6
    assert seen and set(seen) == {1}


def test_write_shards_places_sorted_rows_in_named_shards(model, tmp_path):
    truth = _truth(model, 10, seed=3)
    records = _records(model, tmp_path, truth, [None] * 10)
    metadata = DatasetMetadata(
        model_id=model.model_id, model_hash=model.content_hash,
        expression_std=tuple(float(value) for value in model.expression_std),
        landmarker="dlib", landmarker_version="test", pipeline_version="test",
        blendshape_names=model.blendshape_names)
    output = str(tmp_path)
    with BeamTestPipeline() as pipeline:
        fitted, _ = _fit(pipeline, records, model, output)
        entries = (fitted
                   | beam.Values()
                   | writing.WriteShards(output, metadata, num_shards=3))
        assert_that(entries | beam.Map(lambda entry: entry["name"]),
                    equal_to([shard_name(index, 3) for index in range(3)]))
    seen = []
    for index in range(3):
        table = pq.read_table(tmp_path / shard_name(index, 3))
        ids = table.column("id").to_pylist()
        assert ids == sorted(ids)
        assert all(shard_of(row_id, 3) == index for row_id in ids)
        assert set(table.column("image").combine_chunks().field("bytes").to_pylist()) <= {
            b"jpeg bytes"}
        seen.extend(ids)
    assert sorted(seen) == sorted(record.id for record in records)
    # Written rows take their parked crops and rows with them.
    assert not list((tmp_path / writing.CROPS_DIR).iterdir())


def test_count_outcomes_takes_the_best_outcome_of_each_image():
    failure = Failure("bbb-f1", "/in/b.png", "/in", "fit", "diverged")
    with BeamTestPipeline() as pipeline:
        parts = {
            "inputs": pipeline | "Inputs" >> beam.Create(["/in"] * 3),  # a, b, c (x counts as read)
            "read_failures": pipeline | "ReadFailures" >> beam.Create(
                [Failure("uri-x", "/in/x.jpg", "/in", "read", "empty")]),
            "duplicates": pipeline | "Duplicates" >> beam.Create([("/in", "/in/c.png")]),
            "existing": pipeline | "Existing" >> beam.Create([]),
            # b.png has two faces: one failed, one written; a.png one face, written.
            "failures": pipeline | "Failures" >> beam.Create([failure]),
            "written": pipeline | "Written" >> beam.Create([("/in", "aaa"), ("/in", "bbb-f0")]),
            # bbb-f0's auto: subject was taken off by the identity check.
            "check_notes": pipeline | "CheckNotes" >> beam.Create(["auto_subject_removed"]),
        }
        counts = parts | CountOutcomes()
        assert_that(counts | beam.Map(summarise) | beam.Map(
            lambda stats: (stats["inputs"], stats["written"], stats["failed"],
                           stats["duplicates"], stats["rows"], stats["invariant"]["holds"],
                           stats["failures_by_reason"], stats["identity_check"])),
            equal_to([(4, 2, 1, 1, 2, True, {"fit/diverged": 1, "read/empty": 1},
                       {"auto_subject_removed": 1, "given_subject_fitted_alone": 0})]))


def test_run_builds_the_job_into_a_given_test_pipeline(folder_run, photo_folder, tmp_path):
    reference, reference_stats = folder_run
    argv = ["--input", str(photo_folder), "--output", str(tmp_path), "--label-from-parent",
            "--quiet"]
    stats = generate.run(argv, test_pipeline=BeamTestPipeline())
    assert stats["invariant"]["holds"]
    assert {key: stats[key] for key in ("inputs", "written", "failed", "duplicates")} == {
        key: reference_stats[key] for key in ("inputs", "written", "failed", "duplicates")}
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)
    # A second run of the same command into the test pipeline's output changes nothing.
    assert run_generate([photo_folder], tmp_path, "--label-from-parent") == stats
