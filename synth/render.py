"""A small z-buffered triangle rasteriser with Lambert shading (pure NumPy, no OpenGL).

Used to render morphable-model meshes: to place the open model's landmarks (a detector runs
on a render of the mean face) and to synthesise faces with a known expression.

Conventions
-----------
Vertices are given in image coordinates: pixels, x to the right, **y down**, and z towards
the camera, so a larger z is nearer. Pixel ``(row, col)`` is sampled at its centre, the point
``(x, y) = (col, row)`` (the convention of OpenCV and dlib landmarks). A model-space mesh
(millimetres, y up) is placed into the image with :func:`to_image`.

Shading is Lambertian and two-sided: a surface is lit as if its normal faced the camera, so
the winding of the triangles does not matter::

    colour = albedo * (ambient + (1 - ambient) * max(0, n . l))

with ``n`` the unit normal (per triangle for ``shading="flat"``, interpolated from vertex
normals for ``shading="smooth"``) and ``l`` the unit direction *towards* the light.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHADING_MODES = ("flat", "smooth")


@dataclasses.dataclass(frozen=True, eq=False)
class Rendering:
    """The result of :func:`render_mesh`.

    Attributes
    ----------
    image : (H, W, 3) uint8      RGB
    depth : (H, W) float64       z of the nearest surface, ``-inf`` on the background
    triangle_id : (H, W) int64   index of the visible triangle, ``-1`` on the background
    """

    image: np.ndarray
    depth: np.ndarray
    triangle_id: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle covers the pixel."""
        return self.triangle_id >= 0


def to_image(points: np.ndarray, *, rotation: np.ndarray, scale: float,
             translation) -> np.ndarray:
    """Place model-space points into image coordinates (scaled orthographic camera).

    With ``x_cam = scale * rotation @ x_model`` (see :mod:`fitting`), the image point is
    ``(x_cam + t_x, -y_cam + t_y)``: y is flipped because image y points down. Depth is
    ``scale * z_cam`` so that nearer points keep larger z.

    Parameters
    ----------
    points : (N, 3)            model coordinates (mm, y up, z towards the camera)
    rotation : (3, 3)          acts on column vectors
    scale : float              pixels per model unit
    translation : (2,)         image position of the model origin, pixels

    Returns
    -------
    (N, 3) float64             image x, image y, depth
    """
    points = np.asarray(points, dtype=np.float64)
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if rotation.shape != (3, 3):
        raise ValueError(f"rotation must be (3, 3), got {rotation.shape}")
    if translation.shape != (2,):
        raise ValueError(f"translation must be (2,), got {translation.shape}")
    camera = scale * points @ rotation.T
    return np.column_stack([camera[:, 0] + translation[0],
                            translation[1] - camera[:, 1],
                            camera[:, 2]])


def render_mesh(vertices_img: np.ndarray, triangles: np.ndarray, *,
                image_size: tuple[int, int],
                vertex_colors: np.ndarray | None = None,
                triangle_colors: np.ndarray | None = None,
                light_direction=(0.0, 0.0, 1.0),
                ambient: float = 0.3,
                background=(128, 128, 128),
                shading: str = "smooth",
                noise_std: float = 0.0,
                seed: int | None = None) -> Rendering:
    """Rasterise a triangle mesh with a z-buffer and Lambert shading.

    Parameters
    ----------
    vertices_img : (V, 3)        image x, image y (down), depth (larger is nearer)
    triangles : (T, 3) int       vertex indices
    image_size : (width, height) of the output image, pixels
    vertex_colors : (V, 3) or None     albedo per vertex in [0, 255], interpolated
    triangle_colors : (T, 3) or None   albedo per triangle in [0, 255]; used when
        ``vertex_colors`` is None. Both None: a uniform light grey.
    light_direction : (3,)       direction towards the light in image axes (x right, y down,
                                 z towards the camera); normalised here
    ambient : float              fraction of the albedo lit regardless of orientation, [0, 1]
    background : (3,)            RGB of uncovered pixels
    shading : {"smooth", "flat"} interpolated vertex normals or one normal per triangle
    noise_std : float            std of additive Gaussian pixel noise (grey levels); 0 for none
    seed : int or None           seed of the noise; the output is deterministic for a seed

    Returns
    -------
    Rendering
    """
    vertices = np.asarray(vertices_img, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    width, height = (int(value) for value in image_size)
    _check_inputs(vertices, triangles, width, height, vertex_colors, triangle_colors,
                  ambient, shading)
    light = np.asarray(light_direction, dtype=np.float64)
    if light.shape != (3,) or not np.linalg.norm(light) > 0:
        raise ValueError(f"light_direction must be a non-zero (3,) vector, got {light}")
    light = light / np.linalg.norm(light)

    pixel_index, triangle_index, weights = _rasterise(vertices, triangles, width, height)
    depth_values = np.einsum("fk,fk->f", weights, vertices[triangles[triangle_index], 2])
    pixel_index, triangle_index, weights, depth_values = _nearest_fragments(
        pixel_index, triangle_index, weights, depth_values)

    depth = np.full(height * width, -np.inf)
    depth[pixel_index] = depth_values
    triangle_id = np.full(height * width, -1, dtype=np.int64)
    triangle_id[pixel_index] = triangle_index

    normals = _fragment_normals(vertices, triangles, triangle_index, weights, shading)
    lambert = np.clip(normals @ light, 0.0, None)
    albedo = _fragment_albedo(triangles, triangle_index, weights, vertex_colors,
                              triangle_colors)
    shaded = albedo * (ambient + (1.0 - ambient) * lambert)[:, None]

    image = np.empty((height * width, 3), dtype=np.float64)
    image[:] = np.asarray(background, dtype=np.float64)
    image[pixel_index] = shaded
    if noise_std > 0:
        image += np.random.default_rng(seed).normal(0.0, noise_std, image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Rendering(image=image.reshape(height, width, 3),
                     depth=depth.reshape(height, width),
                     triangle_id=triangle_id.reshape(height, width))


def visible_vertices(vertices_img: np.ndarray, triangles: np.ndarray, rendering: Rendering,
                     *, depth_tolerance: float = 1.0) -> np.ndarray:
    """Which vertices are seen in ``rendering`` (not hidden by nearer surfaces).

    A vertex is visible when it falls inside the image and either the triangle drawn at its
    pixel uses it, or the drawn depth there is within ``depth_tolerance`` of its own depth
    (triangles smaller than a pixel can leave a vertex's pixel to a neighbour).

    Parameters
    ----------
    vertices_img : (V, 3)     as passed to :func:`render_mesh`
    triangles : (T, 3) int    as passed to :func:`render_mesh`
    rendering : Rendering
    depth_tolerance : float   depth units (pixels for :func:`to_image` output)

    Returns
    -------
    (V,) bool
    """
    vertices = np.asarray(vertices_img, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    height, width = rendering.triangle_id.shape
    cols = np.rint(vertices[:, 0]).astype(np.int64)
    rows = np.rint(vertices[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    visible = np.zeros(len(vertices), dtype=bool)
    index = np.flatnonzero(inside)
    drawn = rendering.triangle_id[rows[index], cols[index]]
    covered = drawn >= 0
    uses_vertex = covered & np.any(triangles[np.maximum(drawn, 0)] == index[:, None], axis=1)
    close = covered & (rendering.depth[rows[index], cols[index]] - vertices[index, 2]
                       <= depth_tolerance)
    visible[index] = uses_vertex | close
    return visible


def _check_inputs(vertices, triangles, width, height, vertex_colors, triangle_colors,
                  ambient, shading):
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices_img must be (V, 3), got {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"triangles must be (T, 3), got {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        raise ValueError(f"triangles must index vertices in [0, {len(vertices)})")
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height), got {(width, height)}")
    if vertex_colors is not None and np.shape(vertex_colors) != (len(vertices), 3):
        raise ValueError(f"vertex_colors must be ({len(vertices)}, 3), "
                         f"got {np.shape(vertex_colors)}")
    if triangle_colors is not None and np.shape(triangle_colors) != (len(triangles), 3):
        raise ValueError(f"triangle_colors must be ({len(triangles)}, 3), "
                         f"got {np.shape(triangle_colors)}")
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must lie in [0, 1], got {ambient}")
    if shading not in SHADING_MODES:
        raise ValueError(f"shading must be one of {SHADING_MODES}, got {shading!r}")


def _rasterise(vertices, triangles, width, height):
    """Every (pixel, triangle) pair whose pixel centre lies inside the projected triangle.

    Returns flat pixel indices (F,), triangle indices (F,) and barycentric weights (F, 3).
    Triangles are scanned over their bounding boxes, all at once: the candidate pixels of
    every triangle are generated with ``np.repeat`` so there is no Python loop per triangle.
    """
    corners = vertices[triangles][:, :, :2]                              # (T, 3, 2)
    col0 = np.clip(np.ceil(corners[:, :, 0].min(axis=1)), 0, width).astype(np.int64)
    col1 = np.clip(np.floor(corners[:, :, 0].max(axis=1)), -1, width - 1).astype(np.int64)
    row0 = np.clip(np.ceil(corners[:, :, 1].min(axis=1)), 0, height).astype(np.int64)
    row1 = np.clip(np.floor(corners[:, :, 1].max(axis=1)), -1, height - 1).astype(np.int64)
    box_w = np.maximum(col1 - col0 + 1, 0)
    box_h = np.maximum(row1 - row0 + 1, 0)
    edge1 = corners[:, 1] - corners[:, 0]
    edge2 = corners[:, 2] - corners[:, 0]
    area = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    keep = (box_w * box_h > 0) & (np.abs(area) > 1e-12)                # drop edge-on triangles
    tri = np.flatnonzero(keep)
    counts = box_w[tri] * box_h[tri]
    owner = np.repeat(tri, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.arange(owner.size) - starts
    cols = col0[owner] + offset % box_w[owner]
    rows = row0[owner] + offset // box_w[owner]
    dx = cols - corners[owner, 0, 0]
    dy = rows - corners[owner, 0, 1]
    # Barycentric coordinates by Cramer's rule on the 2x2 system [edge1 edge2] (b1, b2) = d.
    b1 = (dx * edge2[owner, 1] - dy * edge2[owner, 0]) / area[owner]
    b2 = (edge1[owner, 0] * dy - edge1[owner, 1] * dx) / area[owner]
    b0 = 1.0 - b1 - b2
    eps = -1e-9                                                         # shared edges: both
    inside = (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
    weights = np.column_stack([b0, b1, b2])[inside]
    return rows[inside] * width + cols[inside], owner[inside], weights


def _nearest_fragments(pixel_index, triangle_index, weights, depth_values):
    """Keep the nearest fragment of every pixel (ties: the lowest triangle index)."""
    order = np.lexsort((triangle_index, -depth_values, pixel_index))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pixel_index[order[1:]] != pixel_index[order[:-1]]
    chosen = order[first]
    return (pixel_index[chosen], triangle_index[chosen], weights[chosen],
            depth_values[chosen])


def _triangle_normals(vertices, triangles):
    # Image axes (x right, y down, z near) are left-handed; flipping y makes them right-handed
    # so that normals mean the same as in model space.
    points = vertices * np.array([1.0, -1.0, 1.0])
    corners = points[triangles]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def _fragment_normals(vertices, triangles, triangle_index, weights, shading):
    """Unit normals facing the camera, in image axes, one per fragment (F, 3)."""
    face_normals = _triangle_normals(vertices, triangles)              # area-weighted
    if shading == "flat":
        normals = face_normals[triangle_index]
    else:
        vertex_normals = np.zeros_like(vertices)
        for corner in range(3):
            np.add.at(vertex_normals, triangles[:, corner], face_normals)
        normals = np.einsum("fk,fkc->fc", weights, vertex_normals[triangles[triangle_index]])
    normals = normals * np.array([1.0, -1.0, 1.0])                     # back to image axes
    normals = np.where(normals[:, 2:3] < 0, -normals, normals)         # two-sided lighting
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def _fragment_albedo(triangles, triangle_index, weights, vertex_colors, triangle_colors):
    if vertex_colors is not None:
        colors = np.asarray(vertex_colors, dtype=np.float64)
        return np.einsum("fk,fkc->fc", weights, colors[triangles[triangle_index]])
    if triangle_colors is not None:
        return np.asarray(triangle_colors, dtype=np.float64)[triangle_index]
    return np.full((triangle_index.size, 3), 200.0)
