"""Shared fixtures of the fitting tests: small seeded synthetic models and the open model."""

from __future__ import annotations

import pytest

from fitting.models import OPEN_MODEL_PATH, load_model
from synth.toy_model import make_synthetic_model


@pytest.fixture(scope="session")
def synthetic_model():
    """A 200-vertex face-like model: 40 identity, 29 expression components, 17x4 contour."""
    return make_synthetic_model(seed=0)


def _fit_models():
    """Models the fitter is checked on: the synthetic one, and the open one once it is built."""
    names = ["synthetic"]
    if OPEN_MODEL_PATH.is_file():
        names.append("open")
    return names


@pytest.fixture(scope="session", params=_fit_models())
def fit_model(request, synthetic_model):
    """Every model that exists in this checkout (see ``_fit_models``)."""
    if request.param == "open":
        return load_model("open")
    return synthetic_model
