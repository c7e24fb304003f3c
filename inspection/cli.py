"""`expnet inspect`: check an output folder, print its summary and write a visual report.

Run on the output of the bundled demo::

    expnet generate --input examples/faces --output /tmp/expnet-out
    expnet inspect /tmp/expnet-out --report /tmp/expnet-out-report.html

Exit status: 0 when the folder is a valid dataset, 1 when it is not (the reasons are printed:
unreadable or corrupt shards, schema or value problems, shards that disagree with each other
or with ``manifest.json``), 2 for invalid flags. Only the small columns are read for the
statistics; images are read for the sampled rows only.
"""

from __future__ import annotations

import argparse
import collections
import io
import sys

import numpy as np
from PIL import Image

from fitting.image import ImageDecodeError, decode_image
from inspection import overlay, report, units
from inspection.scan import Scan, read_rows, scan_output
from inspection.tracks import summarise_tracks
from schemas import STAGES
from schemas import rows as columns
from schemas.reader import storage_for

PERCENTILES = (5, 25, 50, 75, 95)
REPORT_NAME = "report.html"
# Failure thumbnails: larger source files are shown as their reason only.
MAX_THUMBNAIL_SOURCE_BYTES = 64 * 1024 * 1024
THUMBNAIL_SIDE = 224
SAMPLE_COLUMNS = (columns.ID, columns.SOURCE_URI, columns.IMAGE, columns.LABEL,
                  columns.LANDMARKS, columns.IDENTITY, columns.EXPRESSION, columns.ROTATION,
                  columns.SCALE, columns.TRANSLATION, columns.YAW, columns.PITCH,
                  columns.ROLL, columns.FIT_RESIDUAL, columns.BLENDSHAPES)
# Units in the per-label heatmap of mean blendshape weights (the CSV link has all of them).
HEATMAP_UNITS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="expnet inspect",
        description="Check an expnet output folder, print its summary, write an HTML report.")
    parser.add_argument("output", help="folder written by 'expnet generate' (local, gs://, ...)")
    parser.add_argument("--report", default=None,
                        help=f"HTML report to write (default: OUTPUT/{REPORT_NAME})")
    parser.add_argument("--no-report", dest="no_report", action="store_true",
                        help="only check the folder and print the summary")
    parser.add_argument("--samples", type=int, default=64,
                        help="face crops shown: half the worst fits, half a random sample; "
                             "also the most failures shown")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--model", default="open",
                        help="model the shards were labelled with, for the fitted overlay: "
                             "'open' or a converted model .npz")
    return parser


def percentiles(values: np.ndarray) -> np.ndarray | None:
    """The ``PERCENTILES`` of ``values`` (N,), linear interpolation; None when empty."""
    values = np.asarray(values, dtype=np.float64)
    return np.percentile(values, PERCENTILES) if values.size else None


def failure_counts(scan: Scan) -> dict[str, int]:
    """``{"stage/reason": count}`` in pipeline stage order, then by reason."""
    stages = scan.failures.column(columns.STAGE).to_pylist()
    reasons = scan.failures.column(columns.REASON).to_pylist()
    counts = collections.Counter(f"{stage}/{reason}" for stage, reason in zip(stages, reasons))
    order = {stage: index for index, stage in enumerate(STAGES)}
    return dict(sorted(counts.items(), key=lambda item: (
        order.get(item[0].split("/", 1)[0], len(STAGES)), item[0])))


def _distribution(values: np.ndarray, number_format: str) -> str:
    found = percentiles(values)
    if found is None:
        return "n/a (no rows)"
    return "  ".join(f"p{level} {value:{number_format}}"
                     for level, value in zip(PERCENTILES, found))


def summary_rows(scan: Scan) -> list[tuple[str, str]]:
    """(name, value) lines of the summary table, shared by the terminal and the report."""
    metadata = scan.metadata
    stats = scan.stats or {}
    rows = [
        ("output", scan.output),
        ("rows", str(scan.rows)),
        ("shards", str(len(scan.shards))),
        ("bytes", str(sum(shard.bytes for shard in scan.shards))),
        ("inputs", str(stats["inputs"]) if "inputs" in stats else "unknown (no stats.json)"),
        ("failures", str(scan.failures.num_rows)),
    ]
    rows.extend((f"  {reason}", str(count)) for reason, count in failure_counts(scan).items())
    rows.append(("duplicates", str(stats["duplicates"]) if "duplicates" in stats
                 else "unknown (no stats.json)"))
    if metadata is not None:
        rows.extend([
            ("model", f"{metadata.model_id} (sha256 {metadata.model_hash[:16]})"),
            ("landmarker", f"{metadata.landmarker} ({metadata.landmarker_version})"),
            ("labels", f"{metadata.expression_dim}-D, {metadata.expression_units} units, "
                       f"schema v{metadata.schema_version}, pipeline {metadata.pipeline_version}"),
        ])
    rows.extend([
        ("yaw (deg)", _distribution(scan.yaw, "+.1f")),
        ("pitch (deg)", _distribution(scan.pitch, "+.1f")),
        ("roll (deg)", _distribution(scan.roll, "+.1f")),
        ("fit residual", _distribution(scan.residual, ".3f")),
    ])
    rows.extend(track_rows(scan))
    return rows


def track_rows(scan: Scan) -> list[tuple[str, str]]:
    """Summary lines of the face tracks; none for a dataset of still images."""
    tracks = summarise_tracks(scan.track_id, scan.frame_index, scan.expression)
    if tracks is None:
        return []
    return [
        ("video rows", f"{tracks.video_rows} from {tracks.videos} videos, "
                       f"{tracks.tracks} face tracks"),
        ("rows per track", _distribution(tracks.lengths, ".0f")),
        ("expression step", _distribution(tracks.frame_change, ".3f")
         + "  (RMS sigma, frame to frame in a track)"),
    ]


def format_table(rows) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def choose_samples(residual: np.ndarray, count: int, *, seed: int):
    """Rows to show: the worst fits, then a seeded random sample of the others.

    Parameters
    ----------
    residual : (N,) float   fit residual of every row
    count : int             rows to show in all (at most N); the worst get the larger half

    Returns
    -------
    worst : (W,) int64      rows by decreasing residual
    random : (count - W,) int64   other rows, drawn without replacement, in dataset order
    """
    residual = np.asarray(residual)
    total = min(max(count, 0), len(residual))
    worst_count = (total + 1) // 2
    order = np.argsort(-residual, kind="stable")
    worst, rest = order[:worst_count], order[worst_count:]
    generator = np.random.default_rng(seed)
    random = np.sort(generator.choice(rest, size=total - worst_count, replace=False))
    return worst.astype(np.int64), random.astype(np.int64)


def _file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _sample_tile(row: dict, model, unit_names: tuple | None) -> report.Tile:
    """The crop with its fit drawn, and beside it the fitted expression and its top units.

    ``model`` is the shards' model or None (then nothing fitted is drawn); ``unit_names``
    the dataset's ``blendshape_names``.
    """
    caption = [_file_name(row[columns.SOURCE_URI])]
    if row[columns.LABEL] is not None:
        caption.append(f"label {row[columns.LABEL]}")
    caption.append(f"residual {row[columns.FIT_RESIDUAL]:.3f}")
    caption.append(f"yaw {row[columns.YAW]:+.0f} pitch {row[columns.PITCH]:+.0f} "
                   f"roll {row[columns.ROLL]:+.0f} deg")
    render = units.render_png(model, row[columns.EXPRESSION]) if model is not None else None
    weights = units.row_unit_weights(row, model, unit_names)
    shown = units.top_units(*weights) if weights is not None else ()
    if weights is not None and not shown:
        caption.append(f"no named unit at {units.MIN_SHOWN_WEIGHT} or more")
    try:
        jpeg = overlay.overlay_jpeg(row, model)
    except ImageDecodeError as error:
        jpeg = None
        caption.append(f"crop unreadable: {error.reason}")
    return report.Tile(jpeg, tuple(caption), render=render, units=shown)


def failure_thumbnail(uri: str) -> bytes | None:
    """A JPEG thumbnail of a failed input, or None when it cannot be read or decoded."""
    try:
        storage, path = storage_for(uri)
        with storage.open(path) as handle:
            data = handle.read(MAX_THUMBNAIL_SOURCE_BYTES + 1)
    except (OSError, ValueError, ImportError):
        # Archive members and manifest rows have no file of their own (OSError); an unknown
        # scheme is a ValueError, a known one whose fsspec package is missing an ImportError.
        return None
    if len(data) > MAX_THUMBNAIL_SOURCE_BYTES:
        return None
    try:
        image = Image.fromarray(decode_image(data))
    except ImageDecodeError:
        return None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def choose_failures(scan: Scan, count: int) -> list[dict]:
    """Up to ``count`` failure rows, taken in turn from each stage/reason so all appear."""
    by_reason = collections.defaultdict(list)
    for row in scan.failures.to_pylist():
        by_reason[f"{row[columns.STAGE]}/{row[columns.REASON]}"].append(row)
    queues = [by_reason[reason] for reason in failure_counts(scan)]
    chosen = []
    for depth in range(max((len(queue) for queue in queues), default=0)):
        chosen.extend(queue[depth] for queue in queues if depth < len(queue))
    return chosen[:max(count, 0)]


def _failure_tile(row: dict) -> report.Tile:
    caption = (_file_name(row[columns.SOURCE_URI]), f"{row[columns.STAGE]}/{row[columns.REASON]}",
               row[columns.MESSAGE] or "")
    return report.Tile(failure_thumbnail(row[columns.SOURCE_URI]), caption)


def _load_model(spec: str, scan: Scan):
    """(model or None, note): the model when it is the one the shards were labelled with."""
    from fitting.models import ModelFileError, load_model

    try:
        model = load_model(spec)
    except ModelFileError as error:
        return None, f"Fitted landmarks and mesh not drawn: {error}"
    if model.content_hash != scan.metadata.model_hash:
        return None, (f"Fitted landmarks and mesh not drawn: model {spec!r} "
                      f"({model.model_id}) is not the shards' model {scan.metadata.model_id} "
                      "(pass it with --model PATH.npz).")
    return model, ("Green dots: detected landmarks; red crosses: the fitted model's landmarks "
                   "(jaw on the silhouette), joined by yellow error lines; blue: the visible "
                   "mesh of the fitted face. Beside each crop: the fitted expression drawn on "
                   "the model's mean identity, frontal, and its three strongest named units "
                   "(weights in [0, 1]) where the model has them.")


def _blendshape_section(scan: Scan) -> report.Section | None:
    """Mean blendshape weights per label; None without labelled rows that hold weights."""
    means, names = scan.blendshape_means, scan.metadata.blendshape_names
    if means is None or names is None:
        return None
    strongest = units.strongest_units(means.means, HEATMAP_UNITS)
    figure = report.label_heatmap(means.labels, means.counts, means.means[:, strongest],
                                  column_names=[names[index] for index in strongest],
                                  colour_label="mean weight", signed=False)
    table = (("label", "rows", "strongest units (mean weight)"), *(
        (label, int(count), ", ".join(f"{name} {weight:.2f}"
                                      for name, weight in units.top_units(names, row)) or "none")
        for label, count, row in zip(means.labels, means.counts, means.means)))
    csv = report.Download("blendshapes_per_label.csv", "text/csv",
                          units.label_units_csv(means.labels, means.counts, means.means, names))
    return report.Section(
        "Mean blendshape weights per label",
        note=(f"Rows per label that carry weights in brackets; the {len(strongest)} units with "
              "the largest mean in any label. The CSV holds every unit."),
        figures=(figure,), table=table, downloads=(csv,))


def build_sections(scan: Scan, *, samples: int, seed: int, model_spec: str) -> list:
    """Every section of the report after the summary."""
    sections = []
    if scan.rows:
        sections.append(report.Section(
            "Expression coefficients", figures=(report.expression_histograms(scan.expression),)))
        sections.append(report.Section("Pose and fit residual", figures=(
            report.pose_histograms(scan.yaw, scan.pitch, scan.roll, scan.residual),)))
        model, note = _load_model(model_spec, scan)
        worst, random = choose_samples(scan.residual, samples, seed=seed)
        grids = (("Worst fits", worst, note),
                 (f"Random sample (seed {seed})", random, "The same drawing, rows at random."))
        for title, positions, grid_note in grids:
            rows = read_rows(scan, positions, SAMPLE_COLUMNS) if len(positions) else []
            sections.append(report.Section(
                title, note=grid_note,
                tiles=tuple(_sample_tile(row, model, scan.metadata.blendshape_names)
                            for row in rows)))
    failures = choose_failures(scan, samples)
    sections.append(report.Section(
        "Failures",
        note=(f"{len(failures)} of {scan.failures.num_rows} failures; the source image where it "
              "is readable, else its reason." if failures else "No failures."),
        tiles=tuple(_failure_tile(row) for row in failures), tile_class=report.FAILURE_CLASS))
    if scan.label_means is not None:
        means = scan.label_means
        sections.append(report.Section(
            "Mean expression per label", note="Rows per label in brackets; sigma units.",
            figures=(report.label_heatmap(means.labels, means.counts, means.means),)))
    blendshapes = _blendshape_section(scan)
    if blendshapes is not None:
        sections.append(blendshapes)
    return sections


def write_text(path: str, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` (local, or any URI :func:`storage_for` knows)."""
    storage, inner = storage_for(path)
    with storage.filesystem.open_output_stream(inner) as handle:
        handle.write(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Run ``expnet inspect``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    if args.samples < 0:
        print("expnet inspect: error: --samples must be >= 0", file=sys.stderr)
        return 2
    scan = scan_output(args.output)
    if scan.problems:
        print(f"expnet inspect: {scan.output} is not a valid dataset:", file=sys.stderr)
        for problem in scan.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    rows = summary_rows(scan)
    print(f"expnet inspect: {scan.output}\n{format_table(rows)}")
    if not args.no_report:
        path = args.report or f"{scan.output}/{REPORT_NAME}"
        sections = build_sections(scan, samples=args.samples, seed=args.seed,
                                  model_spec=args.model)
        write_text(path, report.render_html(f"expnet inspect: {scan.output}", rows, sections))
        print(f"  report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
