"""Pure-NumPy 3D morphable-model fitting: models, landmark detectors and the fitter.

Array convention (the one used everywhere in this package)
-----------------------------------------------------------
- Points are rows: 2-D points are ``(N, 2)``, 3-D points ``(N, 3)``; batches put the batch
  axis first, ``(B, N, 2)``.
- Image coordinates are pixels with the origin at the top-left corner, x to the right and
  **y pointing down**. Model coordinates are millimetres, x to the subject's left as seen by
  the camera (image right), y up, z towards the camera.
- Bases are ``(V, 3, K)``: vertex, coordinate, component. Coefficients are in standard-deviation
  (sigma) units: ``mean + basis @ coefficients`` with ``coefficients ~ N(0, I)``.
- Rotations are ``(3, 3)`` matrices acting on column vectors, ``x_cam = R @ x_model``; with rows
  as points that is ``points @ R.T``.
- float64 inside; float32 only at the schema boundary.

This package never imports Apache Beam or torch, so it can be used from a notebook::

    from fitting import load_model, fit_landmarks
    model = load_model("open")
    result = fit_landmarks(model, landmarks_2d)   # landmarks_2d: (B, 68, 2)
"""

from fitting.models import MorphableModel, load_model

__all__ = ["MorphableModel", "load_model", "fit_landmarks", "project", "FitBatch"]


def __getattr__(name):
    # The fitter is imported lazily so that model tooling does not pay for it.
    if name in ("fit_landmarks", "project", "FitBatch"):
        from fitting import fitter

        return getattr(fitter, name)
    raise AttributeError(f"module 'fitting' has no attribute {name!r}")
