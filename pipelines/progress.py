"""Progress lines on stderr while a pipeline runs locally.

Counts live in the process that runs the work; with the in-process DirectRunner that is the
launching process, so the user sees one running total. On a distributed runner each worker
reports its own share to its log, and Beam's metrics hold the totals.
"""

from __future__ import annotations

import sys
import threading
import time

_INTERVAL_SECONDS = 2.0


class Progress:
    """Thread-safe counters printed at most every ``interval`` seconds."""

    def __init__(self, *, interval: float = _INTERVAL_SECONDS, stream=None):
        self.interval = interval
        self.stream = stream
        self.enabled = False
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_print = 0.0

    def start(self, stream=None) -> None:
        with self._lock:
            self.enabled = True
            self.stream = stream or sys.stderr
            self._counts = {}
            self._started = time.monotonic()
            self._last_print = self._started

    def stop(self) -> None:
        self.enabled = False

    def add(self, name: str, number: int = 1) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + number
            now = time.monotonic()
            if now - self._last_print >= self.interval:
                self._last_print = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        images = self._counts.get("images", 0)
        return (f"[expnet] {images} images landmarked ({images / elapsed:.1f}/s), "
                f"{self._counts.get('rows', 0)} rows fitted, "
                f"{self._counts.get('failures', 0)} failures, {elapsed:.0f} s")


PROGRESS = Progress()
