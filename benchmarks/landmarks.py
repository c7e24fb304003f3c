"""python -m benchmarks.landmarks [--repeats 3] [--fan-batch 8]: landmarker images/s.

Images per second of each landmark backend on one CPU core, split into detection and landmarks.
Inputs are the bundled photos with a face, cut around dlib's face box and resized to 250x250
(a CASIA-WebFace-like tight crop, face box about 110 px) and to 1024x768 (face box about
260 px wide). FAN uses dlib's boxes, so its detection time is dlib's. When the real 2DFAN4
weights are not in the torch hub cache, FAN is timed with a full-size ``FAN(4)`` of random
weights (same architecture and cost, meaningless points) and the output says so.
"""

from __future__ import annotations

import os

# One core: set before numpy, OpenCV and torch start their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from fitting.image import decode_image  # noqa: E402
from fitting.landmarks.dlib_backend import DlibLandmarker  # noqa: E402
from fitting.landmarks.fan_backend import WEIGHTS_FILE, FanLandmarker, hub_checkpoint_dir  # noqa: E402,E501

PHOTOS = ("astronaut.png", "biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg",
          "obama_partial_face.jpg", "obama_partial_face2.jpg")
# Output size -> width of the source region as a multiple of the dlib box width.
SIZES = {(250, 250): 2.2, (1024, 768): 4.0}


def reframe(image: np.ndarray, box: np.ndarray, size: tuple, region_per_box: float):
    """The region around ``box`` (centred, ``region_per_box`` box widths wide, aspect of
    ``size``) resized to ``size``; outside the photo is black."""
    width, height = size
    centre = (box[:2] + box[2:]) / 2.0
    zoom = width / (region_per_box * (box[2] - box[0]))
    affine = np.array([[zoom, 0.0, width / 2.0 - zoom * centre[0]],
                       [0.0, zoom, height / 2.0 - zoom * centre[1]]])
    return cv2.warpAffine(image, affine, (width, height), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_CONSTANT)


def test_images() -> dict:
    """{size: list of RGB images} from the bundled photos."""
    dlib = DlibLandmarker()
    photos = [decode_image((ROOT / "examples" / "faces" / name).read_bytes()) for name in PHOTOS]
    boxes = [dlib.detect_boxes(photo)[0][0] for photo in photos]
    return {size: [reframe(photo, box, size, factor) for photo, box in zip(photos, boxes)]
            for size, factor in SIZES.items()}


def time_split(landmarker, images: list) -> tuple[float, float]:
    """Seconds per image of detection and of landmarks (all crops in one call)."""
    started = time.perf_counter()
    boxes = [landmarker.detect_boxes(image)[0] for image in images]
    detection = time.perf_counter() - started
    started = time.perf_counter()
    landmarker.landmarks_for_boxes(images, boxes)
    landmarks = time.perf_counter() - started
    return detection / len(images), landmarks / len(images)


def fan_landmarker(batch_size: int, scratch: Path) -> tuple[FanLandmarker, bool]:
    """FAN with the real weights if cached, else a random full-size FAN(4); and which."""
    import torch
    from face_alignment.models import FAN

    real = hub_checkpoint_dir() / WEIGHTS_FILE
    if real.is_file():
        return FanLandmarker(device="cpu", batch_size=batch_size).load(), True
    torch.manual_seed(0)
    path = scratch / "random-2DFAN4.pth"
    torch.save(FAN(4).state_dict(), path)
    return FanLandmarker(path, device="cpu", batch_size=batch_size).load(), False


def best_of(repeats: int, measure, *args) -> tuple[float, float]:
    runs = [measure(*args) for _ in range(repeats)]
    return min(run[0] for run in runs), min(run[1] for run in runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--fan-batch", dest="fan_batch", type=int, default=8)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images = test_images()
    with tempfile.TemporaryDirectory() as scratch:
        fan, real_weights = fan_landmarker(args.fan_batch, Path(scratch))
        fan_name = "fan (2DFAN4)" if real_weights else "fan (random FAN(4), timing only)"
        dlib = DlibLandmarker().load()
        rows = []
        for size, batch in images.items():
            for name, landmarker in (("dlib (HOG + 68-pt predictor)", dlib), (fan_name, fan)):
                time_split(landmarker, batch)  # warm-up: allocations, first-call costs
                detection, landmarks = best_of(args.repeats, time_split, landmarker, batch)
                rows.append((name, f"{size[0]}x{size[1]}", detection, landmarks))
    print(f"one core; {len(PHOTOS)} bundled photos per size; best of {args.repeats}; "
          f"FAN batch {args.fan_batch}, boxes from dlib HOG, torch {torch.__version__}")
    print("| backend | input | detection ms/img | landmarks ms/img | images/s |")
    print("|---|---|---|---|---|")
    for name, size, detection, landmarks in rows:
        print(f"| {name} | {size} | {1000 * detection:.1f} | {1000 * landmarks:.1f} | "
              f"{1.0 / (detection + landmarks):.2f} |")
    if not real_weights:
        print(f"\n{WEIGHTS_FILE} is not in {hub_checkpoint_dir()}: FAN was timed with random "
              "weights of the same architecture; dlib/FAN agreement needs the real weights "
              "and was not measured.")
    else:
        from fitting.landmarks.evaluate import compare_landmarkers, format_table

        print("\nagreement on the 1024x768 inputs:")
        print(format_table([compare_landmarkers(dlib, fan,
                                                images[(1024, 768)])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
