"""python -m studies.expression_observability [--model open] [--yaw 0 45]: label ceiling.

How much of each expression component 68 landmarks can tell: a model's label ceiling
(``--model`` is ``open``, ``synthetic`` or a model file; ``--noise-px 1`` the landmark noise).

For a linear Gaussian model of the fit at a fixed pose (the landmarks' 2D rows ``A`` of the
identity and expression bases, both coefficient sets ~ N(0, 1), landmark noise of variance
``v`` mm^2 per coordinate), the posterior covariance is ``(A^T A / v + I)^-1``, and the
*reliability* of a coefficient, the squared correlation between it and its posterior mean, is
one minus its posterior variance. It is computed twice: with the identity unknown (a single
image) and with the identity known (the limit of pooling many images of one subject). No
fitting and no sampling: this is the information the landmarks carry, whatever the fitter.

``--noise-px`` is converted to mm with the model's scale for a face 200 px wide (150 mm). Also
printed: each component's landmark energy, ``sum_i |P R L_ik|^2`` in mm^2 per sigma; a component
whose energy is near the noise variance is mostly invisible to the landmarks.
"""

from __future__ import annotations

import argparse

import numpy as np

from fitting.camera import euler_to_rotation
from fitting.models import load_model
from synth.toy_model import make_synthetic_model

FACE_WIDTH_MM_PER_200_PX = 150.0 / 200.0


def centred_landmark_rows(basis: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(136, K) 2D rows ``P R L_i`` of landmark basis rows ``basis`` (68, 3, K) under
    ``rotation`` (3, 3), their mean over the landmarks removed (a common shift is the
    translation's)."""
    rows = np.einsum("ij,njk->nik", rotation[:2], basis)
    return (rows - rows.mean(axis=0, keepdims=True)).reshape(-1, basis.shape[2])


def landmark_rows(model, yaw: float) -> np.ndarray:
    """(136, K_id + K_exp) 2D landmark rows of both bases at the given yaw; translation-free."""
    vertices = model.landmark_indices
    basis = np.concatenate([model.identity_basis[vertices], model.expression_basis[vertices]],
                           axis=2)
    rotation = euler_to_rotation(np.array([yaw]), np.array([0.0]), np.array([0.0]))[0]
    return centred_landmark_rows(basis, rotation)


def reliability(rows: np.ndarray, variance: float) -> np.ndarray:
    """(K,) one minus the posterior variance of each coefficient (prior N(0, 1))."""
    precision = rows.T @ rows / variance + np.eye(rows.shape[1])
    return 1.0 - np.diag(np.linalg.inv(precision))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="open",
                        help="open, synthetic, or a model file (.npz, expnet models convert)")
    parser.add_argument("--noise-px", type=float, default=1.0)
    parser.add_argument("--yaw", type=float, nargs="+", default=[0.0, 45.0])
    args = parser.parse_args(argv)
    model = make_synthetic_model(0) if args.model == "synthetic" else load_model(args.model)
    variance = (args.noise_px * FACE_WIDTH_MM_PER_200_PX) ** 2
    identity_dim = model.identity_dim
    print(f"model: {model.model_id}; landmark noise {args.noise_px:g} px on a 200 px face = "
          f"{variance:.2f} mm^2; reliability = squared correlation of coefficient and estimate")
    columns = []
    for yaw in args.yaw:
        rows = landmark_rows(model, yaw)
        expression_rows = rows[:, identity_dim:]
        columns.append((yaw, (expression_rows ** 2).sum(axis=0),
                        reliability(rows, variance)[identity_dim:],
                        reliability(expression_rows, variance)))
    print("\n| component | " + " | ".join(
        f"yaw {yaw:g}: energy mm^2 / reliability, identity unknown / known"
        for yaw, *_ in columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for component in range(model.expression_dim):
        print(f"| {component} | " + " | ".join(
            f"{energy[component]:.1f} / {unknown[component]:.2f} / {known[component]:.2f}"
            for _, energy, unknown, known in columns) + " |")
    print("| mean | " + " | ".join(
        f"{energy.mean():.1f} / {unknown.mean():.2f} / {known.mean():.2f}"
        for _, energy, unknown, known in columns) + " |")


if __name__ == "__main__":
    main()
