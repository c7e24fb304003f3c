"""Heavy resources (landmark detectors, morphable models) loaded once per worker process.

Beam runners call ``DoFn.setup()`` more often than once per process: the Dask runner calls it
for every partition, and the DirectRunner for every DoFn instance it makes. Loading through
:func:`load_once` keeps one copy per process whatever the runner does, held until the
process ends (workers are long-lived; a detector is tens of MB, a model a few).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

_LOADED: dict[Hashable, Any] = {}
_LOCK = threading.Lock()


def load_once(key: Hashable, load: Callable[[], Any]) -> Any:
    """The resource under ``key`` in this process, made by ``load()`` the first time.

    Parameters
    ----------
    key : hashable
        Names the resource and every option it is loaded with, e.g. ``("landmarker", "fan",
        (("weights_path", "/w.pth"),))``: equal keys must mean interchangeable resources.
    load : callable
        Makes the resource; called at most once per key and process, under a lock, so
        threads of one worker never load it twice.
    """
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


def loaded_keys() -> list[Hashable]:
    """Keys of the resources this process holds (for tests and diagnostics)."""
    with _LOCK:
        return list(_LOADED)
