"""`expnet generate` end to end on real photos: folder, archive and manifest inputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fitting.fitter import fit_landmarks
from fitting.image import decode_image
from fitting.landmarks.dlib_backend import DlibLandmarker
from fitting.models import load_model
from fitting.noise import NOISE_PROFILES, landmark_weights
from pipelines import generate
from pipelines.generate import OptionsError
from pipelines.output_state import DatasetStateError
from schemas import ROW_SCHEMA, DatasetMetadata, table_problems
from schemas import rows as columns
from tests.pipelines.conftest import EXAMPLES, FACE_PHOTOS, run_generate


def read_rows(output):
    tables = [pq.read_table(path) for path in sorted(output.glob("part-*.parquet"))]
    return tables, [row for table in tables for row in table.to_pylist()]


def read_failures(output):
    return pq.read_table(output / "failures" / "part-00000-of-00001.parquet").to_pylist()


def test_accounting_of_a_folder_with_broken_files(folder_run):
    output, stats = folder_run
    # 3 faces + coffee + copy + empty + text + truncated.
    assert stats["inputs"] == 8
    assert (stats["written"], stats["failed"], stats["duplicates"]) == (3, 4, 1)
    assert stats["invariant"]["holds"]
    assert stats["failures_by_reason"] == {
        "decode/empty_file": 1, "decode/not_an_image": 1, "decode/truncated": 1,
        "detect/no_face": 1}
    failures = read_failures(output)
    assert sorted(row[columns.SOURCE_URI].rsplit("/", 1)[-1] for row in failures) == [
        "coffee.png", "empty.jpg", "text.jpg", "truncated.jpg"]
    assert all(row[columns.REASON] and row[columns.STAGE] for row in failures)
    assert json.loads((output / "stats.json").read_text())["written"] == 3
    assert not (output / "_temporary").exists()


def test_rows_follow_the_schema_and_carry_values(folder_run, photo_folder):
    output, _ = folder_run
    tables, rows = read_rows(output)
    for table in tables:
        assert table_problems(table) == []
        assert table.schema.remove_metadata().equals(ROW_SCHEMA)
    metadata = DatasetMetadata.from_arrow(tables[0].schema.metadata)
    model = load_model("open")
    assert (metadata.model_hash, metadata.landmarker) == (model.content_hash, "dlib")
    assert len(metadata.expression_std) == 29
    assert {row[columns.LABEL] for row in rows} == {"happy", "neutral", "sad"}
    # The duplicate copy loses to the smaller URI.
    assert not any(row[columns.SOURCE_URI].endswith("zz-copy.png") for row in rows)
    for row in rows:
        crop = decode_image(row[columns.IMAGE]["bytes"])
        assert crop.shape == (224, 224, 3)
        crop_points = np.reshape(row[columns.LANDMARKS], (68, 2))
        assert np.all((crop_points > 0) & (crop_points < 224))
        assert np.linalg.norm(np.reshape(row[columns.ROTATION], (3, 3)) @ np.reshape(
            row[columns.ROTATION], (3, 3)).T - np.eye(3)) < 1e-4
        assert 0 < row[columns.FIT_RESIDUAL] < 0.2


def test_landmarks_and_labels_equal_the_library_on_the_same_photo(folder_run, photo_folder):
    """The pipeline's row for a photo is what dlib and the fitter give on that photo."""
    output, _ = folder_run
    _, rows = read_rows(output)
    row = next(row for row in rows if row[columns.SOURCE_URI].endswith(FACE_PHOTOS[0]))
    image = decode_image((photo_folder / "happy" / FACE_PHOTOS[0]).read_bytes())
    [face] = DlibLandmarker().load().detect(image).faces
    assert np.allclose(np.reshape(row[columns.SOURCE_LANDMARKS], (68, 2)), face.landmarks)
    crop_points = np.reshape(row[columns.LANDMARKS], (68, 2)).astype(np.float64)
    # The pipeline weights dlib's points by dlib's measured noise profile (fitting/noise.py).
    fit = fit_landmarks(load_model("open"), crop_points[None],
                        landmark_weights=landmark_weights(NOISE_PROFILES["dlib"], 1))
    # Float32 storage of the crop landmarks moves the fit by far less than 1e-3 sigma.
    assert np.allclose(row[columns.EXPRESSION], fit.expression[0], atol=1e-3)


def test_rerun_gives_byte_identical_output(folder_run, photo_folder, tmp_path):
    output, _ = folder_run
    run_generate([photo_folder], tmp_path, "--label-from-parent")
    names = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.parquet"))
    assert names == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    for name in [*names, "manifest.json"]:
        assert (output / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_archive_input_gives_the_same_labels_as_the_folder(folder_run, photo_folder, tmp_path):
    output, _ = folder_run
    archive = tmp_path / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(photo_folder, arcname="faces")
    stats = run_generate([archive], tmp_path / "out", "--label-from-parent")
    assert (stats["inputs"], stats["written"], stats["duplicates"]) == (8, 3, 1)
    _, folder_rows = read_rows(output)
    _, archive_rows = read_rows(tmp_path / "out")
    by_id = {row[columns.ID]: row for row in folder_rows}
    for row in archive_rows:
        assert "!faces/" in row[columns.SOURCE_URI]
        twin = by_id[row[columns.ID]]
        assert row[columns.EXPRESSION] == twin[columns.EXPRESSION]
        assert row[columns.LABEL] == twin[columns.LABEL]


def test_manifest_with_subjects_pools_identity(photo_folder, tmp_path):
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "subject"])
        writer.writerow([photo_folder / "neutral" / FACE_PHOTOS[1], "neutral", "president"])
        writer.writerow([photo_folder / "sad" / FACE_PHOTOS[2], "sad", "president"])
        writer.writerow([photo_folder / "happy" / FACE_PHOTOS[0], "happy", "astronaut"])
        writer.writerow(["does/not/exist.jpg", "x", "nobody"])
    stats = run_generate([manifest], tmp_path / "out")
    assert (stats["inputs"], stats["written"], stats["failed"]) == (4, 3, 1)
    assert stats["failures_by_reason"] == {"read/unreadable": 1}
    _, rows = read_rows(tmp_path / "out")
    identity = {}
    for row in rows:
        identity.setdefault(row[columns.SUBJECT], []).append(row[columns.IDENTITY])
    first, second = identity["president"]
    assert first == second  # one identity per subject
    assert identity["astronaut"][0] != first


@pytest.mark.parametrize("flags", [("--subject-from-parent",),
                                   ("--subject-pattern", r"^([a-z]+)-")])
def test_subjects_from_paths_pool_identity(tmp_path, flags):
    # ROOT/<subject>/<subject>-<n>.<ext>: the folder and the file name both say who it is.
    root = tmp_path / "people"
    photos = {"obama": FACE_PHOTOS[1:], "astronaut": FACE_PHOTOS[:1]}
    for subject, names in photos.items():
        (root / subject).mkdir(parents=True)
        for number, name in enumerate(names):
            shutil.copy(EXAMPLES / name, root / subject / f"{subject}-{number}{Path(name).suffix}")
    stats = run_generate([root], tmp_path / "out", *flags)
    assert (stats["inputs"], stats["written"]) == (3, 3)
    _, rows = read_rows(tmp_path / "out")
    identity = {}
    for row in rows:
        identity.setdefault(row[columns.SUBJECT], []).append(row[columns.IDENTITY])
    assert sorted((subject, len(rows)) for subject, rows in identity.items()) == [
        ("astronaut", 1), ("obama", 2)]
    first, second = identity["obama"]
    assert first == second  # fitted as one subject: one identity
    assert identity["astronaut"][0] != first


def test_subject_flags_are_checked(tmp_path):
    with pytest.raises(OptionsError, match="--subject-from-parent or --subject-pattern"):
        run_generate([tmp_path], tmp_path / "out", "--subject-from-parent",
                     "--subject-pattern", "x")
    with pytest.raises(OptionsError, match="--subject-pattern is not a regular expression"):
        run_generate([tmp_path], tmp_path / "out", "--subject-pattern", "(unclosed")


def test_invalid_flags_are_refused_before_running(tmp_path):
    with pytest.raises(OptionsError, match="--crop-size.*--jpeg-quality"):
        run_generate([tmp_path], tmp_path / "out", "--crop-size", "8", "--jpeg-quality", "0")
    with pytest.raises(OptionsError, match="--input is required"):
        generate.run(["--output", str(tmp_path / "out")])


def test_existing_dataset_needs_overwrite_or_incremental(folder_run, photo_folder):
    output, _ = folder_run
    with pytest.raises(DatasetStateError, match="--incremental.*--overwrite"):
        run_generate([photo_folder], output)


def test_default_workers_every_core_for_large_inputs_a_video_counting_as_many_files():
    from pipelines.local_engine import (
        PARALLEL_FROM_ITEMS,
        VIDEO_ITEMS,
        available_cores,
        default_workers,
        input_work,
    )
    from pipelines.sources import Failure, SourceItem

    assert default_workers(PARALLEL_FROM_ITEMS) == available_cores()
    assert default_workers(PARALLEL_FROM_ITEMS - 1) == 1
    items = [SourceItem("/v/a.MP4", "/v"), SourceItem("/v/b.jpg", "/v"),
             SourceItem("/v/c.tar", "/v", kind="archive"),
             Failure("x", "/v/missing", "/v", "read", "no_match", "nothing")]
    assert input_work(items) == VIDEO_ITEMS + 2
    videos = [SourceItem(f"/v/{index}.mkv", "/v") for index in range(20)]
    assert default_workers(input_work(videos)) == available_cores()


def test_workers_get_their_share_of_the_blas_threads_unless_the_environment_says(monkeypatch):
    from pipelines import local_engine

    for name in local_engine.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setattr(local_engine, "available_cores", lambda: 8)
    local_engine.share_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"  # the user's own
    monkeypatch.delenv("OMP_NUM_THREADS")
    local_engine.share_threads(16)
    assert os.environ["OMP_NUM_THREADS"] == "1"
