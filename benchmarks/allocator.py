"""python -m benchmarks.allocator [--faces 256] [--passes 5]: the fit under three allocators.

CPU seconds and page faults of one ``fit_landmarks`` call on FACES faces (open model, sliding
jaw, landmarks projected from random codes plus 1 px noise, as in fit_speed.py; best of
PASSES), each setting in a fresh process on one BLAS thread:
- glibc's defaults (a plain ``python``: its mmap and trim thresholds adjust themselves);
- Dask's worker setting, ``MALLOC_TRIM_THRESHOLD_=65536`` (its nanny starts every worker so,
  which also fixes the mmap threshold at 128 KiB);
- Dask's setting, then :func:`pipelines.allocator.tune_allocator` (what every labelling
  process does at its first heavy load).
Prints each against glibc's defaults. Whole-run figures are in benchmarks/scaling.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys, time
from benchmarks.fit_speed import make_faces
from fitting.fitter import fit_landmarks
from fitting.models import OPEN_MODEL_PATH, load_model
from pipelines.allocator import tune_allocator

faces, passes, tune = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tune"
tuned = tune_allocator() if tune else None
model = load_model(OPEN_MODEL_PATH)
landmarks, _ = make_faces(model, faces, slide_contour=True)
fit_landmarks(model, landmarks[:16], slide_contour=True)
best = None
for _ in range(passes):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.process_time()
    fit_landmarks(model, landmarks, slide_contour=True)
    seconds = time.process_time() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    if best is None or seconds < best[0]:
        best = (seconds, faults)
print(json.dumps({"seconds": best[0], "faults": best[1], "tuned": tuned}))
"""

SETTINGS = (
    ("glibc defaults", {}, "plain"),
    ("MALLOC_TRIM_THRESHOLD_=65536 (Dask)", {"MALLOC_TRIM_THRESHOLD_": "65536"}, "plain"),
    ("Dask's, then tune_allocator()", {"MALLOC_TRIM_THRESHOLD_": "65536"}, "tune"),
)


def measure(environment: dict, mode: str, faces: int, passes: int) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.update(environment, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", PROBE, str(faces), str(passes), mode],
                          cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=256)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    rows = [(name, measure(environment, mode, args.faces, args.passes))
            for name, environment, mode in SETTINGS]
    baseline = rows[0][1]["seconds"]
    print(f"one fit of {args.faces} faces, best of {args.passes}, one BLAS thread")
    print(f"{'allocator':38s} {'CPU s':>7s} {'faults':>8s} {'vs defaults':>12s}")
    for name, found in rows:
        print(f"{name:38s} {found['seconds']:7.3f} {found['faults']:8d} "
              f"{baseline / found['seconds']:11.2f}x")


if __name__ == "__main__":
    main()
