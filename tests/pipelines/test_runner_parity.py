"""Same dataset, byte for byte, from every engine: in memory, --workers 2, Dask partitions."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pipelines import writing
from tests.pipelines.conftest import run_generate
from tests.pipelines.test_reliability import dataset_bytes
from tests.pipelines.test_scale import run_on_local_dask

UNIQUE_FACES = 128
PARTITION_SIZE = 16  # 128 / 16 = 8 Dask partitions in every step


def _make_collection():
    # Imported when used: the benchmark pins BLAS threads to 1 for the processes after it.
    from benchmarks.generate_speed import make_collection

    return make_collection


@pytest.fixture(scope="module")
def unique_faces(tmp_path_factory) -> Path:
    """128 distinct 120 x 120 face crops of the bundled photos (corner-marked)."""
    folder = tmp_path_factory.mktemp("unique") / "faces"
    _make_collection()(folder, UNIQUE_FACES, 120)
    return folder


@pytest.fixture(scope="module")
def in_memory_run(unique_faces, tmp_path_factory):
    output = tmp_path_factory.mktemp("in-memory")
    return output, run_generate([unique_faces], output, "--workers", "1")


def _counts(stats: dict) -> tuple:
    return tuple(stats[key] for key in ("inputs", "written", "failed", "duplicates"))


def test_in_memory_run_accounts_for_every_face(in_memory_run):
    output, stats = in_memory_run
    assert stats["invariant"]["holds"]
    assert _counts(stats) == (UNIQUE_FACES, UNIQUE_FACES, 0, 0)
    manifest = json.loads((output / "manifest.json").read_text())
    assert [shard["name"] for shard in manifest["shards"]] == ["part-00000-of-00001.parquet"]


def test_two_workers_write_the_in_memory_dataset(in_memory_run, unique_faces, tmp_path):
    reference, reference_stats = in_memory_run
    stats = run_generate([unique_faces], tmp_path, "--workers", "2")
    assert _counts(stats) == _counts(reference_stats)
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def test_dask_with_small_partitions_writes_the_in_memory_dataset(in_memory_run, unique_faces,
                                                                 tmp_path):
    reference, reference_stats = in_memory_run
    stats = run_on_local_dask([unique_faces], tmp_path,
                              "--dask_partition_size", str(PARTITION_SIZE))
    assert stats["invariant"]["holds"]
    assert _counts(stats) == _counts(reference_stats)
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def _run_and_keep_the_outcome(outcome: dict, *args) -> None:
    try:
        outcome["stats"] = run_generate(*args)
    except Exception as error:  # noqa: BLE001 -- the test wants whatever the run raised
        outcome["error"] = error


def test_a_dask_worker_killed_mid_run_then_the_same_command_gives_the_dataset(
        in_memory_run, unique_faces, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    reference, reference_stats = in_memory_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster.scheduler_address) as client:
            victim = sorted(client.run(os.getpid).values())[0]
        flags = ("--runner", "apache_beam.runners.dask.dask_runner.DaskRunner",
                 "--dask_client_address", cluster.scheduler_address,
                 "--dask_partition_size", str(PARTITION_SIZE))
        outcome: dict = {}
        first = threading.Thread(target=_run_and_keep_the_outcome,
                                 args=(outcome, [unique_faces], tmp_path, *flags))
        first.start()
        crops = tmp_path / writing.CROPS_DIR
        deadline = time.monotonic() + 300
        # Mid-run: the workers have started parking crops, and the run is not over.
        while not (crops.is_dir() and any(crops.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.is_alive(), "the run ended before a worker could be killed"
        os.kill(victim, signal.SIGKILL)
        first.join(timeout=600)
        assert not first.is_alive()
        # Completed (every input accounted for) or failed loudly (an exception): never a
        # dataset that claims to be complete and is not.
        if "error" not in outcome:
            assert outcome["stats"]["invariant"]["holds"]
        else:
            assert not (tmp_path / "manifest.json").exists()
        stats = run_generate([unique_faces], tmp_path, *flags)
        distributed.default_client().close()
    assert _counts(stats) == _counts(reference_stats)
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)
