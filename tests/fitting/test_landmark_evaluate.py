"""Landmark evaluation: the iBUG .pts format, 300-W NME by hand, and the CLI on real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fitting.image import decode_image
from fitting.landmarks import Face, ImageFaces
from fitting.landmarks.dlib_backend import DlibLandmarker
from fitting.landmarks.evaluate import (
    LandmarkScores,
    PtsFormatError,
    format_table,
    main,
    match_face,
    normalised_mean_error,
    pair_annotations,
    read_pts,
    write_pts,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"
FACE_PHOTOS = ("astronaut.png", "obama2.jpg", "obama_partial_face2.jpg")


def face_points(seed: int = 0) -> np.ndarray:
    """68 random points whose outer eye corners (36, 45) are 10 px apart on a row."""
    points = np.random.default_rng(seed).uniform(0.0, 50.0, (68, 2))
    points[36], points[45] = (20.0, 30.0), (30.0, 30.0)
    return points


def test_pts_round_trip_uses_one_based_coordinates(tmp_path):
    points = face_points() + 0.125
    write_pts(tmp_path / "face.pts", points)
    lines = (tmp_path / "face.pts").read_text().splitlines()
    assert lines[:3] == ["version: 1", "n_points: 68", "{"] and lines[-1] == "}"
    # The file is 1-based: point 36 at 0-based (20.125, 30.125) is written as 21.125 31.125.
    assert lines[3 + 36] == "21.125000 31.125000"
    assert np.allclose(read_pts(tmp_path / "face.pts"), points, atol=1e-6)


def test_pts_reader_takes_ibug_files_and_refuses_broken_ones(tmp_path):
    (tmp_path / "three.pts").write_text("version: 1\nn_points:  3\n{\n1 1\n 10.5 2\n3 4\n}\n")
    assert np.array_equal(read_pts(tmp_path / "three.pts"), [[0, 0], [9.5, 1], [2, 3]])
    (tmp_path / "short.pts").write_text("version: 1\nn_points: 3\n{\n1 1\n2 2\n}\n")
    with pytest.raises(PtsFormatError, match="n_points is 3"):
        read_pts(tmp_path / "short.pts")
    (tmp_path / "open.pts").write_text("version: 1\nn_points: 1\n{\n1 1\n")
    with pytest.raises(PtsFormatError, match="n_points"):
        read_pts(tmp_path / "open.pts")


def test_nme_by_hand():
    truth = face_points()
    # Every point 5 px off (a 3-4-5 shift) over a 10 px inter-ocular distance: 0.5.
    assert np.isclose(normalised_mean_error(truth + [3.0, 4.0], truth), 0.5)
    # One point 6.8 px off: mean error 0.1 px, NME 0.01.
    one_off = truth.copy()
    one_off[10, 1] += 6.8
    assert np.isclose(normalised_mean_error(one_off, truth), 0.01)
    batch = normalised_mean_error(np.stack([truth, one_off]), np.stack([truth, truth]))
    assert batch.shape == (2,) and np.allclose(batch, [0.0, 0.01])
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        normalised_mean_error(truth[:5], truth[:5])
    collapsed = truth.copy()
    collapsed[45] = collapsed[36]
    with pytest.raises(ValueError, match="eye corners"):
        normalised_mean_error(truth, collapsed)


def test_summary_figures_by_hand():
    scores = LandmarkScores("x", images=4, nme=np.array([0.01, 0.05, 0.2]),
                            failure_threshold=0.08, seconds=2.0)
    assert scores.detection_rate == 0.75
    assert np.isclose(scores.mean, 0.26 / 3) and scores.median == 0.05
    assert np.isclose(scores.failure_rate, 1 / 3)
    table = format_table([scores]).splitlines()
    assert table[1].split() == ["x", "4", "3", "75.00", "8.67", "5.00", "33.33", "0.500"]
    empty = LandmarkScores("y", images=2, nme=np.zeros(0))
    assert (empty.detection_rate, empty.mean, empty.failure_rate) == (0.0, None, None)


def test_the_annotated_face_is_matched_by_overlap():
    truth = face_points()
    far = Face(box=np.zeros(4), score=2.0, landmarks=truth + 500.0)
    near = Face(box=np.zeros(4), score=1.0, landmarks=truth + 2.0)
    assert match_face(ImageFaces((far, near), (800, 800)), truth) is near
    assert match_face(ImageFaces((far,), (800, 800)), truth) is None


@pytest.fixture(scope="module")
def annotated_folder(tmp_path_factory):
    """Real photos with .pts from dlib's own points; the third shifted 6 px to the right,
    and a face-less photo whose annotation no detector can match."""
    root = tmp_path_factory.mktemp("annotated")
    images, annotations = root / "images", root / "pts"
    images.mkdir()
    annotations.mkdir()
    dlib = DlibLandmarker().load()
    interocular = {}
    for index, name in enumerate(FACE_PHOTOS):
        shutil.copy(EXAMPLES / name, images / name)
        [face] = dlib.detect(decode_image((EXAMPLES / name).read_bytes())).faces
        shift = 6.0 if index == 2 else 0.0
        write_pts(annotations / f"{Path(name).stem}.pts", face.landmarks + [shift, 0.0])
        interocular[name] = float(np.linalg.norm(face.landmarks[36] - face.landmarks[45]))
    shutil.copy(EXAMPLES / "coffee.png", images / "coffee.png")
    write_pts(annotations / "coffee.pts", face_points())
    shutil.copy(EXAMPLES / "biden.jpg", images / "unannotated.jpg")
    return images, annotations, interocular


def test_pairing_by_stem(annotated_folder):
    images, annotations, _ = annotated_folder
    pairs, unannotated = pair_annotations(images, annotations)
    assert [image.name for image, _ in pairs] == sorted([*FACE_PHOTOS, "coffee.png"])
    assert all(image.stem == pts.stem for image, pts in pairs)
    assert [path.name for path in unannotated] == ["unannotated.jpg"]


def test_cli_scores_dlib_against_its_own_points(annotated_folder, capsys):
    images, annotations, interocular = annotated_folder
    assert main(["--images", str(images), "--annotations", str(annotations),
                 "--landmarker", "dlib"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    # dlib's integer points round-trip exactly; only the shifted photo has an error,
    # 6 px over its inter-ocular distance. coffee.png has no face: 3 of 4 detected.
    shifted = 6.0 / interocular[FACE_PHOTOS[2]]
    assert row[:4] == ["dlib", "4", "3", "75.00"]
    assert float(row[4]) == pytest.approx(100 * shifted / 3, abs=0.006)
    assert float(row[5]) == 0.0
    assert float(row[6]) == pytest.approx(100 / 3 if shifted > 0.08 else 0.0, abs=0.006)


def test_cli_compare_mode_and_errors(annotated_folder, capsys, tmp_path):
    images, _, _ = annotated_folder
    assert main(["--images", str(images), "--compare", "dlib", "dlib"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # dlib agrees with itself exactly on the 4 faces it finds (3 photos + unannotated.jpg).
    assert lines[2].split()[:7] == ["dlib", "vs", "dlib", "4", "4", "100.00", "0.00"]
    assert main(["--images", str(images), "--annotations", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["--images", str(images)]) == 2
