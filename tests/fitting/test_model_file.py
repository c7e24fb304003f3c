"""The model file format: save/load round trip, content hash, and refusal of broken files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from fitting.models import ModelFileError, MorphableModel, load_model, read_model_file, save_model

VERTICES = 80
ID_DIM = 5
EXP_DIM = 29


def synthetic_model(*, expression_dim: int = EXP_DIM, seed: int = 0) -> MorphableModel:
    rng = np.random.default_rng(seed)
    contour = np.full((17, 4), -1)
    contour[:, 0] = rng.choice(VERTICES, 17, replace=False)
    contour[:5, 1:3] = rng.choice(VERTICES, (5, 2))
    return MorphableModel(
        mean=rng.uniform(-75.0, 75.0, (VERTICES, 3)),
        identity_basis=rng.normal(0.0, 3.0, (VERTICES, 3, ID_DIM)),
        identity_std=rng.uniform(1.0, 5.0, ID_DIM),
        expression_basis=rng.normal(0.0, 1.0, (VERTICES, 3, expression_dim)),
        expression_std=rng.uniform(0.5, 2.0, expression_dim),
        landmark_indices=rng.choice(VERTICES, 68, replace=False),
        triangles=np.stack([rng.choice(VERTICES, 3, replace=False) for _ in range(30)]),
        contour_candidates=contour,
        model_id="synthetic",
        metadata={"licence": "CC0", "source": {"seed": seed}},
    )


def rewrite_npz(source, target, *, drop=(), replace=None):
    """Copy a model .npz member by member, leaving out or replacing arrays (header kept)."""
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name not in drop}
    arrays.update(replace or {})
    with open(target, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return target


def test_round_trip_keeps_arrays_metadata_and_hash(tmp_path):
    model = synthetic_model()
    loaded = read_model_file(save_model(model, tmp_path / "m.npz"))
    assert loaded.content_hash == model.content_hash
    assert loaded.model_id == "synthetic"
    assert loaded.metadata == {"licence": "CC0", "source": {"seed": 0}}
    # Stored as float32: values agree to float32 resolution.
    np.testing.assert_allclose(loaded.mean, model.mean, rtol=1e-6)
    np.testing.assert_allclose(loaded.expression_basis, model.expression_basis, rtol=1e-6)
    np.testing.assert_array_equal(loaded.landmark_indices, model.landmark_indices)
    np.testing.assert_array_equal(loaded.triangles, model.triangles)
    np.testing.assert_array_equal(loaded.contour_candidates, model.contour_candidates)
    # A second save of the loaded model writes the same hash again (canonical float32 form).
    again = read_model_file(save_model(loaded, tmp_path / "again.npz"))
    assert again.content_hash == model.content_hash


def test_hash_changes_with_any_array_value(tmp_path):
    model = synthetic_model()
    mean = model.mean.copy()
    mean[3, 1] += 0.01  # far above float32 resolution at ~75 mm
    changed = MorphableModel(mean=mean, identity_basis=model.identity_basis,
                             identity_std=model.identity_std,
                             expression_basis=model.expression_basis,
                             expression_std=model.expression_std,
                             landmark_indices=model.landmark_indices, triangles=model.triangles)
    assert changed.content_hash != model.content_hash


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        read_model_file(tmp_path / "absent.npz")


def test_truncated_file(tmp_path):
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable model .npz"):
        read_model_file(path)


def test_corrupted_member_bytes(tmp_path):
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    # Flip bytes inside the compressed 'mean' member, keeping the zip directory intact.
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("mean.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="m.npz"):
        read_model_file(path)


def test_missing_array(tmp_path):
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    rewrite_npz(path, tmp_path / "lacking.npz", drop=("triangles",))
    with pytest.raises(ModelFileError, match="lacks arrays: triangles"):
        read_model_file(tmp_path / "lacking.npz")


def test_altered_array_fails_the_hash(tmp_path):
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    with np.load(path) as archive:
        expression_std = archive["expression_std"].copy()
    expression_std[0] *= 1.5
    rewrite_npz(path, tmp_path / "altered.npz", replace={"expression_std": expression_std})
    with pytest.raises(ModelFileError, match="do not match the header's content hash"):
        read_model_file(tmp_path / "altered.npz")


def test_not_a_model_npz(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, mean=np.zeros((80, 3)))
    with pytest.raises(ModelFileError, match="no 'header' array"):
        read_model_file(plain)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a readable model .npz"):
        read_model_file(text)


def test_28_expression_components_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="has 28 components; ExpNet labels need exactly 29"):
        synthetic_model(expression_dim=28)
    # The same refusal when such a file is read.
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    with np.load(path) as archive:
        basis = archive["expression_basis"][:, :, :28]
        std = archive["expression_std"][:28]
    rewrite_npz(path, tmp_path / "k28.npz", replace={"expression_basis": basis,
                                                     "expression_std": std})
    with pytest.raises(ModelFileError, match="28 components"):
        read_model_file(tmp_path / "k28.npz")


def test_load_model_names_the_choices_for_an_unknown_spec():
    with pytest.raises(ModelFileError, match=r"unknown model 'nonsense'.*\['open'\]"):
        load_model("nonsense")


def test_header_is_json_not_pickle(tmp_path):
    path = save_model(synthetic_model(), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        header = archive["header"]
    assert header.dtype == np.uint8
    assert io.BytesIO(header.tobytes()).read(1) == b"{"
