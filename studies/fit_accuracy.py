"""python -m studies.fit_accuracy [--faces 256] [--model open|synthetic]: fit round trips.

Round-trip accuracy of the fitter against landmark noise and yaw: the table behind the tests.

For every noise level and yaw, ``--faces`` faces with identity and expression ~ N(0, 1), the
given |yaw| (sign random), pitch uniform in +-15 and roll in +-10 degrees, about 200 px wide, are
projected with ``fitting.fitter.project`` and fitted with the default weights. Two settings:

- ``fixed``: landmarks on the fixed landmark vertices, fitted with ``slide_contour=False``
  (exact correspondences: the setting of ``tests/fitting/test_fitter.py`` and of the eos
  comparison in ``fit_speed.py``);
- ``sliding``: jaw landmarks on the silhouette (``project(..., slide_contour=True)``), fitted
  with jaw sliding (the pipeline's default).

Each cell: expression RMSE (sigma units) / median rotation error (degrees, the angle of
``R_fit R_true^T``) / median |yaw error| (degrees). A last table gives, per noise level over all
yaws, how much of the expression the label keeps: the correlation of fitted and true
coefficients and the regression slope of fitted on true (1 would be an unbiased label; the prior
shrinks coefficients the landmarks determine weakly). The last table fits faces that share one
identity per subject (``4 * --faces`` images, K per subject), without and with ``subject_ids``.
"""

from __future__ import annotations

import numpy as np

from fitting.camera import euler_to_rotation
from fitting.fitter import fit_landmarks, project
from studies.fit_regularisation import parse_model_arguments
from synth.toy_model import sample_pose

NOISE_PX = (0.0, 0.5, 1.0, 2.0, 4.0)
YAWS = (0.0, 15.0, 30.0, 45.0, 60.0)
IMAGES_PER_SUBJECT = (1, 2, 4, 8, 16)
POOLING_NOISE_PX = (1.0, 2.0)


def round_trip(model, faces: int, noise_px: float, yaw: float, *, sliding: bool, seed: int):
    """Fit one cell; returns (fit, true expression, true rotation, true yaw)."""
    rng = np.random.default_rng(seed)
    _, pitch, roll, scale, translation = sample_pose(faces, rng)
    yaw = np.full(faces, yaw) * rng.choice([-1.0, 1.0], faces)
    rotation = euler_to_rotation(yaw, pitch, roll)
    identity = rng.standard_normal((faces, model.identity_dim))
    expression = rng.standard_normal((faces, model.expression_dim))
    landmarks = project(model, expression, identity, rotation, scale, translation,
                        slide_contour=sliding)
    landmarks += noise_px * rng.standard_normal(landmarks.shape)
    fit = fit_landmarks(model, landmarks, slide_contour=sliding)
    return fit, expression, rotation, yaw


def pooled_round_trip(model, faces: int, per_subject: int, noise_px: float, seed: int):
    """Expression RMSE when ``per_subject`` images share one identity, fitted with and without
    ``subject_ids``; yaw uniform in +-60, fixed landmark vertices."""
    rng = np.random.default_rng(seed)
    yaw, pitch, roll, scale, translation = sample_pose(faces, rng)
    rotation = euler_to_rotation(yaw, pitch, roll)
    subjects = np.arange(faces) // per_subject
    identity = rng.standard_normal((subjects[-1] + 1, model.identity_dim))[subjects]
    expression = rng.standard_normal((faces, model.expression_dim))
    landmarks = project(model, expression, identity, rotation, scale, translation)
    landmarks += noise_px * rng.standard_normal(landmarks.shape)
    errors = []
    for subject_ids in (None, subjects):
        fit = fit_landmarks(model, landmarks, subject_ids=subject_ids, slide_contour=False)
        errors.append(float(np.sqrt(np.mean((fit.expression - expression) ** 2))))
    return errors


def rotation_error_deg(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    relative = np.einsum("bij,bkj->bik", estimate, truth)
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.rad2deg(np.arccos(cosine))


def main(argv=None) -> None:
    args, model = parse_model_arguments(__doc__.splitlines()[0], argv)
    print(f"model: {model.model_id} ({model.num_vertices} vertices, K_id={model.identity_dim}); "
          f"{args.faces} faces per cell; expression RMSE sigma / median rotation error deg / "
          f"median |yaw error| deg")
    settings = ["fixed"] + (["sliding"] if model.contour_candidates is not None else [])
    label = {}
    for setting in settings:
        print(f"\n{setting}:\n")
        print("| noise | " + " | ".join(f"yaw {yaw:g}" for yaw in YAWS) + " | converged |")
        print("|" + "---|" * (len(YAWS) + 2))
        for noise_index, noise in enumerate(NOISE_PX):
            cells, fitted, true, converged = [], [], [], []
            for yaw_index, yaw in enumerate(YAWS):
                fit, expression, rotation, yaws = round_trip(
                    model, args.faces, noise, yaw, sliding=setting == "sliding",
                    seed=100 * noise_index + yaw_index)
                rmse = float(np.sqrt(np.mean((fit.expression - expression) ** 2)))
                rotation_error = np.median(rotation_error_deg(fit.rotation, rotation))
                yaw_error = np.median(np.abs(fit.yaw - yaws))
                cells.append(f"{rmse:.3f} / {rotation_error:.2f} / {yaw_error:.2f}")
                fitted.append(fit.expression)
                true.append(expression)
                converged.append(fit.converged)
            print(f"| {noise:g} px | " + " | ".join(cells)
                  + f" | {np.mean(np.concatenate(converged)):.1%} |")
            fitted, true = np.concatenate(fitted).ravel(), np.concatenate(true).ravel()
            label[setting, noise] = (np.corrcoef(fitted, true)[0, 1],
                                     float(fitted @ true / (true @ true)))
    print("\nexpression kept by the label (all yaws): correlation / slope of fitted on true\n")
    print("| noise | " + " | ".join(settings) + " |")
    print("|" + "---|" * (len(settings) + 1))
    for noise in NOISE_PX:
        print(f"| {noise:g} px | " + " | ".join(
            f"{label[setting, noise][0]:.3f} / {label[setting, noise][1]:.3f}"
            for setting in settings) + " |")
    print("\nidentity pooled per subject (fixed vertices, yaw +-60): expression RMSE per image / "
          "pooled (subject_ids)\n")
    print("| images per subject | " + " | ".join(f"{noise:g} px" for noise in POOLING_NOISE_PX)
          + " |")
    print("|" + "---|" * (len(POOLING_NOISE_PX) + 1))
    faces = args.faces * 4
    for per_subject in IMAGES_PER_SUBJECT:
        cells = [pooled_round_trip(model, faces, per_subject, noise, seed=7 + per_subject)
                 for noise in POOLING_NOISE_PX]
        print(f"| {per_subject} | " + " | ".join(f"{alone:.3f} / {pooled:.3f}"
                                                 for alone, pooled in cells) + " |")


if __name__ == "__main__":
    main()
