"""The report's readable labels: each sample's fitted expression drawn, its top named units,
and the mean blendshape weights per label; older (schema v1) datasets without them."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fitting.blendshapes import blendshape_code, blendshape_weights
from fitting.models import load_model
from inspection import cli as inspect
from inspection import units
from inspection.scan import scan_output
from schemas import rows as columns
from synth.render import render_mesh, to_image

TILE = re.compile(r'<figure class="tile paired">(.*?)</figure>', re.S)
RENDER = re.compile(r'<img class="expression" alt="[^"]*" src="data:image/png;base64,([^"]+)"')
UNIT = re.compile(r'<li><span class="unit">(\w+)</span> (\d\.\d\d)</li>')
CSV_LINK = re.compile(r'<a download="blendshapes_per_label.csv" href="data:text/csv;base64,'
                      r'([^"]+)"')
BLENDSHAPE_SECTION = "<h2>Mean blendshape weights per label</h2>"


@pytest.fixture(scope="module")
def model():
    return load_model("open")


def shard_path(output):
    (path,) = sorted(output.glob("part-*.parquet"))
    return path


def rows_by_file(output) -> dict:
    """{source file name: row} of the one shard, every column."""
    return {row[columns.SOURCE_URI].rsplit("/", 1)[-1]: row
            for row in pq.read_table(shard_path(output)).to_pylist()}


def report_of(output, tmp_path, *extra) -> str:
    report = tmp_path / "report.html"
    # 6 samples: every row of the fixture (3) appears once (2 worst, then 1 at random).
    status = inspect.main([str(output), "--report", str(report), "--samples", "6",
                           *map(str, extra)])
    assert status == 0
    return report.read_text(encoding="utf-8")


def tiles(page: str) -> dict:
    """{source file name: (render (H, W, 3) uint8 or None, [(unit, weight), ...])}."""
    found = {}
    for body in TILE.findall(page):
        name = re.search(r"<figcaption>([^<]+)<br>", body).group(1)
        render = RENDER.search(body)
        image = (np.asarray(Image.open(io.BytesIO(base64.b64decode(render.group(1)))))
                 if render else None)
        found[name] = (image, [(unit, float(weight)) for unit, weight in UNIT.findall(body)])
    return found


@pytest.fixture(scope="module")
def page(folder_run, tmp_path_factory):
    return report_of(folder_run[0], tmp_path_factory.mktemp("units-report"))


def test_every_sample_shows_the_render_of_its_own_expression(page, folder_run, model):
    rows = rows_by_file(folder_run[0])
    shown = tiles(page)
    assert set(shown) == set(rows)
    renders = {}
    for name, (image, _) in shown.items():
        assert image is not None and image.shape == (units.RENDER_SIDE, units.RENDER_SIDE, 3)
        # PNG is lossless: the embedded pixels are the render of this row's stored code.
        expected = units.render_expression(model, np.asarray(rows[name][columns.EXPRESSION]))
        np.testing.assert_array_equal(image, expected)
        renders[name] = image
    neutral = units.render_expression(model, np.zeros(model.expression_dim))
    images = list(renders.values())
    # The fixture's three faces have different expressions, so every render differs from the
    # others and from the neutral face.
    for index, image in enumerate(images):
        assert not np.array_equal(image, neutral)
        for other in images[index + 1:]:
            assert np.count_nonzero(np.any(image != other, axis=2)) > 50


def test_a_render_is_the_expression_on_the_mean_identity_seen_frontally(model):
    expression = 0.8 * np.random.default_rng(7).standard_normal(model.expression_dim)
    camera = units.frontal_camera(model)
    side = units.RENDER_SIDE
    placed = to_image(model.mean + model.expression_basis @ expression - camera.centre,
                      rotation=np.eye(3), scale=camera.scale, translation=camera.translation)
    direct = render_mesh(placed, model.triangles, image_size=(side, side),
                         light_direction=units.LIGHT_DIRECTION, ambient=units.AMBIENT,
                         background=units.BACKGROUND).image
    np.testing.assert_array_equal(units.render_expression(model, expression), direct)
    # Frontal and framed: the mean face's landmark box is centred and spans LANDMARK_SPAN.
    landmarks = to_image(model.mean[model.landmark_indices] - camera.centre,
                         rotation=np.eye(3), scale=camera.scale,
                         translation=camera.translation)
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    np.testing.assert_allclose((low + high)[:2] / 2, (side - 1) / 2, atol=1e-9)
    np.testing.assert_allclose(high[1] - low[1], units.LANDMARK_SPAN * side, rtol=1e-12)


def test_an_open_jaw_changes_the_lower_face_of_the_render(model):
    weights = np.zeros(len(model.blendshape_names))
    weights[model.blendshape_names.index("jawOpen")] = 1.0
    neutral = units.render_expression(model, np.zeros(model.expression_dim))
    opened = units.render_expression(model, blendshape_code(model, weights))
    change = np.abs(opened.astype(int) - neutral.astype(int)).sum(axis=2).sum(axis=1)
    assert change.sum() > 0
    # The unit's PCA code moves the whole face a little (the 29 components do not hold the
    # unit exactly), but the jaw is below the eyes: most of the change is in the lower half.
    assert change[units.RENDER_SIDE // 2:].sum() > 0.7 * change.sum()


def test_the_top_units_shown_are_the_rows_largest_weights(page, folder_run, model):
    rows = rows_by_file(folder_run[0])
    names = scan_output(str(folder_run[0])).metadata.blendshape_names
    assert names == model.blendshape_names
    for name, (_, shown) in tiles(page).items():
        weights = np.asarray(rows[name][columns.BLENDSHAPES], dtype=np.float64)
        order = np.argsort(-weights, kind="stable")[:units.TOP_UNITS]
        expected = [(names[k], weights[k]) for k in order if weights[k] >= units.MIN_SHOWN_WEIGHT]
        assert [unit for unit, _ in shown] == [unit for unit, _ in expected]
        # Shown with two decimals.
        np.testing.assert_allclose([w for _, w in shown], [w for _, w in expected], atol=0.005)
        assert len(shown) >= 1


def test_top_units_keep_name_order_on_ties_and_drop_weights_below_the_minimum():
    names = ("a", "b", "c", "d", "e")
    weights = np.array([0.2, 0.5, 0.005, 0.5, 0.0])
    assert units.top_units(names, weights) == (("b", 0.5), ("d", 0.5), ("a", 0.2))
    assert units.top_units(names, weights, count=5) == (("b", 0.5), ("d", 0.5), ("a", 0.2))
    assert units.top_units(names, np.zeros(5)) == ()
    with pytest.raises(ValueError, match=r"\(5,\)"):
        units.top_units(names, np.zeros(4))


def test_weights_come_from_the_column_else_from_the_code_else_none(model):
    expression = 0.7 * np.random.default_rng(2).standard_normal(model.expression_dim)
    stored = np.linspace(0.0, 1.0, len(model.blendshape_names))
    row = {columns.EXPRESSION: expression, columns.BLENDSHAPES: stored}
    names, weights = units.row_unit_weights(row, model, model.blendshape_names)
    np.testing.assert_array_equal(weights, stored)
    null_row = {**row, columns.BLENDSHAPES: None}
    names, weights = units.row_unit_weights(null_row, model, None)
    assert names == model.blendshape_names
    np.testing.assert_array_equal(weights, blendshape_weights(model, expression))
    assert units.row_unit_weights(null_row, None, model.blendshape_names) is None
    without_units = dataclasses.replace(model, blendshape_names=None, blendshape_gram=None,
                                        blendshape_cross=None)
    assert units.row_unit_weights(null_row, without_units, None) is None


def relabel(output, labels, *, null_weights_of=()):
    """Rewrite the one shard with ``labels`` (one per row, file order) and null weights in
    the rows numbered ``null_weights_of``."""
    path = shard_path(output)
    table = pq.read_table(path)
    weights = table.column(columns.BLENDSHAPES).to_pylist()
    for index in null_weights_of:
        weights[index] = None
    for name, values in ((columns.LABEL, labels), (columns.BLENDSHAPES, weights)):
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field,
                                 pa.array(values, field.type))
    pq.write_table(table, path)
    return table


def direct_means(table) -> dict:
    """{label: (rows with weights, (52,) mean weights)} computed from the table itself."""
    grouped = {}
    for row in table.to_pylist():
        if row[columns.LABEL] is not None and row[columns.BLENDSHAPES] is not None:
            grouped.setdefault(row[columns.LABEL], []).append(row[columns.BLENDSHAPES])
    return {label: (len(rows), np.mean(np.asarray(rows, dtype=np.float64), axis=0))
            for label, rows in grouped.items()}


def test_mean_weights_per_label_match_the_shards(folder_run, tmp_path):
    output = tmp_path / "relabelled"
    shutil.copytree(folder_run[0], output)
    # Two rows share label "a"; "b"'s one row has no weights; the third label is absent.
    table = relabel(output, ["a", "a", "b"], null_weights_of=(2,))
    expected = direct_means(table)
    assert set(expected) == {"a"} and expected["a"][0] == 2
    scan = scan_output(str(output))
    assert scan.problems == ()
    assert scan.label_means.labels == ("a", "b")          # expression means keep "b"
    means = scan.blendshape_means
    assert means.labels == ("a",) and list(means.counts) == [2]
    np.testing.assert_allclose(means.means[0], expected["a"][1], atol=1e-12)

    page = report_of(output, tmp_path)
    assert BLENDSHAPE_SECTION in page
    lines = list(csv.reader(io.StringIO(base64.b64decode(CSV_LINK.search(page).group(1))
                                        .decode("utf-8"))))
    assert lines[0] == ["label", "rows", *scan.metadata.blendshape_names]
    assert [line[:2] for line in lines[1:]] == [["a", "2"]]
    # Six decimals in the CSV.
    np.testing.assert_allclose(np.asarray(lines[1][2:], dtype=float), expected["a"][1],
                               atol=5e-7)
    strongest = np.argsort(-expected["a"][1], kind="stable")[:units.TOP_UNITS]
    row_text = re.search(r"<tr><td>a</td><td>2</td><td>([^<]+)</td></tr>", page).group(1)
    assert [part.split(" ")[0] for part in row_text.split(", ")] == [
        scan.metadata.blendshape_names[k] for k in strongest]


def test_the_fixture_report_has_the_per_label_section_and_its_heatmap(page, folder_run):
    assert BLENDSHAPE_SECTION in page
    section = page[page.index(BLENDSHAPE_SECTION):]
    assert section.count('<img class="figure"') == 1
    labels = sorted(row[columns.LABEL] for row in rows_by_file(folder_run[0]).values())
    for label in labels:
        assert f"<tr><td>{label}</td><td>1</td>" in section


def test_no_labelled_weights_no_per_label_section(folder_run, tmp_path):
    output = tmp_path / "unlabelled"
    shutil.copytree(folder_run[0], output)
    relabel(output, [None, None, None])
    page = report_of(output, tmp_path)
    assert BLENDSHAPE_SECTION not in page
    assert "<h2>Mean expression per label</h2>" not in page
    # The samples still show their units.
    assert all(shown for _, shown in tiles(page).values())


def as_version_1(output):
    """Rewrite ``output``'s shard and manifest as schema version 1 wrote them."""
    path = shard_path(output)
    table = pq.read_table(path).drop_columns([columns.BLENDSHAPES])
    metadata = dict(table.schema.metadata)
    del metadata[b"expnet.blendshape_names"]
    metadata[b"expnet.schema_version"] = b"1"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    manifest = json.loads((output / "manifest.json").read_text())
    del manifest["metadata"]["blendshape_names"]
    manifest["metadata"]["schema_version"] = 1
    (output / "manifest.json").write_text(json.dumps(manifest))


def test_a_version_1_dataset_inspects_without_the_blendshape_sections(folder_run, tmp_path,
                                                                      model):
    output = tmp_path / "v1"
    shutil.copytree(folder_run[0], output)
    as_version_1(output)
    scan = scan_output(str(output))
    assert scan.problems == ()
    assert scan.metadata.schema_version == 1 and scan.metadata.blendshape_names is None
    assert scan.blendshape_means is None and scan.label_means is not None
    page = report_of(output, tmp_path)
    assert BLENDSHAPE_SECTION not in page
    assert "<h2>Mean expression per label</h2>" in page
    rows = rows_by_file(folder_run[0])
    for name, (image, shown) in tiles(page).items():
        # The model matches the shards and has units: the weights are computed from the code.
        expression = np.asarray(rows[name][columns.EXPRESSION], dtype=np.float64)
        weights = blendshape_weights(model, expression)
        expected = units.top_units(model.blendshape_names, weights)
        assert [unit for unit, _ in shown] == [unit for unit, _ in expected]
        np.testing.assert_allclose([w for _, w in shown], [w for _, w in expected], atol=0.005)
        np.testing.assert_array_equal(image, units.render_expression(model, expression))


def test_without_the_shards_model_the_stored_units_show_but_no_render(folder_run, tmp_path):
    page = report_of(folder_run[0], tmp_path, "--model", tmp_path / "missing.npz")
    shown = tiles(page)
    assert len(shown) == 3
    assert all(image is None and units_shown for image, units_shown in shown.values())
