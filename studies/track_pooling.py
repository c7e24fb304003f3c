"""Per-frame expression error on synthetic sequences, with and without identity pooled per
face track.

Run::

    .venv/bin/python -m studies.track_pooling [--sequences 8] [--frames 30] [--fps 10]
        [--size 192] [--seed 0] [--workdir DIR]

Renders ``--sequences`` sequences with ``expnet synth --frames`` (model geometry: one
identity each, expression and pose moving smoothly; no wheel needed), then labels the frames
twice with ``expnet generate`` (dlib, the open model):

- pooled: the videos themselves (``--video-fps`` = ``--fps``, so every frame is sampled):
  faces are linked into tracks and each track is fitted with one shared identity;
- per frame: the same decoded frames, written as PNG files (lossless, so the detector sees
  the same pixels), each fitted on its own as a still image.

Frames labelled by both runs are joined to their exact labels; prints, per run, the
expression RMSE (sigma units, over frames and the 29 components), the RMS label (the error of
predicting neutral, the baseline), the correlation of fitted and true label per component
(averaged over the 29), the frame-to-frame jitter (RMS of the change of the error
between consecutive frames of a sequence) and the identity RMSE.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from fitting.video import decode_chunk, plan_chunks, probe
from pipelines import generate, synth
from schemas import rows as columns
from studies.label_fidelity import mean_correlation

LIMIT = 100_000_000


def render(workdir: str, args) -> str:
    folder = os.path.join(workdir, "sequences")
    synth.run(["--geometry", "model", "--count", str(args.sequences), "--frames",
               str(args.frames), "--fps", str(args.fps), "--size", str(args.size),
               "--seed", str(args.seed), "--max-yaw", "25", "--output", folder, "--quiet"])
    return os.path.join(folder, synth.SYNTH_MANIFEST_NAME)


def write_frames(manifest: str, folder: str, fps: int) -> None:
    """Every frame of every sequence as ``folder/<sequence>-<frame>.png``."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.dirname(manifest)
    for line in open(manifest, encoding="utf-8"):
        row = json.loads(line)
        path = os.path.join(base, row["path"])
        info = probe(path, max_pixels=LIMIT)
        for chunk in plan_chunks(info, fps=fps):
            for frame in decode_chunk(path, chunk, fps=fps, max_pixels=LIMIT):
                name = f"{row['index']:06d}-{frame.sample_index:06d}.png"
                Image.fromarray(frame.image).save(os.path.join(folder, name))


def fitted_rows(output: str) -> list:
    paths = sorted(glob.glob(os.path.join(output, "part-*.parquet")))
    return pq.read_table(paths, columns=[columns.SOURCE_URI, columns.FRAME_INDEX,
                                         columns.EXPRESSION, columns.IDENTITY]).to_pylist()


def keyed_pooled(rows: list) -> dict:
    """(sequence, frame) -> row of the video run."""
    return {(int(os.path.basename(row[columns.SOURCE_URI]).split(".")[0]),
             row[columns.FRAME_INDEX]): row for row in rows}


def keyed_frames(rows: list) -> dict:
    """(sequence, frame) -> row of the per-frame run (from the PNG names)."""
    keyed = {}
    for row in rows:
        sequence, frame = os.path.basename(row[columns.SOURCE_URI]).split(".")[0].split("-")
        keyed[(int(sequence), int(frame))] = row
    return keyed


def ground_truth(manifest: str) -> dict:
    truth = {}
    for line in open(manifest, encoding="utf-8"):
        row = json.loads(line)
        for frame in row["frames"]:
            truth[(row["index"], frame["frame"])] = (np.array(frame["expression"]),
                                                     np.array(row["identity"]))
    return truth


def scores(keys: list, fitted: dict, truth: dict) -> dict:
    error = np.array([np.asarray(fitted[key][columns.EXPRESSION]) - truth[key][0]
                      for key in keys])
    identity = np.array([np.asarray(fitted[key][columns.IDENTITY])[:len(truth[key][1])]
                         - truth[key][1][:len(fitted[key][columns.IDENTITY])] for key in keys])
    consecutive = [index for index in range(1, len(keys))
                   if keys[index][0] == keys[index - 1][0]
                   and keys[index][1] == keys[index - 1][1] + 1]
    jitter = error[consecutive] - error[[index - 1 for index in consecutive]]
    fitted_expression = np.array([fitted[key][columns.EXPRESSION] for key in keys])
    true_expression = np.array([truth[key][0] for key in keys])
    return {"rmse": float(np.sqrt(np.mean(error ** 2))),
            "corr": mean_correlation(fitted_expression, true_expression),
            "jitter": float(np.sqrt(np.mean(jitter ** 2))) if consecutive else float("nan"),
            "identity_rmse": float(np.sqrt(np.mean(identity ** 2)))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="track-pooling-")
    manifest = render(workdir, args)
    frames_folder = os.path.join(workdir, "frames")
    write_frames(manifest, frames_folder, args.fps)
    outputs = {name: os.path.join(workdir, name) for name in ("pooled", "per-frame")}
    generate.run(["--input", manifest, "--output", outputs["pooled"], "--video-fps",
                  str(args.fps), "--quiet", "--overwrite"])
    generate.run(["--input", frames_folder, "--output", outputs["per-frame"], "--quiet",
                  "--overwrite"])
    pooled = keyed_pooled(fitted_rows(outputs["pooled"]))
    per_frame = keyed_frames(fitted_rows(outputs["per-frame"]))
    truth = ground_truth(manifest)
    keys = sorted(set(pooled) & set(per_frame))
    neutral = float(np.sqrt(np.mean([truth[key][0] ** 2 for key in keys])))
    print(f"{args.sequences} sequences x {args.frames} frames ({args.size} px, seed "
          f"{args.seed}): {len(keys)} frames labelled by both runs of {len(truth)} "
          f"(pooled {len(pooled)}, per frame {len(per_frame)}); workdir {workdir}")
    print("| run | expr RMSE | neutral RMSE | ratio | corr | jitter | identity RMSE |")
    print("|---|---|---|---|---|---|---|")
    for name, fitted in (("per frame", per_frame), ("pooled per track", pooled)):
        found = scores(keys, fitted, truth)
        print(f"| {name} | {found['rmse']:.3f} | {neutral:.3f} | {found['rmse'] / neutral:.3f} "
              f"| {found['corr']:.3f} | {found['jitter']:.3f} | {found['identity_rmse']:.3f} |")


if __name__ == "__main__":
    main()
