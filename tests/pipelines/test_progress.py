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
