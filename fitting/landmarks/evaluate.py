"""Landmark accuracy against iBUG ``.pts`` annotations, and agreement between two backends.

The error of one face is the 300-W normalised mean error: the mean point-to-point distance
over the 68 points divided by the distance between the outer eye corners (iBUG points 36 and
45, 0-based) of the annotation. Run it as::

    expnet evaluate landmarks --images DIR --annotations DIR --landmarker dlib fan
    expnet evaluate landmarks --images DIR --compare dlib fan

Images and ``.pts`` files are paired by file stem. A face counts as detected when a found face
overlaps the annotated one (intersection over union of the two landmark extents of at least
``min_iou``); the failure rate is the share of detected faces whose error exceeds the
threshold (0.08 by default, as in the 300-W papers that report failure at 8%).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from fitting.image import IMAGE_EXTENSIONS
from fitting.landmarks.faces import Face, ImageFaces, select_faces
from fitting.models.model import NUM_LANDMARKS, OUTER_EYE_CORNERS

FAILURE_THRESHOLD = 0.08
MIN_IOU = 0.3
DETECT_CHUNK = 16


class PtsFormatError(ValueError):
    """A ``.pts`` file does not follow the iBUG format."""


def read_pts(path) -> np.ndarray:
    """Points of an iBUG ``.pts`` file in 0-based pixel coordinates.

    The file holds ``version: 1``, ``n_points: N``, ``{``, N lines ``x y`` in 1-based pixel
    coordinates, ``}``.

    Returns
    -------
    points : (N, 2) float64   0-based pixels, y down

    Raises
    ------
    PtsFormatError   naming the file and what is wrong
    """
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    header = {}
    for line in lines:
        if line == "{":
            break
        key, _, value = line.partition(":")
        header[key.strip()] = value.strip()
    if "{" not in lines or "}" not in lines or "n_points" not in header:
        raise PtsFormatError(f"{path}: expected 'n_points: N' then points between '{{' and '}}'")
    body = lines[lines.index("{") + 1:lines.index("}")]
    try:
        count = int(header["n_points"])
        points = np.array([[float(value) for value in line.split()] for line in body])
    except ValueError as error:
        raise PtsFormatError(f"{path}: unreadable number ({error})") from error
    if points.shape != (count, 2) or not np.all(np.isfinite(points)):
        raise PtsFormatError(f"{path}: n_points is {count} but the body holds "
                             f"{len(body)} lines of shape {points.shape[1:]}; expected 'x y'")
    return points - 1.0


def write_pts(path, points: np.ndarray) -> None:
    """Write 0-based ``(N, 2)`` points as an iBUG ``.pts`` file (1-based coordinates)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"expected (N, 2) points, got {points.shape}")
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points + 1.0)
    Path(path).write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def normalised_mean_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """300-W error: mean point distance over the outer-eye-corner distance of ``truth``.

    Parameters
    ----------
    predicted, truth : (B, 68, 2) or (68, 2) float   pixels

    Returns
    -------
    nme : (B,) float64   (a 0-d array for single faces)

    Raises
    ------
    ValueError   on mismatched shapes, or when the annotated eye corners coincide
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape or truth.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected two (B, 68, 2) arrays, got {predicted.shape} and "
                         f"{truth.shape}")
    interocular = np.linalg.norm(truth[..., OUTER_EYE_CORNERS[0], :]
                                 - truth[..., OUTER_EYE_CORNERS[1], :], axis=-1)
    if np.any(interocular <= 0):
        raise ValueError("the annotated outer eye corners (points 36 and 45) coincide")
    return np.linalg.norm(predicted - truth, axis=-1).mean(axis=-1) / interocular


def _extent(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    low = np.maximum(box_a[:2], box_b[:2])
    high = np.minimum(box_a[2:], box_b[2:])
    inter = float(np.prod(np.clip(high - low, 0.0, None)))
    union = float(np.prod(box_a[2:] - box_a[:2]) + np.prod(box_b[2:] - box_b[:2])) - inter
    return inter / union if union > 0 else 0.0


def match_face(found: ImageFaces, truth: np.ndarray, *, min_iou: float = MIN_IOU) -> Face | None:
    """The found face that is the annotated one, or None.

    Parameters
    ----------
    found : ImageFaces
    truth : (68, 2) float   annotated points
    min_iou : float
        Least intersection over union of the landmark extents for a face to count.
    """
    target = _extent(np.asarray(truth, dtype=np.float64))
    overlaps = [_iou(_extent(face.landmarks), target) for face in found.faces]
    if not overlaps or max(overlaps) < min_iou:
        return None
    return found.faces[int(np.argmax(overlaps))]


@dataclasses.dataclass(frozen=True)
class LandmarkScores:
    """Errors of one landmarker over a set of images.

    Attributes
    ----------
    name : str                 the landmarker (or ``"B vs A"`` for an agreement)
    images : int               images evaluated
    nme : (D,) float64         error of each detected face
    failure_threshold : float  an error above this is a failure
    seconds : float            wall time of detection
    """

    name: str
    images: int
    nme: np.ndarray
    failure_threshold: float = FAILURE_THRESHOLD
    seconds: float = 0.0

    @property
    def detected(self) -> int:
        return len(self.nme)

    @property
    def detection_rate(self) -> float:
        return self.detected / self.images if self.images else 0.0

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.nme)) if self.detected else None

    @property
    def median(self) -> float | None:
        return float(np.median(self.nme)) if self.detected else None

    @property
    def failure_rate(self) -> float | None:
        if not self.detected:
            return None
        return float(np.mean(self.nme > self.failure_threshold))


def _detect_all(landmarker, images: list) -> tuple[list, float]:
    """``detect_batch`` in chunks (FAN batches crops across a chunk); results and seconds."""
    found, started = [], time.perf_counter()
    for start in range(0, len(images), DETECT_CHUNK):
        found.extend(landmarker.detect_batch(images[start:start + DETECT_CHUNK]))
    return found, time.perf_counter() - started


def evaluate_landmarker(landmarker, images: list, truths: list, *,
                        failure_threshold: float = FAILURE_THRESHOLD,
                        min_iou: float = MIN_IOU) -> LandmarkScores:
    """Score a loaded landmarker against annotations.

    Parameters
    ----------
    landmarker : a backend with ``name`` and ``detect_batch``
    images : list of (H, W, 3) uint8 RGB
    truths : list of (68, 2) float   the annotated face of each image, 0-based pixels
    failure_threshold, min_iou : float   see the module docstring
    """
    if len(images) != len(truths):
        raise ValueError(f"{len(images)} images but {len(truths)} annotations")
    found, seconds = _detect_all(landmarker, images)
    errors = []
    for result, truth in zip(found, truths):
        face = match_face(result, truth, min_iou=min_iou)
        if face is not None:
            errors.append(float(normalised_mean_error(face.landmarks, truth)))
    return LandmarkScores(landmarker.name, len(images), np.array(errors, dtype=np.float64),
                          failure_threshold=failure_threshold, seconds=seconds)


def compare_landmarkers(reference, other, images: list, *,
                        failure_threshold: float = FAILURE_THRESHOLD,
                        min_iou: float = MIN_IOU) -> LandmarkScores:
    """Agreement of ``other`` with ``reference``: its error against the reference's largest
    face, over the images where the reference found a face."""
    found, _ = _detect_all(reference, images)
    kept = [(image, select_faces(result)[0].landmarks)
            for image, result in zip(images, found) if result.faces]
    scores = evaluate_landmarker(other, [image for image, _ in kept],
                                 [points for _, points in kept],
                                 failure_threshold=failure_threshold, min_iou=min_iou)
    return dataclasses.replace(scores, name=f"{other.name} vs {reference.name}")


def pair_annotations(images_dir, annotations_dir) -> tuple[list, list]:
    """Image files and their ``.pts`` files, paired by stem.

    Returns
    -------
    pairs : list of (image path, pts path), sorted by image name
    unannotated : list of image paths without a ``.pts``
    """
    annotations = {path.stem: path for path in Path(annotations_dir).glob("*.pts")}
    pairs, unannotated = [], []
    for path in list_images(images_dir):
        if path.stem in annotations:
            pairs.append((path, annotations[path.stem]))
        else:
            unannotated.append(path)
    return pairs, unannotated


def list_images(images_dir) -> list:
    """Image files directly in ``images_dir``, sorted by name."""
    return sorted(path for path in Path(images_dir).iterdir()
                  if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def format_table(scores: list) -> str:
    """A text table of :class:`LandmarkScores`; errors and rates in percent."""
    threshold = scores[0].failure_threshold if scores else FAILURE_THRESHOLD
    header = ("landmarker", "images", "detected", "det. %", "mean NME %", "median NME %",
              f"fail % (NME>{threshold:g})", "s/image")
    lines = [header]
    for score in scores:
        lines.append((score.name, str(score.images), str(score.detected),
                      _percent(score.detection_rate), _percent(score.mean),
                      _percent(score.median), _percent(score.failure_rate),
                      f"{score.seconds / score.images:.3f}" if score.images else "-"))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="expnet evaluate landmarks",
        description="Landmark error (300-W NME) against iBUG .pts annotations, or agreement "
                    "between two landmarkers.")
    parser.add_argument("--images", required=True, help="folder of images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotations", help="folder of .pts files named like the images")
    source.add_argument("--compare", nargs=2, metavar=("REFERENCE", "OTHER"),
                        choices=("dlib", "fan"),
                        help="agreement of OTHER with REFERENCE, without annotations")
    parser.add_argument("--landmarker", nargs="+", default=["dlib"], choices=("dlib", "fan"),
                        help="landmarkers to score against --annotations")
    parser.add_argument("--landmarker-weights", dest="landmarker_weights", default=None,
                        help="FAN weights file (default: the torch hub cache)")
    parser.add_argument("--failure-threshold", dest="failure_threshold", type=float,
                        default=FAILURE_THRESHOLD, help="NME above which a face fails")
    return parser


def _create(name: str, weights: str | None):
    from fitting.landmarks import create_landmarker

    options = {"weights_path": weights} if name == "fan" and weights else {}
    return create_landmarker(name, **options).load()


def _load_images(paths: list) -> tuple[list, list]:
    from fitting.image import ImageDecodeError, decode_image

    images, kept = [], []
    for path in paths:
        try:
            images.append(decode_image(path.read_bytes()))
            kept.append(path)
        except ImageDecodeError as error:
            print(f"skipping {path}: {error}", file=sys.stderr)
    return images, kept


def main(argv: list | None = None) -> int:
    """``expnet evaluate landmarks``; prints a table, returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not Path(args.images).is_dir():
        print(f"evaluate landmarks: error: --images {args.images} is not a folder",
              file=sys.stderr)
        return 2
    try:
        if args.compare:
            images, paths = _load_images(list_images(args.images))
            reference, other = (_create(name, args.landmarker_weights)
                                for name in args.compare)
            scores = [compare_landmarkers(reference, other, images,
                                          failure_threshold=args.failure_threshold)]
            print(f"agreement on {len(paths)} images, errors relative to {args.compare[0]}")
        else:
            if not Path(args.annotations).is_dir():
                raise FileNotFoundError(f"--annotations {args.annotations} is not a folder")
            pairs, unannotated = pair_annotations(args.images, args.annotations)
            if unannotated:
                print(f"{len(unannotated)} images have no .pts and are left out",
                      file=sys.stderr)
            truths_by_path = {image: read_pts(pts) for image, pts in pairs}
            images, paths = _load_images([image for image, _ in pairs])
            if not images:
                raise FileNotFoundError(f"no annotated images in {args.images}")
            truths = [truths_by_path[path] for path in paths]
            scores = [evaluate_landmarker(_create(name, args.landmarker_weights), images,
                                          truths, failure_threshold=args.failure_threshold)
                      for name in args.landmarker]
    except (FileNotFoundError, ValueError) as error:
        print(f"evaluate landmarks: error: {error}", file=sys.stderr)
        return 2
    print(format_table(scores))
    return 0
