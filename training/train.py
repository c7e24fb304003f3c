"""`expnet train`: the reference ExpNet trainer on label shards.

    expnet train --train out/train --val out/val --output runs/expnet --epochs 30 \\
        --backbone resnet101 --batch-size 64 --lr 0.01 --optimizer sgd --workers 4

An L2 (MSE) loss on the 29 sigma-unit coefficients, as in Chang et al. (FG 2018). After each
epoch it writes ``OUTPUT/checkpoints/epoch-NNNN.pt`` and ``OUTPUT/last.pt`` (weights,
optimiser, epoch, step, RNG states, metric history) and rewrites ``OUTPUT/metrics.jsonl``
(one JSON line per epoch: train and validation RMSE in sigma units). ``--resume`` continues
from ``OUTPUT/last.pt`` (or a named checkpoint) and, with the same flags, gives the weights
an uninterrupted run would have: data order depends only on ``--seed`` and the epoch.

Data-parallel on several processes (one per GPU, or CPU processes with gloo)::

    torchrun --nproc_per_node 4 -m training.train --train out/train --output runs/ddp ...

Each process reads its own equal share of every epoch's rows (``drop_last``) in batches of
``--batch-size`` (per process), gradients are averaged over processes, metrics are summed over
them, and rank 0 alone prints and writes files (:mod:`training.distributed`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from schemas import EXPRESSION_DIM, SchemaError
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from training.dataset import ExpressionShards
from training.decode import ResizeImage
from training.distributed import (
    Processes,
    share_buffers,
    start_processes,
    stop_processes,
    sum_over_processes,
    wait_for_all,
    wrap_model,
)
from training.model import BACKBONES, ExpNet

OPTIMIZERS = ("sgd", "adamw")
LAST = "last.pt"
METRICS = "metrics.jsonl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expnet train", description=__doc__.split("\n")[0])
    parser.add_argument("--train", nargs="+", required=True, help="training shards or folders")
    parser.add_argument("--val", nargs="+", default=None, help="validation shards or folders")
    parser.add_argument("--output", required=True, help="folder for checkpoints and metrics")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="samples per step and process (under torchrun: per rank)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd (momentum 0.9) or adamw")
    parser.add_argument("--backbone", choices=BACKBONES, default="small",
                        help="small: built-in residual net; resnet101: needs torchvision")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--image-size", type=int, default=224, help="network input side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help=f"continue from OUTPUT/{LAST}, or from the checkpoint named")
    parser.add_argument("--quiet", action="store_true", help="print nothing per epoch")
    return parser


def validate_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the flags, before anything is read."""
    problems = []
    if args.epochs < 1:
        problems.append(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        problems.append(f"--lr must be a positive number, got {args.lr}")
    if args.weight_decay < 0:
        problems.append(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.workers < 0:
        problems.append(f"--workers must be >= 0, got {args.workers}")
    if not 16 <= args.image_size <= 1024:
        problems.append(f"--image-size must be in 16..1024, got {args.image_size}")
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        problems.append(f"--device must be auto, cpu or cuda[:N], got {args.device!r}")
    return problems


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(name: str, parameters, *, lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def rmse(squared_error: float, samples: int) -> float:
    """Root mean square over ``samples`` labels of ``EXPRESSION_DIM`` coefficients each."""
    if not samples:
        return float("nan")
    return math.sqrt(squared_error / (samples * EXPRESSION_DIM))


def train_epoch(model: nn.Module, loader, optimizer, device) -> tuple[int, float, int]:
    """One pass over ``loader``: optimiser steps, summed squared error and samples (local)."""
    model.train()
    squared_error, samples, steps = 0.0, 0, 0
    for images, expressions in loader:
        images = images.to(device, non_blocking=True)
        expressions = expressions.to(device, non_blocking=True)
        loss = nn.functional.mse_loss(model(images), expressions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        squared_error += loss.item() * expressions.numel()
        samples += len(expressions)
        steps += 1
    return steps, squared_error, samples


@torch.no_grad()
def evaluate_squared_error(model: nn.Module, loader, device) -> tuple[float, int]:
    """Summed squared error over all coefficients of all samples (sigma), and the count."""
    model.eval()
    squared_error, samples = 0.0, 0
    for images, expressions in loader:
        predictions = model(images.to(device))
        squared_error += float(((predictions.cpu() - expressions) ** 2).sum())
        samples += len(expressions)
    return squared_error, samples


def label_model(dataset: ExpressionShards) -> dict:
    metadata = dataset.metadata
    return {"model_id": metadata.model_id, "model_hash": metadata.model_hash,
            "expression_std": list(dataset.expression_std)}


def check_same_model(expected: dict, found: dict, what: str) -> None:
    if expected["model_hash"] != found["model_hash"]:
        raise SchemaError(f"{what} is labelled with model {found['model_id']} "
                          f"{found['model_hash'][:12]}, training uses {expected['model_id']} "
                          f"{expected['model_hash'][:12]}")


def write_metrics(path: Path, history: list) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(json.dumps(record, sort_keys=True) + "\n"
                                 for record in history))
    temporary.replace(path)


def train(args: argparse.Namespace) -> list[dict]:
    """Run the training the flags describe; returns the metric history (one dict an epoch).

    Under torchrun every process runs this; each returns the same history.
    """
    processes = start_processes(args.device)
    try:
        return train_processes(args, processes)
    finally:
        stop_processes(processes)


def epoch_record(processes: Processes, train_sums: tuple, val_sums: tuple | None) -> dict:
    """The metrics of one epoch, summed over processes: the same dict on every rank."""
    local = list(train_sums) + (list(val_sums) if val_sums is not None else [])
    totals = sum_over_processes(local, processes)
    record = {"train_rmse": rmse(totals[0], int(totals[1])), "train_samples": int(totals[1])}
    if val_sums is not None:
        record["val_rmse"] = rmse(totals[2], int(totals[3]))
        record["val_samples"] = int(totals[3])
    return record


def train_processes(args: argparse.Namespace, processes: Processes) -> list[dict]:
    """The training loop of one process among ``processes`` (possibly the only one)."""
    output = Path(args.output)
    device = processes.device
    # The same seed on every rank: equal RNG streams, so rank 0's saved states fit all ranks.
    seed_everything(args.seed)
    resize = ResizeImage(args.image_size)
    ranks = {"rank": processes.rank, "world_size": processes.world_size}
    # drop_last: equal rows, so equal steps, on every rank (a no-op in one process).
    train_data = ExpressionShards(args.train, shuffle=True, seed=args.seed, transform=resize,
                                  drop_last=True, **ranks)
    labels = label_model(train_data)
    val_loader = None
    if args.val:
        # Every validation row once over the ranks; evaluation needs no equal lengths.
        # Batched reading (no collate): the same rows, each worker's last batch short.
        val_data = ExpressionShards(args.val, shuffle=False, transform=resize,
                                    batch_size=args.batch_size, **ranks)
        check_same_model(labels, label_model(val_data), "--val")
        val_loader = DataLoader(val_data, batch_size=None, num_workers=args.workers)
    network = ExpNet(backbone=args.backbone).to(device)
    optimizer = make_optimizer(args.optimizer, network.parameters(), lr=args.lr,
                               weight_decay=args.weight_decay)
    config = {"backbone": args.backbone, "image_size": args.image_size,
              "expression_dim": EXPRESSION_DIM, "optimizer": args.optimizer, "lr": args.lr,
              "weight_decay": args.weight_decay, "batch_size": args.batch_size,
              "seed": args.seed, "world_size": processes.world_size}
    epoch, step, history = 0, 0, []
    if args.resume:
        path = output / LAST if args.resume == "auto" else Path(args.resume)
        state = load_checkpoint(path, map_location=device)
        check_same_model(labels, state["label_model"], f"checkpoint {path}")
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step, history = state["epoch"], state["step"], list(state["history"])
        restore_rng_states(state["rng"])
        saved_world = state["config"].get("world_size", 1)
        if saved_world != processes.world_size and processes.is_main:
            print(f"expnet train: note: resuming a {saved_world}-process run on "
                  f"{processes.world_size}: each rank's rows differ from the original run's",
                  file=sys.stderr)
    model = wrap_model(network, processes)
    if processes.is_main:
        output.mkdir(parents=True, exist_ok=True)
    while epoch < args.epochs:
        started = time.perf_counter()
        train_data.set_epoch(epoch)
        loader = DataLoader(train_data, batch_size=args.batch_size, num_workers=args.workers,
                            pin_memory=device.type == "cuda")
        steps, *train_sums = train_epoch(model, loader, optimizer, device)
        share_buffers(network, processes)
        val_sums = None
        if val_loader is not None:
            # The plain module: DDP's forward would wait on ranks with fewer batches.
            val_sums = evaluate_squared_error(network, val_loader, device)
        record = epoch_record(processes, train_sums, val_sums)
        step += steps
        epoch += 1
        record.update(epoch=epoch, step=step, lr=optimizer.param_groups[0]["lr"],
                      seconds=round(time.perf_counter() - started, 3))
        history.append(record)
        if processes.is_main:
            state = {"epoch": epoch, "step": step, "model": network.state_dict(),
                     "optimizer": optimizer.state_dict(), "config": config,
                     "label_model": labels, "history": history, "rng": rng_states()}
            save_checkpoint(output / "checkpoints" / f"epoch-{epoch:04d}.pt", state)
            save_checkpoint(output / LAST, state)
            write_metrics(output / METRICS, history)
            if not args.quiet:
                print(json.dumps(record, sort_keys=True), flush=True)
        wait_for_all(processes)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    problems = validate_args(args)
    if problems:
        for problem in problems:
            print(f"expnet train: error: {problem}", file=sys.stderr)
        return 2
    try:
        train(args)
    except (SchemaError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"expnet train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
