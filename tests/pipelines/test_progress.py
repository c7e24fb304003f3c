"""Progress lines while a run goes on: counts, rate, and quiet when not started."""

import io

from pipelines.progress import Progress


def test_lines_carry_the_running_counts():
    stream = io.StringIO()
    progress = Progress(interval=0.0)
    progress.start(stream)
    for _ in range(3):
        progress.add("images")
    progress.add("rows", 2)
    progress.add("failures")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # interval 0: one line per update
    assert lines[-1].startswith("[expnet] 3 images landmarked (")
    assert "2 rows fitted, 1 failures" in lines[-1]


def test_nothing_is_printed_unless_started_or_within_the_interval():
    stream = io.StringIO()
    progress = Progress(interval=3600.0, stream=stream)
    progress.add("images")
    assert stream.getvalue() == ""
    progress.start(stream)
    progress.add("images")
    progress.stop()
    progress.add("images")
    assert stream.getvalue() == ""  # within the first interval, then stopped
    assert progress.line().startswith("[expnet] 1 images landmarked")


def test_worker_processes_report_to_the_launchers_line(tmp_path):
    import subprocess
    import sys
    import time

    stream = io.StringIO()
    progress = Progress(interval=0.05)
    progress.start(stream, share_with_workers=True)
    progress.add("rows", 1)
    worker = ("from pipelines.progress import PROGRESS\n"
              "PROGRESS.add('images', 5)\nPROGRESS.add('failures', 2)\nPROGRESS.flush()\n")
    for _ in range(2):  # two workers, each ending its bundle with a flush
        subprocess.run([sys.executable, "-c", worker], check=True)
    time.sleep(0.3)
    progress.stop()
    assert stream.getvalue().splitlines()[-1].startswith("[expnet] 10 images landmarked")
    assert "1 rows fitted, 4 failures" in stream.getvalue().splitlines()[-1]


def test_a_flush_shares_a_workers_counts_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPNET_PROGRESS_DIR", str(tmp_path))
    worker = Progress(interval=3600.0)
    worker.add("images", 3)   # the first count is shared at once...
    worker.add("images", 4)   # ...later ones wait for the interval or a flush
    [path] = tmp_path.glob("*.json")
    assert path.read_text() == '{"images": 3}'
    worker.flush()
    assert path.read_text() == '{"images": 7}'
