"""`expnet inspect` on the shards of a real `expnet generate` run, intact and damaged."""

from __future__ import annotations

import collections
import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitting.camera import euler_to_rotation
from fitting.fitter import project
from fitting.image import ImageDecodeError, decode_image
from fitting.models import load_model
from inspection import cli as inspect
from inspection.overlay import DRAW_SCALE, draw_fit, fitted_face
from inspection.scan import read_rows, scan_output
from schemas import STAGES, DatasetMetadata
from schemas import rows as columns


def shard_paths(output):
    return sorted(output.glob("part-*.parquet"))


def read_column(output, name):
    return np.concatenate([pq.read_table(path, columns=[name]).column(name).to_numpy()
                           for path in shard_paths(output)])


def read_failures(output):
    return pq.read_table(output / "failures" / "part-00000-of-00001.parquet").to_pylist()


def summary_value(text: str, name: str) -> str:
    match = re.search(rf"^  {re.escape(name)} +(.+)$", text, re.M)
    assert match, f"no {name!r} line in:\n{text}"
    return match.group(1)


def is_readable_image(failure: dict) -> bool:
    try:
        with open(failure[columns.SOURCE_URI], "rb") as handle:
            decode_image(handle.read())
    except ImageDecodeError:
        return False
    return True


def run_inspect(capsys, *argv):
    status = inspect.main([str(argument) for argument in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def inspected(folder_run, tmp_path_factory):
    """One inspect run over the generate fixture: (output, stdout, report html, samples)."""
    output, _ = folder_run
    report = tmp_path_factory.mktemp("inspect") / "report.html"
    samples = 2
    status = inspect.main([str(output), "--report", str(report), "--samples", str(samples)])
    assert status == 0
    return output, report.read_text(encoding="utf-8"), samples


def test_summary_numbers_match_the_shards(folder_run, capsys, tmp_path):
    output, stats = folder_run
    status, text, _ = run_inspect(capsys, output, "--no-report")
    assert status == 0
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in shard_paths(output))
    assert rows > 0
    assert summary_value(text, "rows") == str(rows)
    assert summary_value(text, "shards") == str(len(shard_paths(output)))
    assert summary_value(text, "bytes") == str(sum(path.stat().st_size
                                                   for path in shard_paths(output)))
    failures = read_failures(output)
    assert summary_value(text, "failures") == str(len(failures))
    by_reason = collections.Counter(f"{row['stage']}/{row['reason']}" for row in failures)
    for reason, count in by_reason.items():
        assert summary_value(text, f"  {reason}") == str(count)
    assert summary_value(text, "duplicates") == str(stats["duplicates"])
    assert "open-makehuman" in summary_value(text, "model")
    assert summary_value(text, "landmarker").startswith("dlib")
    for name, column, decimals in (("yaw (deg)", columns.YAW, 1), ("pitch (deg)", columns.PITCH, 1),
                                   ("roll (deg)", columns.ROLL, 1),
                                   ("fit residual", columns.FIT_RESIDUAL, 3)):
        values = read_column(output, column).astype(np.float64)
        expected = np.percentile(values, (5, 25, 50, 75, 95))
        printed = [float(value) for value in re.findall(r"p\d+ ([-+]?\d+\.\d+)",
                                                        summary_value(text, name))]
        # The summary rounds to `decimals` places.
        np.testing.assert_allclose(printed, expected, atol=0.51 * 10.0 ** -decimals)


def test_report_holds_every_figure_and_one_tile_per_sample(inspected, folder_run):
    output, page, samples = inspected
    rows = len(read_column(output, columns.ID))
    for title in ("Summary", "Expression coefficients", "Pose and fit residual", "Worst fits",
                  "Random sample (seed 0)", "Failures", "Mean expression per label",
                  "Mean blendshape weights per label"):
        assert f"<h2>{title}</h2>" in page
    # Histograms of expression, of pose and residual, and the per-label heatmaps of the
    # expression and of the blendshape weights (labels set, the open model has units).
    assert page.count('<img class="figure"') == 4
    assert page.count('<img class="sample"') == min(samples, rows)
    # Failures are shown one per stage/reason in turn, stages in pipeline order; the fixture
    # has one failure per reason.
    failures = sorted(read_failures(output), key=lambda row: (
        STAGES.index(row[columns.STAGE]), row[columns.REASON]))
    shown = failures[:samples]
    assert page.count('<img class="failure"') == sum(map(is_readable_image, shown))
    # Sample tiles pair the crop with its fitted expression; failure tiles are plain.
    assert page.count('<figure class="tile paired">') == min(samples, rows)
    assert page.count('<figure class="tile">') == len(shown)
    for row in shown:
        assert f"{row['stage']}/{row['reason']}" in page
    # Self-contained: every image is inline, nothing is fetched, nothing runs.
    assert re.findall(r'src="(?!data:image/(png|jpeg);base64,)', page) == []
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_every_row_and_failure_shows_up_to_their_count(folder_run, tmp_path):
    output, _ = folder_run
    rows = len(read_column(output, columns.ID))
    failures = read_failures(output)
    report = tmp_path / "all.html"
    assert inspect.main([str(output), "--report", str(report), "--samples", "50"]) == 0
    page = report.read_text(encoding="utf-8")
    assert page.count('<img class="sample"') == rows
    assert page.count('<img class="expression"') == rows
    assert page.count('<figure class="tile paired">') == rows
    assert page.count('<figure class="tile">') == len(failures)
    # coffee.png (no face) decodes; the empty, text and truncated files do not.
    assert page.count('<img class="failure"') == sum(map(is_readable_image, failures)) == 1


def synthetic_row(model, *, yaw: float, seed: int, crop_size: int = 224) -> dict:
    """A label row of known coefficients and pose, its face centred in a grey crop."""
    rng = np.random.default_rng(seed)
    rotation = euler_to_rotation([yaw], [5.0], [-3.0])
    row = {columns.IDENTITY: 0.5 * rng.standard_normal(model.identity_dim),
           columns.EXPRESSION: 0.5 * rng.standard_normal(model.expression_dim),
           columns.ROTATION: rotation.ravel(), columns.SCALE: 0.9,
           columns.TRANSLATION: np.zeros(2)}
    centred = project(model, row[columns.EXPRESSION][None], row[columns.IDENTITY][None],
                      rotation, np.array([0.9]), np.zeros((1, 2)))[0]
    row[columns.TRANSLATION] = crop_size / 2 - centred.mean(axis=0)
    return row


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_fitted_face_is_drawn_where_the_model_projects(yaw):
    model = load_model("open")
    row = synthetic_row(model, yaw=yaw, seed=1)
    face = fitted_face(model, row)
    arguments = [np.asarray(row[name], dtype=np.float64)[None] for name in
                 (columns.EXPRESSION, columns.IDENTITY)]
    rotation = np.reshape(row[columns.ROTATION], (1, 3, 3))
    expected = project(model, *arguments, rotation, np.array([row[columns.SCALE]]),
                       np.asarray(row[columns.TRANSLATION])[None], slide_contour=True)[0]
    # Same camera and vertices: equal up to rounding.
    np.testing.assert_allclose(face.landmarks, expected, atol=1e-9)
    nose_tip = model.landmark_indices[30]
    assert nose_tip in face.edges
    # Seen from behind (yaw 180 degrees), the face's front is culled.
    behind = fitted_face(model, {**row, columns.ROTATION: np.diag([-1.0, 1.0, -1.0]).ravel()})
    assert nose_tip not in behind.edges

    grey = np.full((224, 224, 3), 128, dtype=np.uint8)
    canvas = np.asarray(draw_fit(grey, face.landmarks, face)).astype(int)
    assert canvas.shape == (224 * DRAW_SCALE, 224 * DRAW_SCALE, 3)
    centres = np.round((face.landmarks + 0.5) * DRAW_SCALE).astype(int)
    red, green, blue = (canvas[centres[:, 1], centres[:, 0], channel] for channel in range(3))
    # The fitted cross is drawn last, over the detected dot at the same place: red wins.
    assert np.all((red > 200) & (green < 120) & (blue < 120))
    # The corners hold no face: untouched grey.
    assert np.all(canvas[:4, :4] == 128) and np.all(canvas[-4:, -4:] == 128)


def test_drawn_fit_agrees_with_the_stored_residual(folder_run):
    output, _ = folder_run
    scan = scan_output(str(output))
    model = load_model("open")
    assert model.content_hash == scan.metadata.model_hash
    for row in read_rows(scan, np.arange(scan.rows), inspect.SAMPLE_COLUMNS):
        detected = np.asarray(row[columns.LANDMARKS]).reshape(68, 2)
        face = fitted_face(model, row)
        squared = np.sum((face.landmarks - detected) ** 2, axis=1)
        interocular = np.linalg.norm(detected[36] - detected[45])
        # The 51 inner landmarks sit on fixed vertices, so their share of the stored RMS error
        # is reproduced exactly; the jaw vertices the fit chose are not stored (float32: 1e-5).
        inner = np.sqrt(squared[17:].sum() / 68) / interocular
        assert inner <= row[columns.FIT_RESIDUAL] + 1e-5


def test_choose_samples_takes_the_worst_then_a_seeded_disjoint_sample():
    residual = np.random.default_rng(3).random(40)
    worst, random = inspect.choose_samples(residual, 9, seed=5)
    assert len(worst) == 5 and len(random) == 4
    np.testing.assert_array_equal(worst, np.argsort(residual)[::-1][:5])
    assert not set(worst) & set(random)
    again_worst, again_random = inspect.choose_samples(residual, 9, seed=5)
    np.testing.assert_array_equal(random, again_random)
    _, other_random = inspect.choose_samples(residual, 9, seed=6)
    assert not np.array_equal(random, other_random)
    worst, random = inspect.choose_samples(residual, 100, seed=5)
    assert sorted([*worst, *random]) == list(range(40))


def test_a_truncated_shard_is_reported_by_name(folder_run, tmp_path, capsys):
    output = tmp_path / "copy"
    shutil.copytree(folder_run[0], output)
    shard = shard_paths(output)[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    status, _, errors = run_inspect(capsys, output, "--no-report")
    assert status == 1
    assert f"{shard.name}: unreadable shard" in errors


def _rewrite_as_two_shards(output, second_metadata: DatasetMetadata):
    """Split the one shard of ``output`` in two; the second carries ``second_metadata``."""
    (shard,) = shard_paths(output)
    table = pq.read_table(shard)
    shard.unlink()
    half = table.num_rows // 2
    names = ("part-00000-of-00002.parquet", "part-00001-of-00002.parquet")
    parts = (table.slice(0, half),
             table.slice(half).replace_schema_metadata(second_metadata.to_arrow()))
    for name, part in zip(names, parts):
        pq.write_table(part, output / name)
    manifest = json.loads((output / "manifest.json").read_text())
    manifest["shards"] = [{"name": name, "rows": part.num_rows,
                           "bytes": (output / name).stat().st_size}
                          for name, part in zip(names, parts)]
    (output / "manifest.json").write_text(json.dumps(manifest))
    return names


def test_shards_of_another_model_are_inconsistent(folder_run, tmp_path, capsys):
    output = tmp_path / "mixed"
    shutil.copytree(folder_run[0], output)
    metadata = DatasetMetadata.from_arrow(pq.read_schema(shard_paths(output)[0]).metadata)
    other = DatasetMetadata(**{**metadata.__dict__, "model_hash": "f" * 64})
    names = _rewrite_as_two_shards(output, other)
    status, _, errors = run_inspect(capsys, output, "--no-report")
    assert status == 1
    assert (f"inconsistent metadata: {names[1]} has model_hash '{'f' * 64}', {names[0]} has "
            f"'{metadata.model_hash}'") in errors


def test_two_consistent_shards_are_valid(folder_run, tmp_path, capsys):
    output = tmp_path / "split"
    shutil.copytree(folder_run[0], output)
    metadata = DatasetMetadata.from_arrow(pq.read_schema(shard_paths(output)[0]).metadata)
    _rewrite_as_two_shards(output, metadata)
    status, text, errors = run_inspect(capsys, output, "--no-report")
    assert (status, errors) == (0, "")
    assert summary_value(text, "shards") == "2"


def test_row_counts_and_values_are_checked(folder_run, tmp_path, capsys):
    output = tmp_path / "edited"
    shutil.copytree(folder_run[0], output)
    (shard,) = shard_paths(output)
    table = pq.read_table(shard)
    yaw = table.column(columns.YAW).to_numpy().copy()
    yaw[0] = np.nan
    table = table.set_column(table.schema.get_field_index(columns.YAW),
                             table.schema.field(columns.YAW), pa.array(yaw, pa.float32()))
    pq.write_table(table, shard)
    manifest = json.loads((output / "manifest.json").read_text())
    manifest["shards"][0]["rows"] += 1
    (output / "manifest.json").write_text(json.dumps(manifest))
    status, _, errors = run_inspect(capsys, output, "--no-report")
    assert status == 1
    assert f"{shard.name}: column 'yaw' has non-finite values" in errors
    assert (f"{shard.name}: {table.num_rows} rows, manifest.json says {table.num_rows + 1}"
            in errors)


def test_a_model_other_than_the_shards_is_not_drawn(folder_run, tmp_path):
    output, _ = folder_run
    report = tmp_path / "nomodel.html"
    status = inspect.main([str(output), "--report", str(report), "--samples", "1",
                           "--model", str(tmp_path / "missing.npz")])
    assert status == 0
    page = report.read_text(encoding="utf-8")
    assert "Fitted landmarks and mesh not drawn" in page
    # The crop with its detected landmarks is still shown.
    assert page.count('<img class="sample"') == 1


def test_a_folder_without_shards_is_invalid(tmp_path, capsys):
    status, _, errors = run_inspect(capsys, tmp_path, "--no-report")
    assert status == 1
    assert errors.count("\n  - ") == 1
    assert "no part-*.parquet shards and no manifest.json" in errors


def test_a_shard_missing_from_the_manifest_listing_is_reported(folder_run, tmp_path, capsys):
    output = tmp_path / "lost"
    shutil.copytree(folder_run[0], output)
    (shard,) = shard_paths(output)
    shard.unlink()
    status, _, errors = run_inspect(capsys, output, "--no-report")
    assert status == 1
    assert f"{shard.name}: listed in manifest.json but missing or unreadable" in errors
