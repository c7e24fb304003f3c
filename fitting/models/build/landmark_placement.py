"""Place the iBUG-68 landmarks and jaw-contour candidates on a mesh by detecting them on renders.

Method (repeatable, no hand-placed points)
------------------------------------------
1. Render the neutral mesh with :func:`synth.render.render_mesh` from a few views around the
   frontal one (yaw and scale jitter), skin light and the extra geometry (eyeballs) dark, on a
   mid-grey background.
2. Run a 68-point landmark detector on every render and take, for every detected point, the
   nearest *visible* mesh vertex in image space; note its 3D position on the neutral mesh.
3. Average those 3D positions over the views.
4. Enforce left-right symmetry with the mesh's mirror table: for a symmetric iBUG pair the
   point of one side and the reflection of the other are averaged, the nearest vertex visible
   in the frontal view is taken for one side and its mirror vertex for the other; a midline
   landmark takes the nearest vertex that is its own mirror. A vertex is used at most once.

Jaw-line contour candidates: for jaw landmark ``j`` (iBUG 0..16), the silhouette vertices at
the landmark's height as the head turns that side of the face away from the camera, in order
of the turn (see :func:`contour_candidates`).
"""

from __future__ import annotations

import numpy as np

from fitting.contour import CHIN_LANDMARK, JAW_LANDMARKS
from fitting.models.model import NUM_LANDMARKS
from synth.faces import EYE_RGB
from synth.render import render_mesh, to_image, visible_vertices

# iBUG-68 pairs (0-based) mapped onto each other by a left-right mirror of the face.
IBUG_MIRROR_PAIRS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (31, 35), (32, 34),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (59, 55), (58, 56),
    (60, 64), (61, 63), (67, 65),
)
IBUG_MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)
SKIN_RGB = (226, 188, 160)


class LandmarkPlacementError(RuntimeError):
    """The detector did not find the face on enough renders."""


def yaw_rotation(degrees: float) -> np.ndarray:
    """Rotation about the vertical (y) axis, (3, 3); positive turns the face to image right."""
    angle = np.deg2rad(degrees)
    cosine, sine = np.cos(angle), np.sin(angle)
    return np.array([[cosine, 0.0, sine], [0.0, 1.0, 0.0], [-sine, 0.0, cosine]])


def render_view(vertices: np.ndarray, triangles: np.ndarray, extra_vertices: np.ndarray,
                extra_triangles: np.ndarray, *, yaw_degrees: float = 0.0,
                scale: float = 2.0, image_size: int = 512,
                light_direction=(0.3, -0.4, 1.0)):
    """Render the mesh (skin colour) plus extra geometry (dark) centred in a square image.

    Parameters
    ----------
    vertices : (V, 3)            mesh in model space (mm, y up)
    triangles : (T, 3) int
    extra_vertices : (E, 3)      e.g. eyeballs, drawn dark; not candidates for landmarks
    extra_triangles : (U, 3) int indices into ``extra_vertices``
    yaw_degrees : float          head turn
    scale : float                pixels per millimetre
    image_size : int             width and height in pixels
    light_direction : (3,)       towards the light in image axes (y down): above-right-front

    Returns
    -------
    rendering : Rendering
    vertices_img : (V, 3)        the mesh vertices in image coordinates
    visible : (V,) bool          mesh vertices not hidden (by the mesh or the extra geometry)
    """
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    rotation = yaw_rotation(yaw_degrees)
    half = (image_size - 1) / 2.0
    everything = np.vstack([vertices, extra_vertices]) - centre
    placed = to_image(everything, rotation=rotation, scale=scale, translation=(half, half))
    all_triangles = np.vstack([triangles, np.asarray(extra_triangles) + len(vertices)])
    colors = np.empty((len(everything), 3))
    colors[:len(vertices)] = SKIN_RGB
    colors[len(vertices):] = EYE_RGB
    rendering = render_mesh(placed, all_triangles, image_size=(image_size, image_size),
                            vertex_colors=colors, light_direction=light_direction,
                            ambient=0.35, background=(128, 128, 128))
    visible = visible_vertices(placed, all_triangles, rendering)[:len(vertices)]
    return rendering, placed[:len(vertices)], visible


def detected_landmark_points(vertices: np.ndarray, triangles: np.ndarray,
                             extra_vertices: np.ndarray, extra_triangles: np.ndarray,
                             landmarker, *, views, image_size: int = 512,
                             min_views: int | None = None) -> np.ndarray:
    """3D positions of the 68 detected landmarks, averaged over views (steps 1-3 above).

    Parameters
    ----------
    vertices, triangles, extra_vertices, extra_triangles : as in :func:`render_view`
    landmarker : object with ``detect(image) -> ImageFaces`` (e.g. ``DlibLandmarker``)
    views : sequence of (yaw_degrees, scale)
    image_size : int
    min_views : int or None      views that must succeed; all of them when None

    Returns
    -------
    (68, 3) float64              model-space points (vertex positions, averaged)
    """
    min_views = len(views) if min_views is None else min_views
    chosen = []
    for yaw_degrees, scale in views:
        rendering, placed, visible = render_view(
            vertices, triangles, extra_vertices, extra_triangles, yaw_degrees=yaw_degrees,
            scale=scale, image_size=image_size)
        found = landmarker.detect(rendering.image)
        if not found.faces:
            continue
        face = max(found.faces, key=lambda candidate: candidate.area)
        visible = np.flatnonzero(visible)
        distance = np.linalg.norm(
            placed[visible, None, :2] - face.landmarks[None, :, :], axis=2)     # (Vis, 68)
        chosen.append(vertices[visible[np.argmin(distance, axis=0)]])
    if len(chosen) < max(min_views, 1):
        raise LandmarkPlacementError(
            f"the detector found the face on {len(chosen)} of {len(views)} renders; "
            f"{max(min_views, 1)} needed")
    return np.mean(chosen, axis=0)


def symmetric_landmark_vertices(points: np.ndarray, vertices: np.ndarray, mirror: np.ndarray,
                                candidates: np.ndarray) -> np.ndarray:
    """Snap 68 points to distinct vertices, mirror-symmetric (step 4 above).

    Parameters
    ----------
    points : (68, 3)          landmark positions in model space (x towards the subject's left)
    vertices : (V, 3)
    mirror : (V,) int         left-right partner of each vertex (itself on the midline)
    candidates : (V,) bool    vertices allowed as landmarks (visible in the frontal view)

    Returns
    -------
    (68,) int64               vertex index of each landmark
    """
    if points.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"points must be (68, 3), got {points.shape}")
    reflect = np.array([-1.0, 1.0, 1.0])
    indices = np.full(NUM_LANDMARKS, -1, dtype=np.int64)
    taken = np.zeros(len(vertices), dtype=bool)
    pair_of = {first: second for first, second in IBUG_MIRROR_PAIRS}
    self_mirror = mirror == np.arange(len(vertices))
    # Pairs are snapped on the subject's right (x < 0), where iBUG 0..7 etc. lie in a photo.
    right_side = candidates & candidates[mirror] & (vertices[:, 0] < 0) & ~self_mirror
    midline = candidates & self_mirror
    for landmark in range(NUM_LANDMARKS):
        if landmark in pair_of:
            partner = pair_of[landmark]
            target = (points[landmark] + points[partner] * reflect) / 2.0
            if target[0] > 0:
                target = target * reflect
            vertex = _nearest_free(target, vertices, right_side & ~taken & ~taken[mirror])
            indices[landmark], indices[partner] = vertex, mirror[vertex]
            taken[[vertex, mirror[vertex]]] = True
        elif landmark in IBUG_MIDLINE:
            target = points[landmark] * np.array([0.0, 1.0, 1.0])
            vertex = _nearest_free(target, vertices, midline & ~taken)
            indices[landmark] = vertex
            taken[vertex] = True
    if np.any(indices < 0):
        raise ValueError(f"iBUG landmarks {np.flatnonzero(indices < 0)} have no symmetry role")
    return indices


def contour_candidates(vertices: np.ndarray, landmark_indices: np.ndarray, *,
                       band: float = 4.0, yaw_step: float = 3.0,
                       max_yaw: float = 60.0, max_depth: float = 20.0) -> np.ndarray:
    """Jaw-line contour candidates, ``(17, C)`` int64 padded with ``-1``.

    Row ``j`` lists the vertices that are on the silhouette at jaw landmark ``j``'s height as
    the head turns: for turns ``a = yaw_step, 2 yaw_step, ..., max_yaw`` about the vertical
    axis, the vertex within ``band`` of the landmark's height, on its side of the face, that
    is outermost in the image after the turn, among the vertices at most ``max_depth`` behind
    the landmark. The row starts with the landmark's own vertex,
    then the silhouette vertices as that side turns *towards* the camera (the outline moves
    outwards, towards the back of the head), then as it turns *away* (the outline moves onto
    the cheek, towards the front of the face); each vertex appears once. A fitter that picks
    the outermost candidate of the rotated face (:mod:`fitting.contour`) thus finds the
    silhouette on both sides of a turned head. Row 8 (the chin) holds only its vertex.

    Parameters
    ----------
    vertices : (V, 3)            neutral mesh, model space (mm, x towards the subject's left)
    landmark_indices : (68,)     the landmark vertices
    band : float                 half-height of the horizontal slice around the landmark, mm
    yaw_step, max_yaw : float    the turns visited, degrees
    max_depth : float            how far behind the landmark (mm of z) a candidate may lie.
                                 Without it the slices of the lower jaw landmarks (4-7, 9-12)
                                 reach the neck and the jaw angle 30-86 mm behind, which are
                                 outermost even in a frontal view, so the fit matched the jaw
                                 line seen in a photo to the neck and pitched the head by
                                 15-20 degrees to make those deep points fit.

    Returns
    -------
    (17, C) int64
    """
    rows = []
    yaws = np.arange(yaw_step, max_yaw + yaw_step / 2, yaw_step)
    for landmark in JAW_LANDMARKS:
        start = int(landmark_indices[landmark])
        row = [start]
        if landmark != CHIN_LANDMARK:
            side = np.sign(vertices[start, 0])
            same_side = side * vertices[:, 0] > 0
            slice_ = np.flatnonzero(same_side
                                    & (np.abs(vertices[:, 1] - vertices[start, 1]) <= band)
                                    & (vertices[:, 2] >= vertices[start, 2] - max_depth))
            # yaw_rotation(-side * a) brings this side towards the camera, +side * a away.
            for direction in (-1.0, 1.0):
                for yaw in yaws:
                    turned = vertices[slice_] @ yaw_rotation(direction * side * yaw).T
                    outermost = int(slice_[np.argmax(side * turned[:, 0])])
                    if outermost not in row:
                        row.append(outermost)
        rows.append(row)
    width = max(len(row) for row in rows)
    table = np.full((len(rows), width), -1, dtype=np.int64)
    for row_index, row in enumerate(rows):
        table[row_index, :len(row)] = row
    return table


def _nearest_free(target: np.ndarray, vertices: np.ndarray, allowed: np.ndarray) -> int:
    options = np.flatnonzero(allowed)
    if options.size == 0:
        raise ValueError("no free candidate vertex left for a landmark")
    distance = np.linalg.norm(vertices[options] - target, axis=1)
    return int(options[np.argmin(distance)])
