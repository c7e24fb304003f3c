"""python -m studies.noise_covariance_screen --workdir DIR: would correlated noise help?

Screening: would a full (correlated) landmark noise covariance give better labels? ``DIR`` is
the work folder of a model-geometry label-fidelity run, e.g. made by::

    python -m studies.label_fidelity --count 1000 --seed 3 --geometry model --workdir DIR

For every face dlib found, the landmark error is dlib's point (``source_landmarks``) minus the
true projected landmark vertex (the synth manifest's ``landmarks_2d``), in model mm (divided by
the true scale), each face's mean offset removed. Half of the faces estimate the 136 x 136 error
covariance; on the other half each noise model labels the face with the linear Gaussian
posterior mean of identity and expression **at the true pose** (the landmark rows of the open
model under the true rotation, observations = the true coefficients' landmarks plus the real
dlib error), which isolates the noise model from pose estimation. Printed: the expression RMSE
over the RMSE of predicting 0, and the mean per-component correlation with the truth. The last
row replaces the dlib errors by independent Gaussian noise of the same per-coordinate variance.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pyarrow.parquet as pq

from fitting.camera import euler_to_rotation
from fitting.models import load_model
from fitting.noise import DLIB_NOISE_MM2
from pipelines import synth
from schemas import rows as columns
from schemas.reader import DatasetReader
from studies.expression_observability import centred_landmark_rows

_FLIP_Y = np.diag([1.0, -1.0, 1.0])   # image y points down


def load_faces(workdir: str, model):
    """(errors (F, 136) mm, landmark rows (F, 136, K), true coefficients (F, K))."""
    truth = synth.read_ground_truth(os.path.join(workdir, "synth", synth.SYNTH_MANIFEST_NAME))
    table = pq.read_table(DatasetReader(os.path.join(workdir, "labels")).shard_paths(),
                          columns=[columns.SOURCE_URI, columns.SOURCE_LANDMARKS]).to_pylist()
    basis = np.concatenate([model.identity_basis[model.landmark_indices],
                            model.expression_basis[model.landmark_indices]], axis=2)
    errors, rows, coefficients = [], [], []
    for row in table:
        face = truth[row[columns.SOURCE_URI]]
        rotation = euler_to_rotation(*(np.array([face[name]])
                                       for name in ("yaw", "pitch", "roll")))[0]
        error = ((np.array(row[columns.SOURCE_LANDMARKS]).reshape(68, 2)
                  - np.array(face["landmarks_2d"])) / face["scale"])
        errors.append((error - error.mean(axis=0)).reshape(-1))
        rows.append(centred_landmark_rows(basis, _FLIP_Y @ rotation))
        coefficients.append(np.concatenate([face["identity"], face["expression"]]))
    return np.array(errors), np.array(rows), np.array(coefficients)


def score(covariance, errors, rows, coefficients, prior, identity_dim):
    """(RMSE / neutral RMSE, mean correlation) of the posterior-mean expression labels."""
    precision = np.linalg.inv(covariance)
    estimates = []
    for error, design, truth in zip(errors, rows, coefficients, strict=True):
        observed = design @ truth + error
        hessian = design.T @ precision @ design + np.diag(prior)
        estimates.append(np.linalg.solve(hessian, design.T @ precision @ observed))
    fitted = np.array(estimates)[:, identity_dim:]
    true = coefficients[:, identity_dim:]
    ratio = np.sqrt(np.mean((fitted - true) ** 2)) / np.sqrt(np.mean(true ** 2))
    correlation = np.mean([np.corrcoef(fitted[:, k], true[:, k])[0, 1]
                           for k in range(true.shape[1])])
    return ratio, correlation


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a label_fidelity.py --workdir")
    args = parser.parse_args(argv)
    model = load_model("open")
    errors, rows, coefficients = load_faces(args.workdir, model)
    identity_dim = model.identity_dim
    # The synth's identity prior (its std, 0.6 in model geometry) and the unit expression one.
    prior = np.concatenate([np.full(identity_dim, 1.0 / coefficients[:, :identity_dim].var()),
                            np.ones(model.expression_dim)])
    order = np.random.default_rng(0).permutation(len(errors))
    train, test = order[:len(order) // 2], order[len(order) // 2:]
    sample = np.cov(errors[train].T)
    variances = np.diag(np.diag(sample))
    models = {"per-group variances (the pipeline's profile)": np.diag(np.repeat(DLIB_NOISE_MM2,
                                                                                  2)),
              "per-coordinate variances": variances}
    for shrink in (0.0, 0.2, 0.5):
        blended = (1.0 - shrink) * sample + shrink * variances
        models[f"full covariance, shrunk {shrink:g} to its diagonal"] = (
            blended + 1e-3 * np.trace(blended) / 136 * np.eye(136))
    print(f"{len(errors)} faces found by dlib; covariance from {len(train)}, scored on "
          f"{len(test)}\n")
    print("| noise model | RMSE / neutral | corr |")
    print("|---|---|---|")
    for name, covariance in models.items():
        ratio, correlation = score(covariance, errors[test], rows[test], coefficients[test],
                                   prior, identity_dim)
        print(f"| {name} | {ratio:.3f} | {correlation:.3f} |")
    independent = (np.random.default_rng(1).standard_normal(errors[test].shape)
                   * np.sqrt(np.diag(sample)))
    ratio, correlation = score(variances, independent, rows[test], coefficients[test], prior,
                               identity_dim)
    print(f"| independent Gaussian noise of the same variances | {ratio:.3f} | "
          f"{correlation:.3f} |")


if __name__ == "__main__":
    main()
