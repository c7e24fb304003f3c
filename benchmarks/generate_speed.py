"""python -m benchmarks.generate_speed [--images 400] [--size 250]: generate's time per stage.

Time `expnet generate` per stage, and against a plain Python loop doing the same steps.

Makes a CASIA-WebFace-like collection in a temporary folder (the bundled photos cut around
their face and resized to SIZE x SIZE, each copy made unique by a corner mark so that nothing
is deduplicated), then, in this one process:

1. a plain loop: decode, detect, landmarks, crop + JPEG encode, fit (batched, like the
   pipeline), write one Parquet shard; each stage timed;
2. the Beam pipeline on the DirectRunner (one worker, in memory) over the same folder.

Prints images/s of both and the Beam-overhead ratio (pipeline time / loop time - 1). Both run
on one core (BLAS threads pinned to 1 before NumPy loads).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from fitting.crop import encode_jpeg, expnet_crop  # noqa: E402
from fitting.fitter import fit_landmarks  # noqa: E402
from fitting.image import decode_image  # noqa: E402
from fitting.landmarks.dlib_backend import DlibLandmarker  # noqa: E402
from fitting.models import load_model  # noqa: E402
from pipelines import generate, writing  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"


def make_collection(folder: Path, count: int, size: int) -> None:
    """``count`` unique SIZE x SIZE face images cut from the bundled photos."""
    landmarker = DlibLandmarker().load()
    faces = []
    for path in sorted(EXAMPLES.glob("*.*")):
        if path.suffix.lower() not in (".jpg", ".png"):
            continue
        image = decode_image(path.read_bytes())
        found = landmarker.detect(image)
        if found.faces:
            # A face box of about 45 % of the image, as in CASIA-WebFace's 250 x 250 crops.
            crop = expnet_crop(image, found.faces[0].landmarks, crop_size=size, enlarge=0.6)
            faces.append(crop.image)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = faces[index % len(faces)].copy()
        # The index in base 16, one 8 x 8 corner block per digit, 16 grey levels apart: JPEG
        # keeps blocks that far apart distinct, so no two files are byte-identical.
        for digit in range(4):
            level = 16 * ((index >> (4 * digit)) % 16)
            image[:8, 8 * digit:8 * digit + 8] = level
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def plain_loop(folder: Path, output: Path) -> tuple[float, dict, int]:
    """The same steps as the pipeline in a Python loop; (seconds, per stage, faces)."""
    model = load_model("open")
    landmarker = DlibLandmarker().load()
    stages = dict.fromkeys(("read+decode", "detect", "landmarks", "crop+encode", "fit", "write"),
                           0.0)
    started = time.perf_counter()
    crops, points = [], []
    for path in sorted(folder.glob("*.jpg")):
        tick = time.perf_counter()
        image = decode_image(path.read_bytes())
        tock = time.perf_counter()
        stages["read+decode"] += tock - tick
        boxes, _ = landmarker.detect_boxes(image)
        tick = time.perf_counter()
        stages["detect"] += tick - tock
        if not len(boxes):
            continue
        [(landmarks, _)] = landmarker.landmarks_for_boxes([image], [boxes[:1]])
        tock = time.perf_counter()
        stages["landmarks"] += tock - tick
        crop = expnet_crop(image, landmarks[0])
        crops.append(encode_jpeg(crop.image))
        points.append(crop.landmarks)
        stages["crop+encode"] += time.perf_counter() - tock
    tick = time.perf_counter()
    fit = fit_landmarks(model, np.stack(points))
    tock = time.perf_counter()
    stages["fit"] += tock - tick
    table = pa.table({"image": crops, "expression": list(fit.expression.astype(np.float32))})
    (output / "loop.parquet").write_bytes(writing.parquet_bytes(table))
    stages["write"] += time.perf_counter() - tock
    return time.perf_counter() - started, stages, len(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "faces"
        make_collection(folder, args.images, args.size)
        loop_seconds, stages, loop_rows = plain_loop(folder, Path(scratch))
        started = time.perf_counter()
        stats = generate.run(["--input", str(folder), "--output", str(Path(scratch) / "out"),
                              "--quiet", "--direct_num_workers=1"])
        beam_seconds = time.perf_counter() - started
    print(f"{args.images} images of {args.size}x{args.size}, one core, dlib + open model")
    print("\n| stage (plain loop) | ms/image |\n|---|---|")
    for name, seconds in stages.items():
        print(f"| {name} | {1000 * seconds / args.images:.2f} |")
    print("\n| run | seconds | images/s |\n|---|---|---|")
    print(f"| plain Python loop | {loop_seconds:.2f} | {args.images / loop_seconds:.1f} |")
    print(f"| expnet generate (DirectRunner) | {beam_seconds:.2f} | "
          f"{args.images / beam_seconds:.1f} |")
    print(f"\nBeam overhead: {beam_seconds / loop_seconds - 1:+.1%} (rows: loop "
          f"{loop_rows}, pipeline {stats['rows']}; duplicates {stats['duplicates']}; "
          f"invariant holds {stats['invariant']['holds']})")


if __name__ == "__main__":
    main()
