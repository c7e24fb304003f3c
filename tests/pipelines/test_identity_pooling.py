"""`expnet generate --subject-from-faces` end to end: pseudo-subjects from who the face is."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageEnhance

from pipelines import synth
from schemas import rows as columns
from schemas.rows import AUTO_SUBJECT_PREFIX
from tests.pipelines.conftest import EXAMPLES, run_generate
from tests.pipelines.test_reliability import dataset_bytes
from tests.pipelines.test_scale import run_on_local_dask

# The real photos of one person, and two people with one photo each (public domain,
# examples/faces/PROVENANCE.md).
OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg",
         "obama_partial_face2.jpg")
ONE_PHOTO_PEOPLE = ("biden.jpg", "astronaut.png")


def _variants(image: Image.Image) -> dict:
    """Three different files of one photo: as is, mirrored, smaller and darker."""
    width, height = image.size
    smaller = image.resize((width * 3 // 4, height * 3 // 4))
    return {"a": image, "b": image.transpose(Image.FLIP_LEFT_RIGHT),
            "c": ImageEnhance.Brightness(smaller).enhance(0.85)}


@pytest.fixture(scope="module")
def people_folder(tmp_path_factory) -> tuple[Path, dict]:
    """One folder holding 11 images of 3 people: ``(folder, person of each file name)``."""
    folder = tmp_path_factory.mktemp("people") / "photos"
    folder.mkdir()
    person = {}
    for name in OBAMA:
        shutil.copy(EXAMPLES / name, folder / name)
        person[name] = "obama"
    for name in ONE_PHOTO_PEOPLE:
        stem = name.split(".")[0]
        for suffix, image in _variants(Image.open(EXAMPLES / name).convert("RGB")).items():
            image.save(folder / f"{stem}-{suffix}.png")
            person[f"{stem}-{suffix}.png"] = stem
    return folder, person


def _rows(output: Path) -> dict:
    """Rows of a dataset by the file name of their source image."""
    rows = {}
    for shard in sorted(output.glob("part-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[Path(row[columns.SOURCE_URI]).name] = row
    return rows


@pytest.fixture(scope="module")
def people_run(people_folder, tmp_path_factory):
    folder, _ = people_folder
    output = tmp_path_factory.mktemp("people-run")
    stats = run_generate([folder], output, "--subject-from-faces")
    return output, stats


def test_each_person_in_one_folder_gets_one_pseudo_subject(people_folder, people_run):
    _, person = people_folder
    output, stats = people_run
    assert stats["invariant"]["holds"] and stats["written"] == len(person)
    rows = _rows(output)
    subject_of = collections.defaultdict(set)
    for name, row in rows.items():
        subject_of[person[name]].add(row[columns.SUBJECT])
    for people, subjects in subject_of.items():
        [subject] = subjects                       # one subject for all of a person's faces
        assert subject.startswith(AUTO_SUBJECT_PREFIX), people
    assert len({next(iter(subjects)) for subjects in subject_of.values()}) == 3
    assert stats["identity_check"]["auto_subject_removed"] == 0  # every face kept its subject
    for name, row in rows.items():
        assert len(row[columns.FACE_DESCRIPTOR]) == columns.FACE_DESCRIPTOR_DIM
        mates = [other for other in rows if person[other] == person[name]]
        # Pooled: one identity vector for all of the person's faces.
        assert all(rows[other][columns.IDENTITY] == row[columns.IDENTITY] for other in mates)


def test_reruns_and_two_workers_write_the_same_bytes(people_folder, people_run, tmp_path):
    folder, _ = people_folder
    reference, _ = people_run
    run_generate([folder], tmp_path / "again", "--subject-from-faces")
    assert dataset_bytes(tmp_path / "again") == dataset_bytes(reference)
    run_generate([folder], tmp_path / "two", "--subject-from-faces", "--workers", "2")
    assert dataset_bytes(tmp_path / "two") == dataset_bytes(reference)


def test_the_dask_runner_writes_the_same_bytes(people_folder, people_run, tmp_path):
    folder, _ = people_folder
    reference, _ = people_run
    stats = run_on_local_dask([folder], tmp_path, "--subject-from-faces",
                              "--dask_partition_size", "2")
    assert stats["invariant"]["holds"]
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def test_without_the_option_no_subject_and_no_descriptor_is_written(people_folder, tmp_path):
    folder, _ = people_folder
    run_generate([folder], tmp_path, "--faces", "largest")
    rows = _rows(tmp_path)
    assert rows and all(row[columns.SUBJECT] is None for row in rows.values())
    assert all(row[columns.FACE_DESCRIPTOR] is None for row in rows.values())
    identities = {tuple(row[columns.IDENTITY]) for row in rows.values()}
    assert len(identities) == len(rows)            # one identity per image


def test_face_descriptors_alone_store_descriptors_and_pool_nothing(people_folder, people_run,
                                                                   tmp_path):
    folder, _ = people_folder
    run_generate([folder], tmp_path, "--face-descriptors")
    rows, pooled_rows = _rows(tmp_path), _rows(people_run[0])
    assert all(row[columns.SUBJECT] is None for row in rows.values())
    # The same descriptors as the clustering run computed, face by face.
    assert all(row[columns.FACE_DESCRIPTOR] == pooled_rows[name][columns.FACE_DESCRIPTOR]
               for name, row in rows.items())


def test_check_subjects_takes_faces_of_another_shape_out_of_a_subject(people_folder,
                                                                     tmp_path):
    """A manifest's subject holds one person's photos and two faces of shapes no one of them
    has (the photo stretched to 150 % and squeezed to 65 % of its width): the check fits the
    two alone. (It cannot tell two real people apart from dlib's landmarks; benchmarks/
    RESULTS.md, "Identity pooling".)"""
    folder, _ = people_folder
    photo = Image.open(EXAMPLES / OBAMA[0]).convert("RGB")
    width, height = photo.size
    distorted = {"wide.png": 1.5, "narrow.png": 0.65}
    for name, factor in distorted.items():
        photo.resize((int(width * factor), height)).save(tmp_path / name)
    paths = [folder / name for name in OBAMA] + [tmp_path / name for name in distorted]
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(path), "subject": "obama"}) + "\n"
                                for path in paths))
    plain_stats = run_generate([manifest], tmp_path / "plain")
    checked_stats = run_generate([manifest], tmp_path / "checked", "--check-subjects")
    # No row column says a face was fitted alone under its given subject; stats.json does.
    assert plain_stats["identity_check"] == {"auto_subject_removed": 0,
                                             "given_subject_fitted_alone": 0}
    assert checked_stats["identity_check"] == {"auto_subject_removed": 0,
                                               "given_subject_fitted_alone": len(distorted)}
    plain, checked = _rows(tmp_path / "plain"), _rows(tmp_path / "checked")
    assert len(plain) == len(checked) == len(paths)
    assert len({tuple(row[columns.IDENTITY]) for row in plain.values()}) == 1
    assert all(row[columns.SUBJECT] == "obama" for row in checked.values())  # kept as given
    real = {tuple(checked[name][columns.IDENTITY]) for name in OBAMA}
    assert len(real) == 1
    for name in distorted:
        own = tuple(checked[name][columns.IDENTITY])
        assert own not in real


@pytest.fixture(scope="module")
def look_alikes(tmp_path_factory) -> Path:
    """48 renders of 48 different people of one model: to dlib's descriptor, all alike."""
    folder = tmp_path_factory.mktemp("look-alikes")
    synth.run(["--count", "48", "--geometry", "model", "--output", str(folder), "--seed", "3",
               "--quiet"])
    return folder / "manifest.jsonl"


def _expression_rmse(rows: dict, truth: dict) -> float:
    names = sorted(rows)
    estimate = np.array([rows[name][columns.EXPRESSION] for name in names])
    return float(np.sqrt(np.mean((estimate - np.array([truth[name] for name in names])) ** 2)))


def test_a_look_alike_set_does_not_collapse_and_is_no_worse_than_per_image(look_alikes,
                                                                           tmp_path):
    truth = {Path(entry["path"]).name: entry["expression"]
             for entry in map(json.loads, look_alikes.read_text().splitlines())}
    run_generate([look_alikes], tmp_path / "auto", "--subject-from-faces")
    run_generate([look_alikes], tmp_path / "alone")
    auto, alone = _rows(tmp_path / "auto"), _rows(tmp_path / "alone")
    assert sorted(auto) == sorted(alone) and len(auto) > 30
    sizes = collections.Counter(row[columns.SUBJECT] for row in auto.values()
                                if row[columns.SUBJECT])
    # Every face is a different person: any cluster is a mistake. Few and small ones slip
    # through dlib's descriptor on renders (measured: 3 clusters of 2-3 faces of 41).
    assert sum(sizes.values()) <= len(auto) // 4
    assert max(sizes.values(), default=0) <= 4
    # 1 % of slack: the same faces fitted alone give 0.99 sigma.
    assert _expression_rmse(auto, truth) <= 1.01 * _expression_rmse(alone, truth)
