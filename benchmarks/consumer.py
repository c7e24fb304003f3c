"""python -m benchmarks.consumer [--images 2000] [--repeats 3]: shard reader vs JPEG files.

Samples/s of the shard consumer against a loader of individual JPEG files.

Both loaders decode the same 224x224 JPEGs with the same decoder (OpenCV) into the same
(3, 224, 224) float tensors, through a DataLoader with the same workers and batch size.
The consumer reads ``ExpressionShards`` (Parquet, row groups of 100 as the pipeline writes);
the baseline reads one file per sample (``open`` locally, one ``GetObject`` per sample on
object storage, as a folder-of-JPEGs loader does). Object storage is a moto S3 server on
127.0.0.1 (no network). Each figure is one full epoch, workers started inside the timing;
the best of ``--repeats`` epochs per loader, the two loaders alternating. Locally it also
measures CPU time per sample in one process (``DataLoader`` without workers, one torch
thread, as in a worker), which other work on a shared machine disturbs far less than rates.
The batched consumer (``ExpressionShards(batch_size=...)`` through ``DataLoader(batch_size=None)``,
no collate) is timed the same way, alongside.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from schemas import EXPRESSION_DIM, DatasetMetadata, shard_schema
from schemas import rows as columns
from schemas.layout import ROWS_PER_GROUP
from training import ExpressionShards
from training.decode import decode_image, image_to_tensor

BUCKET = "expnet-bench"


def synthetic_jpeg(rng: np.random.Generator, size: int) -> bytes:
    """A smooth colour field with grain: about 20 kB at quality 95, like the pipeline's crops."""
    low = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.float32)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    image = image + rng.normal(0.0, 4.0, size=(size, size, 1))
    ok, encoded = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def make_data(folder: Path, count: int, size: int, shards: int) -> tuple[list, np.ndarray]:
    """Write the JPEG files and the shards; returns file names and labels."""
    rng = np.random.default_rng(0)
    metadata = DatasetMetadata("bench", "0" * 64, (1.0,) * EXPRESSION_DIM, "dlib", "bench",
                               "bench")
    labels = rng.normal(size=(count, EXPRESSION_DIM)).astype(np.float32)
    (folder / "files").mkdir()
    (folder / "shards").mkdir()
    names, rows = [], []
    for index in range(count):
        data = synthetic_jpeg(rng, size)
        name = f"{index:07d}.jpg"
        (folder / "files" / name).write_bytes(data)
        names.append(name)
        rows.append({
            columns.ID: name, columns.SOURCE_URI: name,
            columns.IMAGE: {"bytes": data, "path": name}, columns.LABEL: None,
            columns.SUBJECT: None, columns.EXPRESSION: labels[index].tolist(),
            columns.IDENTITY: [0.0] * 40, columns.ROTATION: [1, 0, 0, 0, 1, 0, 0, 0, 1],
            columns.YAW: 0.0, columns.PITCH: 0.0, columns.ROLL: 0.0, columns.SCALE: 1.0,
            columns.TRANSLATION: [0.0, 0.0], columns.LANDMARKS: [0.0] * 136,
            columns.SOURCE_LANDMARKS: [0.0] * 136, columns.FACE_BOX: [0.0] * 4,
            columns.FIT_RESIDUAL: 0.0, columns.LANDMARKER: "dlib", columns.MODEL_ID: "bench"})
    for shard in range(shards):
        table = pa.Table.from_pylist(rows[shard::shards], schema=shard_schema(metadata))
        pq.write_table(table, folder / "shards" / f"part-{shard:05d}-of-{shards:05d}.parquet",
                       row_group_size=ROWS_PER_GROUP, compression="zstd")
    return names, labels


class LocalFiles(Dataset):
    """The baseline: one file read and decoded per sample."""

    def __init__(self, folder: Path, names: list, labels: np.ndarray):
        self.folder, self.names, self.labels = folder, names, labels

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        data = (self.folder / self.names[index]).read_bytes()
        return image_to_tensor(decode_image(data)), torch.from_numpy(self.labels[index])


class S3Files(LocalFiles):
    """The baseline on object storage: one GetObject per sample, a client per worker."""

    def __init__(self, endpoint: str, names: list, labels: np.ndarray):
        super().__init__(Path(), names, labels)
        self.endpoint = endpoint
        self.client = None

    def __getitem__(self, index: int):
        if self.client is None:
            import boto3

            self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        data = self.client.get_object(Bucket=BUCKET, Key=f"files/{self.names[index]}")
        image = decode_image(data["Body"].read())
        return image_to_tensor(image), torch.from_numpy(self.labels[index])


def epoch_rate(loader: DataLoader) -> float:
    """Samples per second of one full pass, worker start-up included."""
    started = time.perf_counter()
    samples = 0
    for images, _ in loader:
        samples += len(images)
    return samples / (time.perf_counter() - started)


def compare(make_shards, make_files, make_batched, *, repeats: int, workers: int,
            batch_size: int) -> dict:
    """Best and median samples/s of the three loaders, measured in turn."""
    rates = {"shards": [], "files": [], "batched": []}
    shards, batched = make_shards(), make_batched()
    for repeat in range(repeats):
        shards.set_epoch(repeat)
        batched.set_epoch(repeat)
        rates["shards"].append(epoch_rate(DataLoader(shards, batch_size=batch_size,
                                                     num_workers=workers)))
        rates["files"].append(epoch_rate(DataLoader(make_files(), batch_size=batch_size,
                                                    num_workers=workers, shuffle=True)))
        rates["batched"].append(epoch_rate(DataLoader(batched, batch_size=None,
                                                      num_workers=workers)))
    return {name: (max(values), statistics.median(values)) for name, values in rates.items()}


def cpu_per_sample(loader: DataLoader) -> float:
    """Microseconds of this process's CPU time per sample over one full pass."""
    started = time.process_time()
    samples = 0
    for images, _ in loader:
        samples += len(images)
    return 1e6 * (time.process_time() - started) / samples


def compare_cpu(make_shards, make_files, make_batched, *, repeats: int,
                batch_size: int) -> dict:
    """Lowest and median CPU microseconds per sample of the three loaders, in turn."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each DataLoader worker runs with
    try:
        times = {"shards": [], "files": [], "batched": []}
        shards, batched = make_shards(), make_batched()
        for repeat in range(repeats):
            shards.set_epoch(repeat)
            batched.set_epoch(repeat)
            times["shards"].append(cpu_per_sample(DataLoader(shards, batch_size=batch_size)))
            times["files"].append(cpu_per_sample(DataLoader(make_files(), batch_size=batch_size,
                                                            shuffle=True)))
            times["batched"].append(cpu_per_sample(DataLoader(batched, batch_size=None)))
    finally:
        torch.set_num_threads(threads)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def upload(folder: Path, endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for path in sorted((folder / "files").iterdir()) + sorted((folder / "shards").iterdir()):
        client.put_object(Bucket=BUCKET, Key=f"{path.parent.name}/{path.name}",
                          Body=path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args(argv)
    # Dummy credentials for the local moto server; nothing leaves 127.0.0.1.
    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(key, value)
    options = {"repeats": args.repeats, "workers": args.workers, "batch_size": args.batch_size}
    results = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        names, labels = make_data(folder, args.images, args.size, args.shards)
        local = (lambda: ExpressionShards(folder / "shards", seed=0),
                 lambda: LocalFiles(folder / "files", names, labels),
                 lambda: ExpressionShards(folder / "shards", seed=0,
                                          batch_size=args.batch_size))
        results["local disk"] = compare(*local, **options)
        cpu = compare_cpu(*local, repeats=args.repeats, batch_size=args.batch_size)
        if not args.skip_s3:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per GET
            port = free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            try:
                endpoint = f"http://127.0.0.1:{port}"
                upload(folder, endpoint)
                s3 = pafs.S3FileSystem(access_key="bench", secret_key="bench",
                                       endpoint_override=f"127.0.0.1:{port}", scheme="http",
                                       region="us-east-1")
                results["object storage (moto S3)"] = compare(
                    lambda: ExpressionShards(f"s3://{BUCKET}/shards", seed=0, filesystem=s3),
                    lambda: S3Files(endpoint, names, labels),
                    lambda: ExpressionShards(f"s3://{BUCKET}/shards", seed=0, filesystem=s3,
                                             batch_size=args.batch_size), **options)
            finally:
                server.stop()
    print(f"{args.images} synthetic JPEGs {args.size}x{args.size} (q95, about 20 kB), "
          f"{args.workers} workers, batch {args.batch_size}, best (median) of {args.repeats} "
          f"epochs, torch {torch.__version__}, {os.cpu_count()} CPUs")
    print("| storage | consumer | consumer samples/s | files samples/s | ratio (best) "
          "| ratio (median) |")
    print("|---|---|---|---|---|---|")
    for storage, rates in results.items():
        files_best, files_median = rates["files"]
        for name in ("shards", "batched"):
            best, median = rates[name]
            print(f"| {storage} | {name} | {best:.0f} ({median:.0f}) | {files_best:.0f} "
                  f"({files_median:.0f}) | {best / files_best:.2f} | "
                  f"{median / files_median:.2f} |")
    print(f"\nLocal disk, CPU time per sample in one process (lowest (median) of {args.repeats})")
    print("| consumer | consumer us/sample | files us/sample | consumer / files (lowest) "
          "| (median) |")
    print("|---|---|---|---|---|")
    files_low, files_median = cpu["files"]
    for name in ("shards", "batched"):
        low, median = cpu[name]
        print(f"| {name} | {low:.0f} ({median:.0f}) | {files_low:.0f} ({files_median:.0f}) | "
              f"{low / files_low:.2f} | {median / files_median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
