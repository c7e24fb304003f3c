"""Warming a Dask cluster's workers: the run's resources load there before the first task."""

from __future__ import annotations

import time

import pytest

from pipelines.allocator import allocator_tuned, on_glibc
from pipelines.warmup import warm_dask_workers

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def _loaded(client) -> dict:
    from pipelines.resources import loaded_keys

    return client.run(loaded_keys)


def test_every_worker_loads_the_detector_and_the_model_without_a_task_of_the_run():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster.scheduler_address) as client:
            assert all(keys == [] for keys in _loaded(client).values())
            release = warm_dask_workers(cluster.scheduler_address, "dlib", {}, "open", False)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                loaded = _loaded(client)
                if all(len(keys) == 2 for keys in loaded.values()):
                    break
                time.sleep(0.2)
            release()
            assert len(loaded) == 2
            for keys in loaded.values():
                assert sorted(keys, key=repr) == [("landmarker", "dlib", ()), ("model", "open")]
            # The loads set up each worker's allocator, despite the nanny's trim setting.
            assert list(client.run(allocator_tuned).values()) == [on_glibc()] * 2
            # Released: the warm-up tasks are gone from the scheduler.
            held = client.run_on_scheduler(
                lambda dask_scheduler: [key for key in dask_scheduler.tasks
                                        if str(key).startswith("expnet-warm-up")])
            assert held == []


def test_a_cluster_that_cannot_be_reached_is_left_to_the_runner(caplog):
    release = warm_dask_workers("tcp://127.0.0.1:9", "dlib", {}, "open", False,
                                timeout_s=1)
    release()
    assert "could not warm the Dask workers" in caplog.text
