"""The figures and the self-contained HTML page of ``expnet inspect``.

Every image is embedded as a base64 ``data:`` URI, so the page is one file with no scripts and
no external references. Figures are drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# CSS classes of the embedded images, one per kind, so a reader (or a test) can count them.
FIGURE_CLASS = "figure"
SAMPLE_CLASS = "sample"
FAILURE_CLASS = "failure"
EXPRESSION_CLASS = "expression"       # the fitted expression drawn beside a sample crop
HISTOGRAM_BINS = 30


@dataclasses.dataclass(frozen=True)
class Tile:
    """One image of a grid with its caption lines; ``jpeg`` None shows the caption only.

    ``render`` (PNG) is drawn beside the image, with ``units``, (name, weight) pairs, under it.
    """

    jpeg: bytes | None
    caption: tuple
    render: bytes | None = None
    units: tuple = ()


@dataclasses.dataclass(frozen=True)
class Download:
    """A file embedded in the page as a ``data:`` link: its name, MIME type and bytes."""

    name: str
    mime: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled part of the page: an optional note, then figures, a table, a grid of tiles.

    ``table`` is a tuple of rows of cells, the first row the header; ``downloads`` are links
    under the figures.
    """

    title: str
    note: str = ""
    figures: tuple = ()      # PNG bytes
    tiles: tuple = ()        # Tile
    tile_class: str = SAMPLE_CLASS
    table: tuple = ()
    downloads: tuple = ()    # Download


def figure_png(figure) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def expression_histograms(expression: np.ndarray) -> bytes:
    """Small multiples: one histogram per expression coefficient, the N(0, 1) prior dashed.

    Parameters
    ----------
    expression : (N, K) float   sigma units

    Returns
    -------
    png : bytes
    """
    expression = np.asarray(expression, dtype=np.float64)
    if expression.ndim != 2:
        raise ValueError(f"expected expression of shape (N, K), got {expression.shape}")
    count = expression.shape[1]
    columns = 10
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.25 * columns, 1.3 * rows),
                                squeeze=False)
    limit = max(4.0, float(np.abs(expression).max(initial=0.0)))
    edges = np.linspace(-limit, limit, HISTOGRAM_BINS + 1)
    grid = np.linspace(-limit, limit, 200)
    prior = np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi) * len(expression) * (edges[1] - edges[0])
    for index, axis in enumerate(axes.ravel()):
        if index >= count:
            axis.set_visible(False)
            continue
        axis.hist(expression[:, index], bins=edges, color="#4477aa")
        axis.plot(grid, prior, color="0.4", linestyle="--", linewidth=0.8)
        axis.set_title(f"e{index}", fontsize=8, pad=2)
        axis.tick_params(labelsize=6, length=2)
        axis.set_yticks([])
    figure.suptitle("expression coefficients (sigma); dashed: N(0, 1) prior", fontsize=9)
    figure.tight_layout()
    return figure_png(figure)


def pose_histograms(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray,
                    residual: np.ndarray) -> bytes:
    """Histograms of yaw, pitch, roll (degrees) and the fit residual; each (N,) float."""
    figure, axes = plt.subplots(1, 4, figsize=(12.5, 2.4))
    panels = (("yaw (deg)", yaw), ("pitch (deg)", pitch), ("roll (deg)", roll),
              ("fit residual (/ inter-ocular)", residual))
    for axis, (title, values) in zip(axes, panels):
        axis.hist(np.asarray(values, dtype=np.float64), bins=HISTOGRAM_BINS, color="#aa7744")
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure_png(figure)


def label_heatmap(labels, counts: np.ndarray, means: np.ndarray, *,
                  column_names=None, colour_label: str = "mean (sigma)",
                  signed: bool = True) -> bytes:
    """Heatmap of a mean vector per label (rows) and per component (columns).

    Parameters
    ----------
    labels : sequence of str, length L
    counts : (L,) int        rows per label
    means : (L, K) float     sigma units by default
    column_names : sequence of str, length K, or None   default ``e0 .. e{K-1}``
    colour_label : str       title of the colour bar
    signed : bool            a diverging scale centred on 0; else a sequential one from 0

    Returns
    -------
    png : bytes
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] != len(labels) or len(counts) != len(labels):
        raise ValueError(f"expected means (L, K) with L = {len(labels)} labels and counts, got "
                         f"{means.shape} and {len(counts)} counts")
    if column_names is None:
        column_names = [f"e{index}" for index in range(means.shape[1])]
    if len(column_names) != means.shape[1]:
        raise ValueError(f"expected {means.shape[1]} column names, got {len(column_names)}")
    limit = max(float(np.abs(means).max(initial=0.0)), 1e-6)
    scale = (dict(cmap="RdBu_r", vmin=-limit, vmax=limit) if signed
             else dict(cmap="viridis", vmin=0.0, vmax=limit))
    # Unsigned maps name their columns with slanted unit names, which need room below.
    width, height = (12.5, 0.8) if signed else (1.5 + 0.45 * means.shape[1], 1.8)
    figure, axis = plt.subplots(figsize=(width, height + 0.35 * len(labels)))
    image = axis.imshow(means, aspect="auto", **scale)
    axis.set_yticks(range(len(labels)))
    axis.set_yticklabels([f"{label} ({count})" for label, count in zip(labels, counts)],
                         fontsize=8)
    axis.set_xticks(range(means.shape[1]))
    axis.set_xticklabels(column_names, fontsize=7, rotation=0 if signed else 60,
                         ha="center" if signed else "right")
    figure.colorbar(image, ax=axis, label=colour_label, fraction=0.03, pad=0.01)
    figure.tight_layout()
    return figure_png(figure)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _image_tag(data: bytes, mime: str, css_class: str, alt: str) -> str:
    return (f'<img class="{css_class}" alt="{html.escape(alt)}" '
            f'src="{_data_uri(data, mime)}">')


def _table(rows) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td>"
                    "</tr>" for key, value in rows)
    return f'<table class="summary">{cells}</table>'


def _grid_table(rows) -> str:
    header, *body = rows
    cells = ["<tr>" + "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header) + "</tr>"]
    cells.extend("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
                 + "</tr>" for row in body)
    return f'<table class="grid-table">{"".join(cells)}</table>'


def _download_link(download: Download) -> str:
    return (f'<p class="download"><a download="{html.escape(download.name)}" '
            f'href="{_data_uri(download.data, download.mime)}">{html.escape(download.name)}'
            "</a></p>")


def _tile_html(tile: Tile, tile_class: str) -> str:
    caption = "<br>".join(html.escape(line) for line in tile.caption)
    image = (_image_tag(tile.jpeg, "image/jpeg", tile_class, tile.caption[0])
             if tile.jpeg is not None else '<div class="missing">no image</div>')
    if tile.render is None and not tile.units:
        return f'<figure class="tile">{image}<figcaption>{caption}</figcaption></figure>'
    render = (_image_tag(tile.render, "image/png", EXPRESSION_CLASS,
                         f"fitted expression of {tile.caption[0]}")
              if tile.render is not None else "")
    units = "".join(f'<li><span class="unit">{html.escape(name)}</span> {weight:.2f}</li>'
                    for name, weight in tile.units)
    return (f'<figure class="tile paired"><div class="pair">{image}<div class="fitted">'
            f'{render}<ol class="units">{units}</ol></div></div>'
            f"<figcaption>{caption}</figcaption></figure>")


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.note:
        parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    for png in section.figures:
        parts.append(_image_tag(png, "image/png", FIGURE_CLASS, section.title))
    if section.table:
        parts.append(_grid_table(section.table))
    parts.extend(_download_link(download) for download in section.downloads)
    if section.tiles:
        parts.append('<div class="grid">')
        parts.extend(_tile_html(tile, section.tile_class) for tile in section.tiles)
        parts.append("</div>")
    return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table.summary { border-collapse: collapse; font-size: 0.9em; }
table.summary th { white-space: pre; text-align: left; padding: 2px 1em 2px 0;
                   font-weight: normal; color: #555; }
table.summary td { font-family: monospace; padding: 2px 0; }
img.figure { max-width: 100%; display: block; margin: 0.5em 0; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure.tile { margin: 0; width: 224px; font-size: 0.75em; }
figure.tile img { width: 224px; height: auto; display: block; }
figure.tile.paired { width: 392px; }
.pair { display: flex; gap: 8px; align-items: flex-start; }
figure.tile img.expression { width: 160px; }
ol.units { margin: 4px 0 0 0; padding-left: 0; list-style: none; font-family: monospace; }
table.grid-table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
table.grid-table th, table.grid-table td { border: 1px solid #ddd; padding: 2px 6px;
                                            text-align: left; }
.missing { width: 224px; height: 60px; background: #eee; color: #888; text-align: center;
           line-height: 60px; }
p.note { color: #555; font-size: 0.9em; }
"""


def render_html(title: str, summary_rows, sections) -> str:
    """The whole page: a title, the summary table, then every section in order."""
    body = "\n".join(_section_html(section) for section in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n<h2>Summary</h2>\n{_table(summary_rows)}\n"
            f"{body}\n</body></html>\n")
