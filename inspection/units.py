"""The fitted expression in a form a person can read: a frontal render and named units.

A row's 29-D code is drawn on the model's mean identity (identity code 0), frontal (rotation
the identity), with one fixed camera per model, so two renders differ only where their
expressions do. Its named-unit weights (ARKit-style, e.g. ``jawOpen``) come from the row's
``blendshapes`` column, or, where that is null or absent (older shards), from the code itself
through :func:`fitting.blendshapes.blendshape_weights` when the model carries named units.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from fitting.blendshapes import blendshape_weights, has_blendshapes
from fitting.models import MorphableModel
from schemas import rows as columns
from synth.render import render_mesh, to_image

RENDER_SIDE = 160            # pixels; small so that a render costs ~15 ms for the open model
# The mean face's landmarks (brows to chin) span this fraction of the image height: the
# face fills the render, with room for an opened jaw.
LANDMARK_SPAN = 0.62
LIGHT_DIRECTION = (-0.3, -0.4, 1.0)   # from the upper left, so relief reads
AMBIENT = 0.25
BACKGROUND = (60, 60, 60)
TOP_UNITS = 3
# Weights below this are not shown among the top units: at two decimals they read as 0.
MIN_SHOWN_WEIGHT = 0.01


@dataclasses.dataclass(frozen=True)
class FrontalCamera:
    """The scaled orthographic camera of every render of one model.

    Attributes
    ----------
    centre : (3,) float64        model point placed at ``translation``: the centre of the
                                 mean face's landmark box
    scale : float                pixels per model unit
    translation : (2,) float64   image position of ``centre``, pixels
    """

    centre: np.ndarray
    scale: float
    translation: np.ndarray


def frontal_camera(model: MorphableModel, side: int = RENDER_SIDE) -> FrontalCamera:
    """The camera that frames the mean face's 68 landmarks in a ``side`` x ``side`` image."""
    if side < 16:
        raise ValueError(f"side must be at least 16 pixels, got {side}")
    landmarks = model.mean[model.landmark_indices]
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    scale = side * LANDMARK_SPAN / (high[1] - low[1])
    return FrontalCamera(centre=(low + high) / 2.0, scale=float(scale),
                         translation=np.full(2, (side - 1) / 2.0))


def render_expression(model: MorphableModel, expression: np.ndarray, *,
                      side: int = RENDER_SIDE) -> np.ndarray:
    """The expression on the model's mean identity, frontal, untextured.

    Parameters
    ----------
    model : MorphableModel
    expression : (K_exp,) float   sigma units
    side : int                    image width and height, pixels

    Returns
    -------
    image : (side, side, 3) uint8
    """
    expression = np.asarray(expression, dtype=np.float64)
    if expression.shape != (model.expression_dim,):
        raise ValueError(f"expected expression of shape ({model.expression_dim},), got "
                         f"{expression.shape}")
    vertices = model.shape(np.zeros(model.identity_dim), expression)
    camera = frontal_camera(model, side)
    placed = to_image(vertices - camera.centre, rotation=np.eye(3), scale=camera.scale,
                      translation=camera.translation)
    return render_mesh(placed, model.triangles, image_size=(side, side),
                       light_direction=LIGHT_DIRECTION, ambient=AMBIENT,
                       background=BACKGROUND).image


def render_png(model: MorphableModel, expression: np.ndarray, *,
               side: int = RENDER_SIDE) -> bytes:
    """PNG bytes of :func:`render_expression` (lossless, so a reader gets the exact pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(render_expression(model, expression, side=side)).save(buffer, format="PNG")
    return buffer.getvalue()


def row_unit_weights(row: dict, model: MorphableModel | None,
                     names: tuple | None) -> tuple[tuple, np.ndarray] | None:
    """The named units of a row and their weights, or None when there are none.

    Parameters
    ----------
    row : dict                    a label row; ``blendshapes`` may be missing or None
    model : MorphableModel or None   the row's model (same content hash), or None
    names : tuple of str or None  the dataset's ``blendshape_names`` metadata

    Returns
    -------
    (names, weights) : (tuple of str of length U, (U,) float64), or None
        the stored weights when the row has them; else the weights of the row's
        ``expression`` when ``model`` carries named units; else None
    """
    stored = row.get(columns.BLENDSHAPES)
    if stored is not None and names is not None:
        weights = np.asarray(stored, dtype=np.float64)
        if weights.shape != (len(names),):
            raise ValueError(f"expected {len(names)} blendshape weights, got {weights.shape}")
        return tuple(names), weights
    if model is None or not has_blendshapes(model):
        return None
    expression = np.asarray(row[columns.EXPRESSION], dtype=np.float64)
    return model.blendshape_names, blendshape_weights(model, expression)


def top_units(names, weights: np.ndarray, *, count: int = TOP_UNITS,
              minimum: float = MIN_SHOWN_WEIGHT) -> tuple:
    """The ``count`` largest weights at or above ``minimum``, largest first.

    Parameters
    ----------
    names : sequence of str, length U
    weights : (U,) float

    Returns
    -------
    tuple of (str, float)   ties keep the order of ``names``
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(names),):
        raise ValueError(f"expected weights of shape ({len(names)},), got {weights.shape}")
    order = np.argsort(-weights, kind="stable")[:count]
    return tuple((names[index], float(weights[index])) for index in order
                 if weights[index] >= minimum)


def strongest_units(means: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` units with the largest mean weight in any label.

    Parameters
    ----------
    means : (L, U) float   mean weight per label and unit

    Returns
    -------
    (min(count, U),) int64   by decreasing largest mean, ties in unit order
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"expected means of shape (L, U), got {means.shape}")
    return np.argsort(-means.max(axis=0, initial=0.0), kind="stable")[:count].astype(np.int64)


def label_units_csv(labels, counts: np.ndarray, means: np.ndarray, names) -> bytes:
    """The per-label mean weights as CSV: ``label,rows,<unit names...>``, one line a label.

    Parameters
    ----------
    labels : sequence of str, length L
    counts : (L,) int        rows per label that hold weights
    means : (L, U) float
    names : sequence of str, length U

    Returns
    -------
    bytes   UTF-8, weights with six decimals
    """
    means = np.asarray(means, dtype=np.float64)
    if means.shape != (len(labels), len(names)) or len(counts) != len(labels):
        raise ValueError(f"expected means ({len(labels)}, {len(names)}) and {len(labels)} "
                         f"counts, got {means.shape} and {len(counts)}")
    lines = [",".join(("label", "rows", *names))]
    for label, count, row in zip(labels, counts, means):
        # Labels come from folder or manifest names: quote them so a comma cannot split one.
        quoted = '"' + str(label).replace('"', '""') + '"'
        lines.append(",".join((quoted, str(int(count)), *(f"{value:.6f}" for value in row))))
    return ("\n".join(lines) + "\n").encode("utf-8")
