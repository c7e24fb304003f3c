"""Landmark noise profiles: how far a landmarker's points stray, in model millimetres.

The fitter's cost (:mod:`fitting.fitter`) is a MAP estimate when each landmark's weight is the
inverse of its noise variance and the prior weights are the unit that variance is counted in::

    sum_i ||x_i - P(X_i)||^2 / (s^2 sigma_i^2)  +  ||identity||^2  +  ||expression||^2

i.e. ``landmark_weights = 1 mm^2 / sigma_i^2`` with ``identity_weight = expression_weight =
1`` mm^2 (:func:`landmark_weights`). The unit weights the fitter defaults to assume 1 mm^2 of
noise on every point (about 1 px on a 200 px face), far below what a detector makes.

``DLIB_NOISE_MM2`` was measured by ``studies/landmark_noise.py`` (``benchmarks/RESULTS.md``,
"Landmark noise profile (the pipeline's fit weights)"; 400 synthetic renders of
``synth.faces``, raw MakeHuman geometry, seed 1, |yaw| <= 45 degrees; 352 found by dlib):
the per-coordinate second moment of dlib's error against the fitter's forward model at the
true parameters (jaw points on the silhouette), with each face's mean offset removed, averaged
over the points of each group. The script's ``--write`` output is
``tests/data/landmark_noise_dlib.json``, which ``tests/fitting/test_noise.py`` holds these
numbers to. Per group rather than per point: per-point variances labelled the benchmark's
faces no better (expression RMSE 0.999 against 1.001 sigma) and are noisier estimates.

``FAN_NOISE_MM2`` is dlib's profile until FAN is measured: no real FAN weights are available
to this project's machines, so it is a placeholder, not a measurement.
"""

from __future__ import annotations

import numpy as np

from fitting.models.model import NUM_LANDMARKS

__all__ = ["LANDMARK_GROUPS", "DLIB_GROUP_NOISE_MM2", "DLIB_NOISE_MM2", "FAN_NOISE_MM2",
           "NOISE_PROFILES", "group_profile", "landmark_weights"]


# iBUG-68 groups: jaw line, eyebrows, nose (bridge and base), eyes, mouth (outer and inner).
LANDMARK_GROUPS = {
    "jaw": np.arange(0, 17),
    "brows": np.arange(17, 27),
    "nose": np.arange(27, 36),
    "eyes": np.arange(36, 48),
    "mouth": np.arange(48, 68),
}
# mm^2 per coordinate; studies/landmark_noise.py --count 400 --seed 1 (see the docstring).
DLIB_GROUP_NOISE_MM2 = {"jaw": 58.43, "brows": 21.93, "nose": 13.99, "eyes": 21.97,
                        "mouth": 16.59}


def group_profile(group_variances: dict) -> np.ndarray:
    """(68,) per-point noise variance from one variance per :data:`LANDMARK_GROUPS` group.

    Parameters
    ----------
    group_variances : dict    group name -> variance (mm^2, > 0); every group must be named

    Returns
    -------
    variances : (68,) float64   mm^2
    """
    if set(group_variances) != set(LANDMARK_GROUPS):
        raise ValueError(f"expected variances for the groups {sorted(LANDMARK_GROUPS)}, got "
                         f"{sorted(group_variances)}")
    variances = np.empty(NUM_LANDMARKS)
    for name, points in LANDMARK_GROUPS.items():
        if not group_variances[name] > 0:
            raise ValueError(f"variance of group {name!r} must be > 0, got "
                             f"{group_variances[name]}")
        variances[points] = group_variances[name]
    return variances


DLIB_NOISE_MM2 = group_profile(DLIB_GROUP_NOISE_MM2)
FAN_NOISE_MM2 = DLIB_NOISE_MM2.copy()   # not measured: see the module docstring
NOISE_PROFILES = {"dlib": DLIB_NOISE_MM2, "fan": FAN_NOISE_MM2}


def landmark_weights(noise_mm2: np.ndarray, batch: int) -> np.ndarray:
    """``fit_landmarks`` weights ``1 mm^2 / variance`` for a batch, to use with unit priors.

    Parameters
    ----------
    noise_mm2 : (68,) float   per-point noise variance, mm^2, > 0
    batch : int               number of faces

    Returns
    -------
    weights : (batch, 68) float64
    """
    noise = np.asarray(noise_mm2, dtype=np.float64)
    if noise.shape != (NUM_LANDMARKS,):
        raise ValueError(f"expected noise_mm2 of shape (68,), got {noise.shape}")
    if not np.all(np.isfinite(noise) & (noise > 0)):
        raise ValueError("noise_mm2 must be positive and finite")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    return np.broadcast_to(1.0 / noise, (batch, NUM_LANDMARKS)).copy()
