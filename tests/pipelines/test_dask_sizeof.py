"""Dask weighs Beam's values and the pipeline's records by what they hold."""

from __future__ import annotations

import tracemalloc

import apache_beam as beam
import numpy as np
import pytest

from pipelines.dask_pardo import run_bundle
from pipelines.dask_sizeof import register_sizes
from pipelines.faces import FaceRecord, ImageMeta
from pipelines.sources import SourceRecord

dask = pytest.importorskip("dask", reason="the dask extra is not installed")

FACES = 500


def _face(index: int) -> FaceRecord:
    content = f"{index:064x}"
    meta = ImageMeta(content, f"/collection/person-{index}/photo-{index:06d}.jpg",
                     "/collection", None, None)
    rng = np.random.default_rng(index)
    return FaceRecord(f"{content}-f0", meta, 14_000,
                      rng.random((68, 2), dtype=np.float32),
                      rng.random((68, 2), dtype=np.float32),
                      rng.random(4, dtype=np.float32))


def _windowed(value):
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    return WindowedValue(value, 0, (GlobalWindow(),))


def test_a_face_waiting_for_its_fit_weighs_what_it_allocated():
    from dask.sizeof import sizeof

    register_sizes()
    register_sizes()  # idempotent
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        waiting = [_windowed(((0, index % 64), _face(index))) for index in range(FACES)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    weighed = sizeof(waiting)
    # Dask's default weighs a WindowedValue at 80 bytes: about a thirtieth of this.
    assert 0.7 * allocated < weighed < 1.3 * allocated
    arrays = sum(value.value[1].crop_landmarks.nbytes * 2 for value in waiting)
    assert weighed > arrays


def test_a_record_with_its_bytes_weighs_them():
    from dask.sizeof import sizeof

    register_sizes()
    data = bytes(50_000)
    record = SourceRecord("archive.tar!a.jpg", "archive.tar", data, content_id="ab" * 32)
    assert sizeof(_windowed(record)) > len(data)
    assert sizeof(record.without_data()) == sizeof(record)  # no location: the bytes stay
    dropped = SourceRecord("a.jpg", "folder", data, content_id="ab" * 32, location="a.jpg")
    assert sizeof(dropped.without_data()) < 1_000


class _Faces(beam.DoFn):
    def process(self, index):
        yield _face(index)


def test_a_dask_worker_counts_the_faces_it_holds_as_managed_memory():
    """A worker process learns the sizes when it runs a bundle, before it keeps the
    bundle's outputs: its managed memory is what the faces hold, not 80 bytes apiece."""
    from apache_beam.runners.common import DoFnSignature

    distributed = pytest.importorskip("distributed")
    items = [_windowed(index) for index in range(FACES)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            faces = client.submit(run_bundle, items, DoFnSignature(_Faces()), None, "Faces",
                                  None, [], {})
            assert len(faces.result()) == FACES
            [managed] = client.run(lambda dask_worker: dask_worker.state.nbytes).values()
    per_face = managed / FACES
    assert 1_500 < per_face < 4_000
