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
import os
import re
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from fitting.identity_clusters import ClusterSettings
from fitting.image import DEFAULT_MAX_PIXELS
from fitting.landmarks import LANDMARKERS, SELECTION_POLICIES
from fitting.video import DEFAULT_CHUNK_SECONDS, DEFAULT_MAX_VIDEO_SECONDS, DEFAULT_VIDEO_FPS
from pipelines import accounting, writing
from pipelines.collect import ToOneList
from pipelines.dask_partitions import bound_partitions, uses_dask
from pipelines.errors import OptionsError
from pipelines.labelling import LabelFaces, describes_faces, landmarker_options, naming
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
from pipelines.sources import SourceItem, expand_input, has_videos, is_video_name
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
                                 "input files, else 1). Does not apply when --runner or "
                                 "--direct_running_mode is given")
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


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# Below this many input files the default is one process: starting the multi-process
# DirectRunner costs more than it saves (the 10-image demo: 7.7 s in process, 13.9 s on two;
# 200 faces: 0.61x; benchmarks/scaling.py, RESULTS.md "Scaling"); at 3000 faces two
# processes gave 1.33x.
PARALLEL_FROM_ITEMS = 2000


# A video counts as this many input files towards PARALLEL_FROM_ITEMS: about 20 s of video
# at the default --video-fps 5, so 20 such videos start the workers as 2000 photos do.
VIDEO_ITEMS = 100


def input_work(items) -> int:
    """The launcher's measure of a run's size: a file per image, ``VIDEO_ITEMS`` per video.

    An archive counts as one file: its members are not listed in the launcher.
    """
    return sum(VIDEO_ITEMS if is_video_name(item.uri) else 1
               for item in items if isinstance(item, SourceItem))


def default_workers(work: int) -> int:
    """``--workers`` when not given: every core from ``PARALLEL_FROM_ITEMS`` of
    :func:`input_work` up, else one process.

    Videos used to run in one process: Beam's multi-process DirectRunner lost faces of a
    large collection when video frames were flattened with the images before detection. With
    frames detected in a step of their own, 12 000 frames of 100 videos on ``--workers 2``
    gave the shards of ``--workers 1`` byte for byte, every frame accounted for (RESULTS.md,
    "Threads per worker").
    """
    return available_cores() if work >= PARALLEL_FROM_ITEMS else 1


# The thread pools of NumPy's BLAS and of OpenMP, sized when a process first loads them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_threads(workers: int) -> None:
    """Size the BLAS and OpenMP thread pools of worker processes started after this call to
    their share of the cores (at least one), where the environment does not say already.

    Each worker would otherwise start a pool as large as the machine: on two cores,
    ``--workers 2`` labelled 12 000 video frames in 146 s with 260 s of CPU, and in 94 s with
    158 s of CPU with one thread a worker (RESULTS.md, "Threads per worker"). Changes this
    process's environment, which the workers inherit; its own pools are already sized.
    """
    per_worker = str(max(1, available_cores() // workers))
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, per_worker)


def apply_workers(options: GenerateOptions, argv: list[str] | None, work: int) -> int:
    """Set the local engine for ``--workers``; returns the worker count (0: not applied).

    ``--workers N`` above 1 runs the multi-process DirectRunner with N workers: measured
    against a Dask LocalCluster on the same machine (benchmarks/scaling.py, RESULTS.md), it
    is the faster engine on one machine. A ``--runner`` or ``--direct_running_mode`` of
    the user's own wins.
    """
    given = " ".join(argv if argv is not None else sys.argv[1:])
    if options.view_as(StandardOptions).runner or "--direct_running_mode" in given:
        return 0
    workers = options.workers or default_workers(work)
    direct = options.view_as(DirectOptions)
    if workers > 1:
        share_threads(workers)
        direct.direct_running_mode = "multi_processing"
        direct.direct_num_workers = workers
        # Workers parse the flags without this command's options and warn about each one,
        # twice a worker; their errors still show.
        harness = options.view_as(WorkerOptions)
        harness.default_sdk_harness_log_level = harness.default_sdk_harness_log_level or "ERROR"
    return workers


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
    if uses_dask(options):
        bound_partitions()
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
            with pipeline:
                build(pipeline, options, metadata, plan, run_info, items)
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
