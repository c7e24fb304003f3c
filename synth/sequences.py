"""Synthetic face sequences: one identity whose expression and head pose move smoothly.

A sequence has ``keyframes`` random expressions and poses (the laws of
:func:`synth.faces.synthesize_face`); frame ``t`` blends the two keyframes around it with a
smoothstep, so expression and pose have no jumps and no kinks at the keys. The label of a
frame is linear in the expression weights, so every frame's label is exact. The scene (framing,
colours, light, background) is drawn once; the pixel noise is drawn anew for each frame.

Everything about sequence ``index`` of a run with ``seed`` follows from
``np.random.default_rng([seed, index, 2])`` (the still faces use ``[seed, index]``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synth.faces import (
    DEFAULT_IDENTITY_SCALE,
    SyntheticFace,
    _sample_expression,
    _sample_identity,
    render_face,
    sample_scene,
)
from synth.geometry import FaceGeometry

_SEQUENCE_STREAM = 2


def smoothstep_blend(frames: int, keyframes: int) -> tuple[np.ndarray, np.ndarray]:
    """For each frame, the keyframe before it and the weight of the one after.

    Returns
    -------
    before : (frames,) int64        index of the earlier keyframe
    weight : (frames,) float64      smoothstep weight of keyframe ``before + 1``, in [0, 1]
    """
    if frames < 1 or keyframes < 2:
        raise ValueError(f"need frames >= 1 and keyframes >= 2, got {frames} and {keyframes}")
    position = np.linspace(0.0, keyframes - 1.0, frames)
    before = np.minimum(np.floor(position).astype(np.int64), keyframes - 2)
    fraction = position - before
    return before, fraction * fraction * (3.0 - 2.0 * fraction)


def synthesize_sequence(geometry: FaceGeometry, *, seed: int, index: int, frames: int,
                        keyframes: int = 3, image_size: int = 256, max_yaw: float = 30.0,
                        max_pitch: float = 10.0, max_roll: float = 8.0,
                        expression_scale: float = 1.0,
                        identity_scale: float = DEFAULT_IDENTITY_SCALE,
                        face_fraction: tuple = (0.6, 0.75)) -> list[SyntheticFace]:
    """Render sequence ``index`` of the run with ``seed``: ``frames`` faces of one identity.

    Parameters
    ----------
    geometry : FaceGeometry
    frames : int            faces in the sequence
    keyframes : int         random expressions and poses the sequence moves through
    image_size, max_yaw, max_pitch, max_roll, expression_scale, identity_scale,
    face_fraction : as for :func:`synth.faces.synthesize_face`

    Returns
    -------
    list of SyntheticFace   one per frame, each with its exact labels
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed} and {index}")
    rng = np.random.default_rng([seed, index, _SEQUENCE_STREAM])
    identity = _sample_identity(geometry, rng, identity_scale=identity_scale)
    expressions = np.stack([_sample_expression(geometry, rng,
                                               expression_scale=expression_scale)
                            for _ in range(keyframes)])
    poses = rng.uniform(-1.0, 1.0, (keyframes, 3)) * np.array([max_yaw, max_pitch, max_roll])
    scene = sample_scene(geometry, rng, image_size=image_size, face_fraction=face_fraction)
    noise_seeds = rng.integers(2 ** 31, size=frames)
    before, weight = smoothstep_blend(frames, keyframes)
    faces = []
    for frame in range(frames):
        k, w = before[frame], weight[frame]
        expression = (1.0 - w) * expressions[k] + w * expressions[k + 1]
        angles = (1.0 - w) * poses[k] + w * poses[k + 1]
        frame_scene = dataclasses.replace(scene, noise_seed=int(noise_seeds[frame]))
        faces.append(render_face(geometry, frame_scene, identity, expression, angles))
    return faces

