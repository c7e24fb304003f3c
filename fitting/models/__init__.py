"""Morphable models: the in-memory model, its file format, loaders and the open default.

``load_model("open")`` returns the embedded CC0 model built from MakeHuman data;
``load_model("path/to/model.npz")`` loads a model converted with ``expnet models convert``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fitting.models.model import (
    EXPRESSION_DIM,
    ModelFileError,
    MorphableModel,
    read_model_file,
    save_model,
)

__all__ = [
    "EXPRESSION_DIM",
    "MorphableModel",
    "ModelFileError",
    "OPEN_MODEL_PATH",
    "load_model",
    "read_model_file",
    "save_model",
]

OPEN_MODEL_PATH = Path(__file__).resolve().parent / "data" / "open_model.npz"
BUILTIN_MODELS = {"open": OPEN_MODEL_PATH}


def load_model(spec: str | Path) -> MorphableModel:
    """Load a morphable model by name or path.

    Parameters
    ----------
    spec : str or Path
        ``"open"`` for the embedded CC0 default model, or the path of a model ``.npz``
        written by ``expnet models convert`` / :func:`save_model`.

    Returns
    -------
    MorphableModel

    Raises
    ------
    ModelFileError
        When the name is unknown, the file is missing, truncated or inconsistent.
    """
    return _load_cached(str(spec))


@functools.lru_cache(maxsize=8)
def _load_cached(spec: str) -> MorphableModel:
    if spec in BUILTIN_MODELS:
        return read_model_file(BUILTIN_MODELS[spec])
    path = Path(spec).expanduser()
    if path.suffix != ".npz":
        raise ModelFileError(
            f"unknown model {spec!r}: use one of {sorted(BUILTIN_MODELS)} or the path of a "
            "converted .npz (see 'expnet models convert --help')"
        )
    return read_model_file(path)
