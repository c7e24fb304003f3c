"""The expnet-data version, and the versions of what shapes its output."""

from __future__ import annotations

import importlib.metadata
import platform

VERSION = "0.5.0"

_RECORDED = ("apache-beam", "numpy", "scipy", "pyarrow", "opencv-python", "pillow", "dlib-bin",
             "av", "faiss-cpu")


def versions() -> dict:
    """Versions of expnet-data, Python and the packages that shape the output."""
    found = {"expnet-data": VERSION, "python": platform.python_version()}
    for name in _RECORDED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
