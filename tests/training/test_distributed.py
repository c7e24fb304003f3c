"""`expnet train` under DDP: two gloo processes on 127.0.0.1, as torchrun would start them."""

from __future__ import annotations

import json
import os
import socket
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp

from schemas import rows as columns
from training import train as train_command
from training.checkpoint import load_checkpoint, save_checkpoint
from training.distributed import launch_environment, process_device
from training.model import ExpNet

WORLD_SIZE = 2
EPOCHS = 3
DEADLINE_SECONDS = 120  # a hung collective fails the test instead of blocking the suite


def free_ports(count: int) -> list[int]:
    """Ports free now on 127.0.0.1 (held open together, so they differ)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class _Recorder:
    """What one rank trained on and saved (JSON lines in ``log``), and the models it built."""

    log = None
    models: list = []

    @classmethod
    def write(cls, **entry) -> None:
        with open(cls.log, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


class RecordingLoader(train_command.DataLoader):
    """The trainer's DataLoader, logging the labels of every training batch it yields."""

    def __iter__(self):
        for batch in super().__iter__():
            if self.dataset.shuffle:  # the training data; validation reads in file order
                _Recorder.write(kind="batch", epoch=self.dataset.epoch,
                                labels=[row.numpy().tobytes().hex() for row in batch[1]])
            yield batch


class CapturedExpNet(ExpNet):
    """ExpNet that keeps a reference to itself, so the rank can save its final weights."""

    def __init__(self, **options):
        super().__init__(**options)
        _Recorder.models.append(self)


def recording_save(path, state) -> None:
    _Recorder.write(kind="save", path=str(path), rank=int(os.environ["RANK"]))
    save_checkpoint(path, state)


def run_rank(rank: int, ports: list, runs: list, folder: str) -> None:
    """One process: torchrun's variables, then each ``(name, flags)`` run in turn."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)  # as torchrun does for several processes on one machine
    train_command.DataLoader = RecordingLoader
    train_command.ExpNet = CapturedExpNet
    train_command.save_checkpoint = recording_save
    for port, (name, flags) in zip(ports, runs, strict=True):
        os.environ["MASTER_PORT"] = str(port)
        _Recorder.log = os.path.join(folder, f"{name}-rank{rank}.jsonl")
        if train_command.main(flags) != 0:
            raise RuntimeError(f"rank {rank}: run {name} failed")
        weights = _Recorder.models[-1].state_dict()
        torch.save(weights, os.path.join(folder, f"{name}-rank{rank}.pt"))


def launch(runs: list, folder) -> None:
    context = mp.start_processes(run_rank, args=(free_ports(len(runs)), runs, str(folder)),
                                 nprocs=WORLD_SIZE, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"DDP ranks still running after {DEADLINE_SECONDS} s")


# No DataLoader workers inside the ranks: forking a process that already runs gloo's threads
# can deadlock under load (seen once in a loaded full-suite run). The split of rows across
# workers and ranks together is tested in test_dataset.py.
def flags(shards, output, *extra) -> list[str]:
    return ["--train", str(shards), "--val", str(shards), "--output", str(output),
            "--batch-size", "4", "--image-size", "32", "--workers", "0", "--optimizer",
            "adamw", "--lr", "0.003", "--seed", "2", "--quiet", *extra]


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_runs(latent_shards, tmp_path_factory):
    """Three runs on two ranks: straight for EPOCHS, then 1 epoch and a resume to EPOCHS."""
    folder = tmp_path_factory.mktemp("ddp")
    runs = [("straight", flags(latent_shards, folder / "straight", "--epochs", str(EPOCHS))),
            ("first", flags(latent_shards, folder / "resumed", "--epochs", "1")),
            ("resumed", flags(latent_shards, folder / "resumed", "--epochs", str(EPOCHS),
                              "--resume"))]
    launch(runs, folder)
    return folder


def labels_to_ids(folder) -> dict:
    """Label bytes (float32) -> row id; the synthetic labels are distinct per row."""
    mapping = {}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path, columns=[columns.ID, columns.EXPRESSION])
        for row_id, label in zip(table.column(0).to_pylist(), table.column(1).to_pylist(),
                                 strict=True):
            mapping[np.asarray(label, dtype=np.float32).tobytes().hex()] = row_id
    return mapping


def test_ranks_see_disjoint_halves_of_every_epoch(ddp_runs, latent_shards):
    ids_of = labels_to_ids(latent_shards)
    assert len(ids_of) == 32
    per_rank = [read_log(ddp_runs / f"straight-rank{rank}.jsonl") for rank in range(WORLD_SIZE)]
    for epoch in range(EPOCHS):
        seen = [[ids_of[label] for entry in log if entry["kind"] == "batch"
                 and entry["epoch"] == epoch for label in entry["labels"]] for log in per_rank]
        # 32 rows over 2 ranks: 16 each, in the same number of batches.
        assert [len(ids) for ids in seen] == [16, 16]
        assert not set(seen[0]) & set(seen[1])
        assert set(seen[0]) | set(seen[1]) == set(ids_of.values())
    batches = [sum(entry["kind"] == "batch" for entry in log) for log in per_rank]
    assert batches[0] == batches[1] == EPOCHS * 4


def test_final_weights_are_identical_on_both_ranks(ddp_runs):
    weights = [torch.load(ddp_runs / f"straight-rank{rank}.pt") for rank in range(WORLD_SIZE)]
    checkpoint = load_checkpoint(ddp_runs / "straight" / "last.pt")
    for name, tensor in weights[0].items():
        # Averaged gradients and rank 0's buffers: the same bits on every rank.
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=0)
        torch.testing.assert_close(checkpoint["model"][name], tensor, rtol=0, atol=0)
    assert checkpoint["config"]["world_size"] == WORLD_SIZE


def test_metrics_are_summed_over_ranks_and_loss_falls(ddp_runs):
    lines = (ddp_runs / "straight" / "metrics.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert [record["epoch"] for record in history] == list(range(1, EPOCHS + 1))
    # Both ranks' samples are counted: all 32 training and all 32 validation rows.
    assert {record["train_samples"] for record in history} == {32}
    assert {record["val_samples"] for record in history} == {32}
    assert [record["step"] for record in history] == [4, 8, 12]
    # Twelve Adam steps on a pixel-linear target: the error must fall, not just change.
    assert history[-1]["train_rmse"] < 0.8 * history[0]["train_rmse"]
    assert history[-1]["val_rmse"] < history[0]["val_rmse"]


def test_only_rank_zero_writes(ddp_runs):
    saves = [[entry for entry in read_log(ddp_runs / f"straight-rank{rank}.jsonl")
              if entry["kind"] == "save"] for rank in range(WORLD_SIZE)]
    assert saves[1] == []
    # Two files an epoch (epoch-NNNN.pt and last.pt), all by rank 0.
    assert len(saves[0]) == 2 * EPOCHS
    written = sorted(path.name for path in (ddp_runs / "straight" / "checkpoints").iterdir())
    assert written == [f"epoch-{epoch:04d}.pt" for epoch in range(1, EPOCHS + 1)]


def test_resume_under_ddp_equals_uninterrupted_run(ddp_runs):
    straight = load_checkpoint(ddp_runs / "straight" / "last.pt")
    resumed = load_checkpoint(ddp_runs / "resumed" / "last.pt")
    assert (resumed["epoch"], resumed["step"]) == (EPOCHS, 4 * EPOCHS)
    for name, tensor in straight["model"].items():
        # Same ranks, threads and data order; sums of two gradients are order-free.
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0)
    drop = "seconds"
    assert ([{k: v for k, v in r.items() if k != drop} for r in resumed["history"]]
            == [{k: v for k, v in r.items() if k != drop} for r in straight["history"]])
    rank1 = torch.load(ddp_runs / "resumed-rank1.pt")
    for name, tensor in resumed["model"].items():
        torch.testing.assert_close(rank1[name], tensor, rtol=0, atol=0)


def test_launch_variables_are_checked():
    assert launch_environment({}) is None
    assert launch_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 1)
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        launch_environment({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK=2"):
        launch_environment({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="integers"):
        launch_environment({"RANK": "zero", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    # Several processes on one GPU would be silently wrong: refused.
    with pytest.raises(ValueError, match="cuda:1"):
        process_device("cuda:1", local_rank=0, world_size=2)
    assert process_device("cuda", local_rank=3, world_size=2) == torch.device("cuda", 3)
    assert process_device("cpu", local_rank=3, world_size=2) == torch.device("cpu")
