"""The same pipeline on several Beam engines and on S3; what --setup_file ships."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.pipelines.conftest import run_generate
from tests.pipelines.test_reliability import dataset_bytes

REPO = Path(__file__).resolve().parents[2]


def test_multiprocess_direct_runner_gives_identical_shards(folder_run, photo_folder, tmp_path):
    reference, _ = folder_run
    stats = run_generate([photo_folder], tmp_path, "--label-from-parent",
                         "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert stats["invariant"]["holds"]
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def run_on_local_dask(inputs, output, *extra) -> dict:
    """``run_generate`` with Beam's DaskRunner on a 2-process LocalCluster on 127.0.0.1."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        stats = run_generate(inputs, output, *extra,
                             "--runner", "apache_beam.runners.dask.dask_runner.DaskRunner",
                             "--dask_client_address", cluster.scheduler_address)
        # Beam's runner leaves its client open; close it before the cluster goes away.
        distributed.default_client().close()
    return stats


def test_dask_runner_on_a_local_cluster_gives_identical_shards(folder_run, photo_folder,
                                                               tmp_path):
    reference, _ = folder_run
    stats = run_on_local_dask([photo_folder], tmp_path, "--label-from-parent")
    assert stats["invariant"]["holds"]
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def _upload(folder: Path, client, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "faces", f"{prefix}/{path.relative_to(folder)}")


def _s3_flags(url: str) -> list:
    return ["--s3_endpoint_url", url, "--s3_access_key_id", "test",
            "--s3_secret_access_key", "test", "--s3_region_name", "us-east-1"]


def _check_s3_dataset(client, prefix: str, stats: dict, reference: Path) -> None:
    assert (stats["inputs"], stats["written"], stats["failed"], stats["duplicates"]) == (
        8, 3, 4, 1)
    for name, data in dataset_bytes(reference).items():
        if name.startswith("part-"):
            # Rows carry their source URI, so compare the row content, not the bytes.
            remote = client.get_object(Bucket="faces", Key=f"{prefix}/{name}")["Body"].read()
            assert _ids_and_labels(remote) == _ids_and_labels(data)
    keys = {item["Key"] for item in client.list_objects_v2(Bucket="faces",
                                                           Prefix=f"{prefix}/")["Contents"]}
    assert f"{prefix}/manifest.json" in keys and not any("_temporary" in key for key in keys)


def test_s3_input_and_output(folder_run, photo_folder, s3_server):
    reference, _ = folder_run
    url, client = s3_server
    _upload(photo_folder, client, "in")
    stats = run_generate(["s3://faces/in/"], "s3://faces/out", "--label-from-parent",
                         *_s3_flags(url))
    _check_s3_dataset(client, "out", stats, reference)


def test_two_dask_workers_with_the_output_on_s3(folder_run, photo_folder, s3_server):
    """Nothing shared but the bucket: crops and rows wait under the output, on S3."""
    reference, _ = folder_run
    url, client = s3_server
    _upload(photo_folder, client, "in")
    stats = run_on_local_dask(["s3://faces/in/"], "s3://faces/dask-out", "--label-from-parent",
                              *_s3_flags(url))
    _check_s3_dataset(client, "dask-out", stats, reference)


def _ids_and_labels(parquet: bytes):
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(parquet), columns=["id", "expression", "label"])
    return table.to_pylist()


def test_sdist_for_setup_file_ships_every_package_and_the_model(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    # setuptools names it expnet_data-* (PEP 625) or, before 69.3, expnet-data-*.
    [sdist] = tmp_path.glob("expnet[-_]data-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for package in ("commands", "fitting", "fitting/models", "fitting/models/build",
                    "fitting/landmarks", "schemas", "pipelines", "inspection", "synth",
                    "training"):
        assert f"{package}/__init__.py" in names, package
    assert "fitting/models/data/open_model.npz" in names
    assert "fitting/models/data/PROVENANCE.md" in names
    assert "setup.py" in names and "pipelines/generate.py" in names
