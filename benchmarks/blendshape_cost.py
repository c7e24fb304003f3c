"""python -m benchmarks.blendshape_cost [--faces 1024] [--batch 256]: blendshape cost vs fit.

Cost of the blendshape weights against the fit they come from, per face.

Threads are pinned to 1 before numpy loads. Landmarks of ``--faces`` faces (identity and
expression ~ N(0, 1), the poses of ``benchmarks/fit_speed.py``, 1 px noise) are fitted with
``fit_landmarks`` (jaw sliding, the pipeline's default) in batches of ``--batch``; then
``blendshape_weights`` maps the fitted codes to the 52 ARKit weights in the same batches.
The ratio is taken against the fit's own time (the fit with weights less the weights). Both
are timed in CPU time of this process, best of ``PASSES`` passes; the issue's budget is a
ratio of at most 0.10.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from fitting.blendshapes import blendshape_weights  # noqa: E402
from fitting.camera import euler_to_rotation  # noqa: E402
from fitting.fitter import fit_landmarks, project  # noqa: E402
from fitting.models import load_model  # noqa: E402
from synth.toy_model import sample_pose  # noqa: E402

PASSES = 3


def best_cpu_seconds(work, passes: int = PASSES) -> float:
    """Fastest CPU time of ``passes`` calls of ``work()``."""
    best = np.inf
    for _ in range(passes):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    model = load_model("open")
    rng = np.random.default_rng(5)
    yaw, pitch, roll, scale, translation = sample_pose(args.faces, rng)
    landmarks = project(model, rng.standard_normal((args.faces, model.expression_dim)),
                        rng.standard_normal((args.faces, model.identity_dim)),
                        euler_to_rotation(yaw, pitch, roll), scale, translation,
                        slide_contour=True)
    landmarks = landmarks + rng.standard_normal(landmarks.shape)
    starts = range(0, args.faces, args.batch)
    fits = [fit_landmarks(model, landmarks[i:i + args.batch]) for i in starts]
    # The fit includes its own blendshape weights (FitBatch.blendshapes); time them apart.
    fit_seconds = best_cpu_seconds(
        lambda: [fit_landmarks(model, landmarks[i:i + args.batch]) for i in starts])
    weight_seconds = best_cpu_seconds(
        lambda: [blendshape_weights(model, fit.expression) for fit in fits])
    per_face = 1e3 / args.faces
    print(f"{args.faces} faces in batches of {args.batch}, one thread, CPU time")
    print(f"fit_landmarks (with weights)  {fit_seconds * per_face:8.3f} ms/face")
    print(f"blendshape_weights            {weight_seconds * per_face:8.3f} ms/face")
    own = fit_seconds - weight_seconds        # the fit without its weights
    print(f"ratio weights / fit's own time {weight_seconds / own:7.3f}  (budget 0.10)")


if __name__ == "__main__":
    main()
