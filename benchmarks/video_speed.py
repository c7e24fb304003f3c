"""Video decode speed against plain decoding loops, and labelling throughput against images.

    .venv/bin/python -m benchmarks.video_speed [--seconds 20] [--width 640] [--height 360]
        [--label-frames 40]

In a temporary folder, in this one process (BLAS threads pinned to 1):

1. Decode (CPU seconds, least of 5): an H.264 clip (pans and zooms over a bundled photo,
   30 fps) sampled at 5 fps by ``fitting.video`` (one chunk; and 2 s chunks, each after a
   seek) against a plain PyAV loop doing the same work (decode every frame, convert the
   sampled ones to RGB) and OpenCV's ``VideoCapture`` loop (decode every frame, ``grab`` /
   ``retrieve`` the sampled ones).
2. Labelling: ``expnet generate`` on a clip of LABEL_FRAMES sampled frames against the same
   frames as JPEG files at the same resolution (the image path); frames/s of wall time,
   decode included, after a warm-up run, the better of two alternating runs.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402

from fitting.video import decode_chunk, plan_chunks, probe  # noqa: E402
from pipelines import generate  # noqa: E402
from tests.pipelines.videos import pan_zoom, write_video  # noqa: E402

SAMPLE_FPS = 5
SOURCE_FPS = 30
LIMIT = 100_000_000


def sampled_by_library(path: Path, *, chunk_seconds: float) -> int:
    info = probe(str(path), max_pixels=LIMIT)
    chunks = plan_chunks(info, fps=SAMPLE_FPS, chunk_seconds=chunk_seconds)
    return sum(1 for chunk in chunks for _ in decode_chunk(str(path), chunk, fps=SAMPLE_FPS,
                                                           max_pixels=LIMIT))


def sampled_by_plain_pyav(path: Path) -> int:
    """The plainest PyAV loop: every frame decoded, one in six converted to RGB."""
    kept = 0
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % (SOURCE_FPS // SAMPLE_FPS) == 0:
                frame.to_ndarray(format="rgb24")
                kept += 1
    return kept


def sampled_by_opencv(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    kept, index = 0, 0
    while capture.grab():
        if index % (SOURCE_FPS // SAMPLE_FPS) == 0:
            ok, image = capture.retrieve()
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            kept += ok
        index += 1
    capture.release()
    return kept


def best_of(function, repeats: int = 5) -> tuple[float, int]:
    """Least CPU time of ``repeats`` calls (all threads): steadier than wall time on a
    shared machine."""
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return min(times), result


def decode_benchmark(folder: Path, *, seconds: int, size: tuple) -> list[str]:
    frames = pan_zoom("obama.jpg", seconds * SOURCE_FPS, size=size, margin=3.0)
    path = write_video(folder / "clip.mp4", frames, fps=SOURCE_FPS, gop=SOURCE_FPS * 2)
    runs = {
        "plain PyAV loop": lambda: sampled_by_plain_pyav(path),
        "fitting.video, one chunk": lambda: sampled_by_library(path, chunk_seconds=3600),
        "fitting.video, 2 s chunks (seeks)": lambda: sampled_by_library(path, chunk_seconds=2),
        "OpenCV VideoCapture loop": lambda: sampled_by_opencv(path),
    }
    results = {name: best_of(run) for name, run in runs.items()}
    baseline = results["plain PyAV loop"][0]
    lines = [f"decode: {seconds} s of {size[0]}x{size[1]} H.264 at {SOURCE_FPS} fps, "
             f"sampled at {SAMPLE_FPS} fps, least CPU time of 5"]
    for name, (elapsed, kept) in results.items():
        lines.append(f"  {name:<36} {kept:4d} frames  {elapsed:6.3f} s  "
                     f"{seconds * SOURCE_FPS / elapsed:7.0f} decoded frames/s  "
                     f"x{elapsed / baseline:.2f} of plain PyAV")
    return lines


def label_run(source: Path, output: Path) -> tuple[float, int]:
    """Wall seconds and rows of one ``expnet generate`` run in this process."""
    start = time.perf_counter()
    stats = generate.run(["--input", str(source), "--output", str(output), "--quiet",
                          "--workers", "1", "--video-fps", str(SAMPLE_FPS)])
    return time.perf_counter() - start, stats["rows"]


def label_benchmark(folder: Path, *, frames: int, size: tuple) -> list[str]:
    images = pan_zoom("obama.jpg", frames * (SOURCE_FPS // SAMPLE_FPS), size=size, margin=3.0)
    video_folder, image_folder = folder / "video", folder / "images"
    video_folder.mkdir()
    image_folder.mkdir()
    write_video(video_folder / "clip.mp4", images, fps=SOURCE_FPS, gop=SOURCE_FPS * 2)
    step = SOURCE_FPS // SAMPLE_FPS
    for index, image in enumerate(images[::step]):
        # Quality 95: about the quality of the video's frames.
        cv2.imwrite(str(image_folder / f"{index:05d}.jpg"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    runs = (("image path (JPEG files)", image_folder), ("video path (one .mp4)", video_folder))
    # A first run pays the one-time costs (imports, detector and model loading) for both.
    label_run(image_folder, folder / "warm-up")
    results = {}
    for repeat in range(2):
        for name, source in runs:
            elapsed, rows = label_run(source, folder / f"out-{repeat}-{name[:5]}")
            results[name] = min(results.get(name, (elapsed, rows)), (elapsed, rows))
    baseline = results["image path (JPEG files)"]
    lines = [f"labelling: {frames} frames of {size[0]}x{size[1]}, expnet generate, one process, "
             "after a warm-up run, least wall time of 2 (alternating)"]
    for name, (elapsed, rows) in results.items():
        lines.append(f"  {name:<26} {rows:4d} rows  {elapsed:6.2f} s  "
                     f"{frames / elapsed:6.2f} frames/s  x{baseline[0] / elapsed:.2f} of the "
                     "image path's rate")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--label-frames", type=int, default=40)
    args = parser.parse_args(argv)
    size = (args.width, args.height)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for line in decode_benchmark(folder, seconds=args.seconds, size=size):
            print(line, flush=True)
        for line in label_benchmark(folder, frames=args.label_frames, size=size):
            print(line, flush=True)


if __name__ == "__main__":
    main()
