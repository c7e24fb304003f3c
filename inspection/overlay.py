"""Draw a stored row's fit over its face crop: detected and fitted landmarks, mesh wireframe.

The fitted face is placed with the row's own camera (scaled orthographic, crop pixels: the fit
ran on the crop landmarks), and the fitted landmarks come from :func:`fitting.fitter.project`
with the jaw slid to the silhouette as in the fit, so their distance to the detected landmarks
is the row's ``fit_residual`` (up to the jaw vertices the fit chose before its last pose step).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image, ImageDraw

from fitting.camera import project_points
from fitting.fitter import project
from fitting.image import decode_image
from fitting.models import MorphableModel
from schemas import rows as columns

# Drawing is done at this multiple of the crop size, which keeps thin lines sharp.
DRAW_SCALE = 2
DETECTED_COLOUR = (40, 220, 90, 255)
FITTED_COLOUR = (255, 60, 60, 255)
ERROR_COLOUR = (255, 220, 0, 200)
MESH_COLOUR = (120, 200, 255, 70)


@dataclasses.dataclass(frozen=True)
class FittedFace:
    """The fitted model in crop pixels.

    Attributes
    ----------
    landmarks : (68, 2) float64     fitted landmark positions, jaw slid to the silhouette
    vertices : (V, 2) float64       every projected vertex
    edges : (E, 2) int64            vertex pairs of the triangles that face the camera
    """

    landmarks: np.ndarray
    vertices: np.ndarray
    edges: np.ndarray


def _outward_orientation(model: MorphableModel) -> float:
    """+1 when the triangles wind counter-clockwise seen from outside the mean face, else -1.

    A face mask's area-weighted normals sum to a vector pointing out of the face (+z).
    """
    corners = model.mean[model.triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return 1.0 if normals[:, 2].sum() >= 0 else -1.0


def fitted_face(model: MorphableModel, row: dict) -> FittedFace:
    """Project the fitted shape of ``row`` with its camera.

    Parameters
    ----------
    model : MorphableModel   the model the row was labelled with (same content hash)
    row : dict               a label row with ``identity``, ``expression``, ``rotation``
                             (9, row-major), ``scale`` and ``translation`` (2,)

    Returns
    -------
    FittedFace
    """
    identity = np.asarray(row[columns.IDENTITY], dtype=np.float64)
    if identity.shape != (model.identity_dim,):
        raise ValueError(f"expected identity of shape ({model.identity_dim},), got "
                         f"{identity.shape}: the row was labelled with another model")
    expression = np.asarray(row[columns.EXPRESSION], dtype=np.float64)
    vertices_3d = model.shape(identity, expression)
    rotation = np.asarray(row[columns.ROTATION], dtype=np.float64).reshape(1, 3, 3)
    scale = np.array([row[columns.SCALE]], dtype=np.float64)
    translation = np.asarray(row[columns.TRANSLATION], dtype=np.float64).reshape(1, 2)
    vertices = project_points(vertices_3d[None], rotation, scale, translation)[0]
    landmarks = project(model, expression[None], identity[None], rotation, scale, translation,
                        slide_contour=True)[0]
    corners = (vertices_3d @ rotation[0].T)[model.triangles]
    facing = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])[:, 2]
    visible = model.triangles[facing * _outward_orientation(model) > 0]
    edges = np.concatenate([visible[:, [0, 1]], visible[:, [1, 2]], visible[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    return FittedFace(landmarks=landmarks, vertices=vertices, edges=edges)


def _dot(draw: ImageDraw.ImageDraw, point, radius: float, colour) -> None:
    x, y = point
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _cross(draw: ImageDraw.ImageDraw, point, size: float, colour) -> None:
    x, y = point
    draw.line((x - size, y - size, x + size, y + size), fill=colour, width=2)
    draw.line((x - size, y + size, x + size, y - size), fill=colour, width=2)


def draw_fit(crop: np.ndarray, detected: np.ndarray, fitted: FittedFace | None) -> Image.Image:
    """The crop at ``DRAW_SCALE`` times its size with the fit drawn over it.

    Parameters
    ----------
    crop : (H, W, 3) uint8
    detected : (68, 2) float     detected landmarks, crop pixels
    fitted : FittedFace or None  None draws the detected landmarks only

    Returns
    -------
    PIL.Image.Image   RGB, (DRAW_SCALE * W) x (DRAW_SCALE * H): detected landmarks as green
                      dots, fitted ones as red crosses joined to them by yellow error lines,
                      the visible mesh as a thin translucent wireframe
    """
    detected = np.asarray(detected, dtype=np.float64)
    if crop.ndim != 3 or crop.shape[2] != 3 or detected.shape != (68, 2):
        raise ValueError(f"expected crop (H, W, 3) and detected (68, 2), got {crop.shape} "
                         f"and {detected.shape}")
    height, width = crop.shape[:2]
    base = Image.fromarray(crop).resize((width * DRAW_SCALE, height * DRAW_SCALE),
                                        Image.BICUBIC).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # Integer crop coordinates are pixel centres: crop pixel x spans canvas [x S, (x + 1) S).
    to_canvas = lambda points: (np.asarray(points) + 0.5) * DRAW_SCALE  # noqa: E731
    if fitted is not None:
        vertices = to_canvas(fitted.vertices)
        for first, second in fitted.edges:
            draw.line((*vertices[first], *vertices[second]), fill=MESH_COLOUR, width=1)
        for start, end in zip(to_canvas(detected), to_canvas(fitted.landmarks)):
            draw.line((*start, *end), fill=ERROR_COLOUR, width=1)
    for point in to_canvas(detected):
        _dot(draw, point, 1.5 * DRAW_SCALE, DETECTED_COLOUR)
    if fitted is not None:
        for point in to_canvas(fitted.landmarks):
            _cross(draw, point, 1.5 * DRAW_SCALE, FITTED_COLOUR)
    return Image.alpha_composite(base, layer).convert("RGB")


def overlay_jpeg(row: dict, model: MorphableModel | None, *, quality: int = 85) -> bytes:
    """JPEG bytes of :func:`draw_fit` for a label row (``image`` and ``landmarks`` read)."""
    crop = decode_image(row[columns.IMAGE]["bytes"])
    detected = np.asarray(row[columns.LANDMARKS], dtype=np.float64).reshape(68, 2)
    fitted = fitted_face(model, row) if model is not None else None
    buffer = io.BytesIO()
    draw_fit(crop, detected, fitted).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
