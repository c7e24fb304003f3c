"""Named blendshape weights from expression codes: exact round trips, optimality, plumbing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fitting.blendshapes import blendshape_code, blendshape_weights, solve_box_qp
from fitting.fitter import fit_landmarks, project
from fitting.models import load_model
from fitting.models.model import ModelFileError, read_model_file, save_model
from synth.toy_model import make_synthetic_model

IN_SPAN_UNITS = 20
OUT_OF_SPAN_UNITS = 12


def model_with_units(seed: int):
    """The synthetic model plus 32 named units: the first 20 are combinations of its
    expression basis (in the span the code keeps), the other 12 are random fields."""
    model = make_synthetic_model(seed)
    rng = np.random.default_rng(seed)
    basis = model.expression_basis.reshape(-1, model.expression_dim)
    # Fields the size of one to two sigma of the basis, like real units against components.
    in_span = basis @ rng.normal(0.0, 1.0, (model.expression_dim, IN_SPAN_UNITS))
    out_of_span = rng.normal(0.0, np.abs(basis).mean(), (basis.shape[0], OUT_OF_SPAN_UNITS))
    fields = np.hstack([in_span, out_of_span])                      # (3V, U)
    names = tuple(f"unit{k}" for k in range(fields.shape[1]))
    return dataclasses.replace(model, blendshape_gram=fields.T @ fields,
                               blendshape_cross=fields.T @ basis,
                               blendshape_names=names), fields


def objective(model, weights, expression):
    """``||F w - E e||^2`` from the stored products, ``(B,)``."""
    basis = model.expression_basis.reshape(-1, model.expression_dim)
    return (np.einsum("bi,ij,bj->b", weights, model.blendshape_gram, weights)
            - 2.0 * np.einsum("bi,ij,bj->b", weights, model.blendshape_cross, expression)
            + np.einsum("bi,ij,bj->b", expression, basis.T @ basis, expression))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_units_in_the_kept_span_round_trip_exactly(seed):
    model, _ = model_with_units(seed)
    rng = np.random.default_rng(100 + seed)
    truth = np.zeros((64, IN_SPAN_UNITS + OUT_OF_SPAN_UNITS))
    # Sparse weights in the span, some at the bounds 0 and 1 (the box's corners count too).
    strengths = rng.uniform(0.0, 1.0, (64, IN_SPAN_UNITS))
    strengths[rng.uniform(size=strengths.shape) < 0.5] = 0.0
    strengths[rng.uniform(size=strengths.shape) < 0.1] = 1.0
    truth[:, :IN_SPAN_UNITS] = strengths
    code = blendshape_code(model, truth)
    recovered = blendshape_weights(model, code)
    # 20 independent in-span fields: the box QP has the unique minimiser `truth`; the polished
    # solve is exact up to float64 round-off amplified by G's condition number (< 1e-8).
    np.testing.assert_allclose(recovered, truth, atol=1e-8)


def test_weights_are_optimal_for_the_open_model():
    model = load_model("open")
    rng = np.random.default_rng(7)
    expression = rng.normal(0.0, 1.0, (200, model.expression_dim))
    weights = blendshape_weights(model, expression)
    assert weights.shape == (200, 52)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    # KKT of the box QP: the gradient vanishes on free weights, points inwards at the bounds.
    gradient = weights @ model.blendshape_gram - expression @ model.blendshape_cross.T
    scale = np.sqrt(np.diag(model.blendshape_gram)).clip(min=1.0)
    free = (weights > 0.0) & (weights < 1.0)
    assert np.all(np.abs(gradient[free]) <= 1e-5 * np.broadcast_to(scale, free.shape)[free])
    assert np.all(gradient[weights == 0.0] >= -1e-5 * scale.max())
    assert np.all(gradient[weights == 1.0] <= 1e-5 * scale.max())
    # And no random feasible point reproduces the displacement better.
    best = objective(model, weights, expression)
    for _ in range(20):
        other = np.clip(weights + rng.normal(0.0, 0.05, weights.shape), 0.0, 1.0)
        assert np.all(objective(model, other, expression) >= best - 1e-6 * np.abs(best))


def test_open_model_units_to_code_to_units_fits_the_code_at_least_as_well():
    model = load_model("open")
    rng = np.random.default_rng(8)
    truth = rng.uniform(0.0, 1.0, (100, 52)) * (rng.uniform(size=(100, 52)) < 0.15)
    code = blendshape_code(model, truth)
    recovered = blendshape_weights(model, code)
    assert np.all(objective(model, recovered, code) <= objective(model, truth, code) + 1e-6)
    # Units the PCA keeps well come back: jaw open (2 % of its energy outside the span).
    jaw = model.blendshape_names.index("jawOpen")
    only_jaw = np.zeros((1, 52))
    only_jaw[0, jaw] = 0.7
    back = blendshape_weights(model, blendshape_code(model, only_jaw))
    assert abs(back[0, jaw] - 0.7) < 0.1


def test_neutral_code_gives_zero_weights_and_unmoving_units_stay_zero():
    model = load_model("open")
    assert np.all(blendshape_weights(model, np.zeros(model.expression_dim)) == 0.0)
    weights = blendshape_weights(model, np.random.default_rng(3).normal(size=(50, 29)))
    assert np.all(weights[:, model.blendshape_names.index("tongueOut")] == 0.0)


def test_models_without_units_give_none_and_bad_shapes_raise():
    plain = make_synthetic_model(0)
    assert blendshape_weights(plain, np.zeros(29)) is None
    with pytest.raises(ValueError, match="has no named units"):
        blendshape_code(plain, np.zeros(52))
    model = load_model("open")
    with pytest.raises(ValueError, match=r"\(B, 29\)"):
        blendshape_weights(model, np.zeros((3, 28)))
    with pytest.raises(ValueError, match=r"\(B, 52\)"):
        blendshape_code(model, np.zeros(51))
    with pytest.raises(ValueError, match="linear must be"):
        solve_box_qp(np.eye(3), np.zeros((2, 4)))


def test_fit_batch_carries_the_weights_of_its_codes():
    model = load_model("open")
    rng = np.random.default_rng(4)
    expression = rng.normal(0.0, 0.7, (6, model.expression_dim))
    identity = rng.normal(0.0, 0.5, (6, model.identity_dim))
    landmarks = project(model, expression, identity, np.broadcast_to(np.eye(3), (6, 3, 3)),
                        np.full(6, 2.0), np.full((6, 2), 200.0))
    fit = fit_landmarks(model, landmarks)
    assert fit.blendshapes.shape == (6, 52)
    np.testing.assert_array_equal(fit.blendshapes, blendshape_weights(model, fit.expression))
    plain = make_synthetic_model(0)
    assert fit_landmarks(plain, project(plain, expression, identity[:, :plain.identity_dim],
                                        np.broadcast_to(np.eye(3), (6, 3, 3)), np.full(6, 2.0),
                                        np.full((6, 2), 200.0))).blendshapes is None


def test_unit_products_and_names_survive_the_model_file(tmp_path):
    model, _ = model_with_units(0)
    loaded = read_model_file(save_model(model, tmp_path / "units.npz"))
    assert loaded.blendshape_names == model.blendshape_names
    np.testing.assert_array_equal(loaded.blendshape_gram,
                                  model.blendshape_gram.astype(np.float32))
    assert loaded.content_hash == model.content_hash
    renamed = dataclasses.replace(model, blendshape_names=tuple(
        f"other{k}" for k in range(len(model.blendshape_names))))
    assert renamed.content_hash != model.content_hash
    assert make_synthetic_model(0).content_hash != model.content_hash
    with pytest.raises(ModelFileError, match="together or not at all"):
        dataclasses.replace(model, blendshape_names=None)
    with pytest.raises(ModelFileError, match="blendshape_cross must be"):
        dataclasses.replace(model, blendshape_cross=model.blendshape_cross[:, :5])
