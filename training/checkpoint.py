"""Training checkpoints: weights, optimiser, progress, history and every RNG state.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(weights_only=True)``: opening one never runs pickled code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from training.model import ExpNet

FORMAT = "expnet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not an expnet checkpoint this code can read."""


def rng_states() -> dict:
    """The torch, CUDA, NumPy and Python RNG states, in a weights-only-loadable form."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": [version, list(python_state), gauss_next],
    }


def restore_rng_states(states: dict) -> None:
    """Put back what :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError   when the file is not one, or of an unknown format version
    FileNotFoundError
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an expnet checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format_version')}, "
                              f"this code reads {FORMAT_VERSION}")
    return state


def model_from_checkpoint(state: dict) -> ExpNet:
    """The ExpNet a checkpoint describes, with its weights, in eval mode."""
    config = state["config"]
    model = ExpNet(backbone=config["backbone"], expression_dim=config["expression_dim"])
    model.load_state_dict(state["model"])
    return model.eval()
