"""`expnet generate`: label a face collection with 29-D 3DMM expression coefficients.

Run on the bundled photos with the DirectRunner::

    expnet generate --input examples/faces --output /tmp/expnet-out

Every input ends as exactly one of: a row in ``part-*.parquet``, a failure row in
``failures/``, a duplicate or (with ``--incremental``) content already in the dataset;
``stats.json`` records the counts and checks that. ``manifest.json``, written last, lists the
shards of a complete dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
)

from fitting.identity_clusters import ClusterSettings
from fitting.image import DEFAULT_MAX_PIXELS
from fitting.landmarks import LANDMARKERS, SELECTION_POLICIES
from fitting.video import DEFAULT_CHUNK_SECONDS, DEFAULT_MAX_VIDEO_SECONDS, DEFAULT_VIDEO_FPS
from pipelines import accounting, writing
from pipelines.collect import ToOneList
from pipelines.dask_partitions import uses_dask
from pipelines.errors import OptionsError
from pipelines.labelling import LabelFaces, describes_faces, landmarker_options, naming
from pipelines.launch import run_to_end
from pipelines.local_engine import PARALLEL_FROM_ITEMS, VIDEO_ITEMS, apply_workers, input_work
from pipelines.output_state import (
    DatasetStateError,
    RunPlan,
    completed_by,
    finalize,
    known_ids,
    plan_run,
    read_stats,
)
from pipelines.progress import PROGRESS
from pipelines.resources import filesystem_options, with_filesystems
from pipelines.sources import expand_input, has_videos
from pipelines.warmup import warm_dask_workers
from schemas import DatasetMetadata

MAX_FILE_BYTES = 64 * 1024 * 1024
class GenerateOptions(PipelineOptions):
    """Flags of ``expnet generate`` (Beam's own flags, e.g. ``--runner``, are accepted too)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", nargs="+", default=None,
                            help="folders, globs, files (images; videos .mp4 .mov .avi .mkv "
                                 ".webm), archives of them (.tar, .tar.gz, .zip) or manifests "
                                 "(.csv, .jsonl); local or gs://, s3://")
        parser.add_argument("--output", default=None, help="output folder (local or remote)")
        parser.add_argument("--model", default="open",
                            help="'open' (embedded CC0 model) or a converted model .npz")
        parser.add_argument("--landmarker", default="dlib", choices=LANDMARKERS)
        parser.add_argument("--landmarker-weights", "--landmarker_weights",
                            dest="landmarker_weights", default=None,
                            help="FAN weights file (default: the torch hub cache)")
        parser.add_argument("--crop-size", "--crop_size", dest="crop_size", type=int,
                            default=224, help="side of the stored face crop in pixels")
        parser.add_argument("--jpeg-quality", "--jpeg_quality", dest="jpeg_quality",
                            type=int, default=95)
        parser.add_argument("--faces", default="largest", choices=SELECTION_POLICIES,
                            help="which faces of an image to keep")
        parser.add_argument("--label-from-parent", "--label_from_parent",
                            dest="label_from_parent", action="store_true",
                            help="label = name of the image's parent folder")
        parser.add_argument("--subject-from-parent", "--subject_from_parent",
                            dest="subject_from_parent", action="store_true",
                            help="subject = name of the image's parent folder (one identity "
                                 "fitted per subject)")
        parser.add_argument("--subject-pattern", "--subject_pattern", dest="subject_pattern",
                            default=None,
                            help="regex on the file name giving the subject (first group, "
                                 "else the whole match)")
        parser.add_argument("--num-shards", "--num_shards", dest="num_shards", type=int,
                            default=0, help="fixed shard count; 0 = about 256 MB a shard")
        parser.add_argument("--subject-from-faces", "--subject_from_faces",
                            dest="subject_from_faces", action="store_true",
                            help="images without a subject get one from who the face is: "
                                 "faces whose identity descriptors cluster tightly (same "
                                 "folder) share subject 'auto:<cluster id>' and one fitted "
                                 "identity, if the pooled fit agrees with the per-image "
                                 "fits; other faces keep no subject (identity per image). "
                                 "Stores the descriptors (implies --face-descriptors)")
        parser.add_argument("--check-subjects", "--check_subjects", dest="check_subjects",
                            action="store_true",
                            help="check given subjects as auto ones are checked: faces a "
                                 "subject's pooled identity does not fit are fitted alone "
                                 "(the subject column keeps the given value)")
        parser.add_argument("--face-descriptors", "--face_descriptors",
                            dest="face_descriptors", action="store_true",
                            help="store each face's 128-D dlib identity descriptor in the "
                                 "face_descriptor column (null otherwise)")
        parser.add_argument("--identity-threshold", "--identity_threshold",
                            dest="identity_threshold", type=float,
                            default=ClusterSettings.threshold,
                            help="longest descriptor distance that joins two faces in "
                                 "--subject-from-faces (dlib: one person within about 0.6)")
        parser.add_argument("--identity-max-diameter", "--identity_max_diameter",
                            dest="identity_max_diameter", type=float,
                            default=ClusterSettings.max_diameter,
                            help="longest distance between any two faces of a cluster")
        parser.add_argument("--identity-max-cluster", "--identity_max_cluster",
                            dest="identity_max_cluster", type=int,
                            default=ClusterSettings.max_cluster_size,
                            help="most faces in one automatic subject")
        parser.add_argument("--identity-min-separation", "--identity_min_separation",
                            dest="identity_min_separation", type=float,
                            default=ClusterSettings.min_separation,
                            help="keep a cluster only if its nearest other face is this many "
                                 "cluster diameters away (0 turns the rule off)")
        parser.add_argument("--identity-bucket-bits", "--identity_bucket_bits",
                            dest="identity_bucket_bits", type=int, default=0,
                            help="split each folder into 2**N descriptor buckets clustered "
                                 "apart (for folders of very many faces)")
        parser.add_argument("--subject-chunk-size", "--subject_chunk_size",
                            dest="subject_chunk_size", type=int, default=256,
                            help="most images of one subject fitted together")
        parser.add_argument("--max-pixels", "--max_pixels", dest="max_pixels", type=int,
                            default=DEFAULT_MAX_PIXELS, help="refuse larger images")
        parser.add_argument("--max-file-bytes", "--max_file_bytes", dest="max_file_bytes",
                            type=int, default=MAX_FILE_BYTES, help="refuse larger files")
        parser.add_argument("--video-fps", "--video_fps", dest="video_fps", type=float,
                            default=DEFAULT_VIDEO_FPS,
                            help="frames sampled per second of video: the first frame of "
                                 f"each 1/F s slot, by timestamp (default {DEFAULT_VIDEO_FPS:g})")
        parser.add_argument("--max-frames-per-video", "--max_frames_per_video",
                            dest="max_frames_per_video", type=int, default=0,
                            help="sample only the first N slots of each video (0: no limit)")
        parser.add_argument("--video-chunk-seconds", "--video_chunk_seconds",
                            dest="video_chunk_seconds", type=float,
                            default=DEFAULT_CHUNK_SECONDS,
                            help="videos are decoded in chunks this long, each its own task "
                                 f"(default {DEFAULT_CHUNK_SECONDS:g})")
        parser.add_argument("--max-video-seconds", "--max_video_seconds",
                            dest="max_video_seconds", type=float,
                            default=DEFAULT_MAX_VIDEO_SECONDS,
                            help="refuse videos declared longer than this "
                                 f"(default {DEFAULT_MAX_VIDEO_SECONDS:g})")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the dataset an earlier run left in --output")
        parser.add_argument("--incremental", action="store_true",
                            help="add only images whose content is new to the dataset in "
                                 "--output, as new shards beside the earlier ones")
        parser.add_argument("--workers", type=int, default=None,
                            help="processes of a local run; 1 runs in this process "
                                 f"(default: every core for {PARALLEL_FROM_ITEMS} or more "
                                 f"input files, a video counting as {VIDEO_ITEMS}, else 1). "
                                 "Does not apply when --runner or --direct_running_mode is "
                                 "given")
        parser.add_argument("--quiet", action="store_true", help="print no summary")


def validate_options(options: GenerateOptions) -> list[str]:
    """Every problem with the flags, before anything runs."""
    problems = []
    if not options.input:
        problems.append("--input is required (one or more folders, globs, archives, "
                        "manifests)")
    if not options.output:
        problems.append("--output is required")
    if options.crop_size < 32 or options.crop_size > 4096:
        problems.append(f"--crop-size must be in 32..4096, got {options.crop_size}")
    if not 1 <= options.jpeg_quality <= 100:
        problems.append(f"--jpeg-quality must be in 1..100, got {options.jpeg_quality}")
    if options.num_shards < 0:
        problems.append(f"--num-shards must be >= 0, got {options.num_shards}")
    if options.subject_chunk_size < 1:
        problems.append("--subject-chunk-size must be >= 1")
    if options.subject_from_parent and options.subject_pattern:
        problems.append("give --subject-from-parent or --subject-pattern, not both")
    if options.subject_pattern is not None:
        try:
            re.compile(options.subject_pattern)
        except re.error as error:
            problems.append(f"--subject-pattern is not a regular expression: {error}")
    if not 0 < options.identity_threshold <= options.identity_max_diameter:
        problems.append("need 0 < --identity-threshold <= --identity-max-diameter, got "
                        f"{options.identity_threshold} and {options.identity_max_diameter}")
    if options.identity_min_separation < 0:
        problems.append(f"--identity-min-separation must be >= 0, got "
                        f"{options.identity_min_separation}")
    if options.identity_max_cluster < 2:
        problems.append(f"--identity-max-cluster must be >= 2, got "
                        f"{options.identity_max_cluster}")
    if not 0 <= options.identity_bucket_bits <= 16:
        problems.append(f"--identity-bucket-bits must be in 0..16, got "
                        f"{options.identity_bucket_bits}")
    if options.workers is not None and options.workers < 1:
        problems.append(f"--workers must be >= 1, got {options.workers}")
    if options.max_pixels < 1 or options.max_file_bytes < 1:
        problems.append("--max-pixels and --max-file-bytes must be positive")
    if not 0 < options.video_fps <= MAX_VIDEO_FPS:
        problems.append(f"--video-fps must be in (0, {MAX_VIDEO_FPS}], got {options.video_fps}")
    if options.max_frames_per_video < 0:
        problems.append(f"--max-frames-per-video must be >= 0, got "
                        f"{options.max_frames_per_video}")
    if not options.video_chunk_seconds > 0 or not options.max_video_seconds > 0:
        problems.append("--video-chunk-seconds and --max-video-seconds must be positive")
    return problems


MAX_VIDEO_FPS = 1000.0


def dataset_metadata(options: GenerateOptions):
    """Load the model and landmarker description once, in the launcher: checks both early."""
    from fitting.landmarks import create_landmarker
    from fitting.models import load_model
    from pipelines import version

    model = load_model(options.model)
    landmarker = create_landmarker(options.landmarker, **landmarker_options(options))
    landmarker.check_available()
    return model, DatasetMetadata(
        model_id=model.model_id, model_hash=model.content_hash,
        expression_std=tuple(float(value) for value in model.expression_std),
        landmarker=options.landmarker, landmarker_version=landmarker.version,
        pipeline_version=version.VERSION, blendshape_names=model.blendshape_names)


def list_items(options: GenerateOptions) -> list:
    """Every input spec expanded, in the launcher, to the files and archives it names.

    ``Create`` then splits the work into partitions (Beam's Dask runner keeps Create's
    partitions through every later step, and its Reshuffle does nothing), and workers get
    small tasks, never image bytes.
    """
    return [item for spec in options.input for item in expand_input(spec, naming(options))]


def build(pipeline: beam.Pipeline, options: GenerateOptions, metadata: DatasetMetadata,
          plan: RunPlan, run_info: dict, items: list | None = None):
    """Add the generate job to ``pipeline``.

    Everything ends in one ``Finalize`` step that runs after shards, failures and counts are
    written and writes ``manifest.json`` last, so a dataset with a manifest is complete. (It
    is also the single leaf: Beam's Dask runner computes only the graph of the last step.)
    """
    output = options.output.rstrip("/")
    filesystems = filesystem_options(options)
    earlier_ids = None
    if plan.previous_files:
        earlier_ids = (pipeline
                       | "EarlierFiles" >> beam.Create(plan.previous_files)
                       | "KnownIds" >> beam.FlatMap(with_filesystems(
                           lambda name: known_ids(output, name), filesystems)))
    if items is None:
        items = list_items(options)
    labelled = (pipeline
                | "InputItems" >> beam.Create(items)
                | "Label" >> LabelFaces(options, metadata.model_hash, earlier_ids,
                                        videos=has_videos(items)))
    rows = labelled["rows"] | "Rows" >> beam.Values()
    shards = (rows
              | "WriteShards" >> writing.WriteShards(output, metadata,
                                                     num_shards=options.num_shards,
                                                     prefix=plan.shard_prefix,
                                                     filesystems=filesystems)
              | "AllShards" >> ToOneList()
              | "TagShards" >> beam.Map(lambda entries: ("shards", entries)))
    failures = ((labelled["read_failures"], labelled["failures"])
                | "AllFailures" >> beam.Flatten()
                | "FailureList" >> ToOneList()
                | "WriteFailures" >> beam.Map(with_filesystems(
                    lambda found: ("failures", writing.write_failures(
                        output, found, prefix=plan.shard_prefix)), filesystems)))
    written = labelled["rows"] | "WrittenIds" >> beam.MapTuple(
        lambda source, pending: (source, pending.id))
    check_notes = labelled["rows"] | "CheckNotes" >> beam.FlatMapTuple(
        lambda _, pending: [pending.check_note] if pending.check_note else [])
    parts = {name: labelled[name]
             for name in ("inputs", "read_failures", "duplicates", "existing", "failures")}
    counts = ({**parts, "written": written, "check_notes": check_notes}
              | "Account" >> accounting.CountOutcomes()
              | "TagCounts" >> beam.Map(lambda found: ("counts", found)))
    return ((shards, failures, counts)
            | "AllOutputs" >> beam.Flatten()
            | "CollectOutputs" >> ToOneList()
            | "AsDict" >> beam.Map(dict)
            | "Finalize" >> beam.Map(with_filesystems(finalize, filesystems), output=output,
                                     metadata=metadata, plan=plan, run_info=run_info))


# Flags that change what a run writes; two runs with equal values write equal datasets.
FINGERPRINT_FLAGS = ("input", "crop_size", "jpeg_quality", "faces", "label_from_parent",
                     "subject_from_parent", "subject_pattern", "num_shards",
                     "subject_chunk_size", "max_pixels", "max_file_bytes", "incremental",
                     "video_fps", "max_frames_per_video", "video_chunk_seconds",
                     "max_video_seconds", "subject_from_faces", "check_subjects",
                     "face_descriptors", "identity_threshold", "identity_max_diameter",
                     "identity_max_cluster", "identity_min_separation", "identity_bucket_bits")


def run_fingerprint(options: GenerateOptions, metadata: DatasetMetadata) -> str:
    """sha256 of what determines a run's output: flags, model, landmarker, code version.

    A release that changes labels for the same input must bump ``pipelines.version``.
    """
    described = {flag: getattr(options, flag) for flag in FINGERPRINT_FLAGS}
    described.update(model=metadata.model_hash, landmarker=metadata.landmarker,
                     landmarker_version=metadata.landmarker_version,
                     pipeline_version=metadata.pipeline_version)
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``expnet generate``: 0 when the run accounted for every input, 1 if not, 2 on bad use."""
    from fitting.models import ModelFileError

    try:
        stats = run(argv)
    except (OptionsError, DatasetStateError, ModelFileError, FileNotFoundError) as error:
        print(f"expnet generate: error: {error}", file=sys.stderr)
        return 2
    return 0 if stats["invariant"]["holds"] else 1


def run(argv=None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run ``expnet generate``; returns the ``stats.json`` document.

    Rerunning the command of a complete dataset changes nothing and returns its stats; after
    an interruption (even ``kill -9``), the same command completes the dataset.

    Parameters
    ----------
    argv : list of str, optional
        The command's flags (default: ``sys.argv[1:]``).
    test_pipeline : beam.Pipeline, optional
        Build the job into this pipeline (a ``TestPipeline``) instead of one made from the
        flags, as Beam's examples do; it runs when this function returns from building it.

    Raises
    ------
    OptionsError        when the flags are invalid (nothing has run)
    DatasetStateError   when ``--output`` holds a dataset made otherwise, and neither
                        ``--overwrite`` nor ``--incremental`` says what to do with it
    """
    options = GenerateOptions(argv)
    problems = validate_options(options)
    if problems:
        raise OptionsError("; ".join(problems))
    options.view_as(SetupOptions).save_main_session = False
    # The launcher reads and writes the output folder too: same filesystem options.
    FileSystems.set_options(options)
    items = list_items(options)
    workers = apply_workers(options, argv, input_work(items))
    release_workers = warm_workers(options)
    try:
        return _run(options, items, workers, test_pipeline)
    finally:
        release_workers()


def _run(options: GenerateOptions, items: list, workers: int,
         test_pipeline: beam.Pipeline | None) -> dict:
    """``run`` once the options are checked and the engine is chosen."""
    from pipelines import summary

    _, metadata = dataset_metadata(options)
    output = options.output.rstrip("/")
    fingerprint = run_fingerprint(options, metadata)
    # An incremental run always looks for new content, so it is never a no-op.
    rerun = not (options.overwrite or options.incremental)
    if rerun and completed_by(output, fingerprint):
        stats = read_stats(output)
    else:
        plan = plan_run(output, model_hash=metadata.model_hash, overwrite=options.overwrite,
                        incremental=options.incremental)
        run_info = describe_run(options, metadata, fingerprint)
        if not options.quiet:
            PROGRESS.start(share_with_workers=workers > 1)
        try:
            pipeline = (test_pipeline if test_pipeline is not None
                        else beam.Pipeline(options=options))
            build(pipeline, options, metadata, plan, run_info, items)
            run_to_end(pipeline)
        finally:
            PROGRESS.stop()
        stats = read_stats(output)
    if not options.quiet:
        print(summary.format_summary(stats, output))
    return stats


def warm_workers(options: GenerateOptions):
    """Start loading the run's detector and model on the workers at ``--dask_client_address``
    (:mod:`pipelines.warmup`); returns the function that releases them. A no-op off Dask, and
    without an address: Beam's runner then starts its own cluster when the pipeline runs."""
    if not uses_dask(options):
        return _nothing
    from apache_beam.runners.dask.dask_runner import DaskOptions

    address = options.view_as(DaskOptions).address
    if not address:
        return _nothing
    return warm_dask_workers(address, options.landmarker, landmarker_options(options),
                             options.model, describes_faces(options))


def _nothing() -> None:
    return None


def describe_run(options: GenerateOptions, metadata: DatasetMetadata,
                 fingerprint: str) -> dict:
    """What ``stats.json`` says about the run besides its counts."""
    from pipelines import version

    return {
        "started": time.time(),
        "fingerprint": fingerprint,
        "output": options.output.rstrip("/"),
        "options": {key: value for key, value in options.get_all_options().items()
                    if value is not None and not key.startswith("_")},
        "versions": version.versions(),
        "model": {"id": metadata.model_id, "hash": metadata.model_hash},
        "landmarker": {"name": metadata.landmarker, "version": metadata.landmarker_version},
    }
