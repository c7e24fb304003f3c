"""Progress lines on stderr while a pipeline runs locally.

Counts live in the process that does the work. With the in-process DirectRunner that is the
launcher, which prints its running total. When the launcher's own worker processes do the work
(``--workers N``), each worker writes its counts to a file in a folder named by
``EXPNET_PROGRESS_DIR`` (inherited by the workers), and a thread of the launcher prints their
sum. On a distributed runner each worker reports to its own log, and Beam's metrics hold the
totals.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time

_INTERVAL_SECONDS = 2.0
PROGRESS_DIR_ENV = "EXPNET_PROGRESS_DIR"


class Progress:
    """Thread-safe counters, printed (or shared with the launcher) every ``interval`` s."""

    def __init__(self, *, interval: float = _INTERVAL_SECONDS, stream=None):
        self.interval = interval
        self.stream = stream
        self.enabled = False
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_print = 0.0
        self._folder: str | None = None
        self._stopping = threading.Event()
        self._printer: threading.Thread | None = None

    def start(self, stream=None, *, share_with_workers: bool = False) -> None:
        """Print progress from now on; with ``share_with_workers``, also the counts of
        worker processes started after this call."""
        with self._lock:
            self.enabled = True
            self.stream = stream or sys.stderr
            self._counts = {}
            self._started = time.monotonic()
            self._last_print = self._started
        if share_with_workers:
            self._folder = tempfile.mkdtemp(prefix="expnet-progress-")
            os.environ[PROGRESS_DIR_ENV] = self._folder
            self._stopping.clear()
            self._printer = threading.Thread(target=self._print_shared, daemon=True,
                                             name="expnet-progress")
            self._printer.start()

    def stop(self) -> None:
        self.enabled = False
        if self._printer is not None:
            self._stopping.set()
            self._printer.join()
            self._printer = None
        if self._folder is not None:
            os.environ.pop(PROGRESS_DIR_ENV, None)
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def add(self, name: str, number: int = 1) -> None:
        shared = os.environ.get(PROGRESS_DIR_ENV) if not self.enabled else None
        if not (self.enabled or shared):
            return
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + number
            now = time.monotonic()
            if now - self._last_print < self.interval:
                return
            self._last_print = now
            if shared:
                _write_counts(shared, self._counts)
            elif self._printer is None:
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def flush(self) -> None:
        """Share this worker's counts now (call at the end of a bundle), so the launcher's
        last lines are not an interval behind."""
        shared = os.environ.get(PROGRESS_DIR_ENV) if not self.enabled else None
        if shared:
            with self._lock:
                _write_counts(shared, self._counts)

    def line(self, now: float | None = None, counts: dict | None = None) -> str:
        counts = self._counts if counts is None else counts
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        images = counts.get("images", 0)
        return (f"[expnet] {images} images landmarked ({images / elapsed:.1f}/s), "
                f"{counts.get('rows', 0)} rows fitted, "
                f"{counts.get('failures', 0)} failures, {elapsed:.0f} s")

    def _print_shared(self) -> None:
        """The launcher's printer: its own counts plus every worker's, each interval."""
        while not self._stopping.wait(self.interval):
            with self._lock:
                totals = dict(self._counts)
            for counts in _read_counts(self._folder):
                for name, number in counts.items():
                    totals[name] = totals.get(name, 0) + number
            self.stream.write(self.line(counts=totals) + "\n")
            self.stream.flush()


def _write_counts(folder: str, counts: dict) -> None:
    """This process's counts to ``folder/<pid>.json``, replaced atomically."""
    path = os.path.join(folder, f"{os.getpid()}.json")
    try:
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            json.dump(counts, handle)
        os.replace(f"{path}.tmp", path)
    except OSError:
        pass  # the launcher removed the folder: the run is over, progress no longer matters


def _read_counts(folder: str) -> list[dict]:
    found = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return found
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                found.append(json.load(handle))
        except (OSError, ValueError):
            continue  # being replaced; next interval reads it
    return found


PROGRESS = Progress()
