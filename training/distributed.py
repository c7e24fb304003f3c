"""Data-parallel processes for the trainer: joining them, and the few collectives it needs.

    torchrun --nproc_per_node 2 -m training.train --train out/train --output runs/ddp ...

torchrun starts one process per rank and tells each, through ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, where it stands. :func:`start_processes`
reads those and joins the process group (gloo on CPU, NCCL on CUDA, where each process uses
``cuda:LOCAL_RANK``); without them, or with a world of one, training runs in one process and
every collective here does nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclasses.dataclass(frozen=True)
class Processes:
    """Where this process stands among the data-parallel processes.

    Attributes
    ----------
    rank, world_size, local_rank : int   this process, all of them, its index on its machine
    device : torch.device                where this process trains
    owns_group : bool                    :func:`start_processes` created the process group,
                                         so :func:`stop_processes` destroys it
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def launch_environment(environ=None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by torchrun, or None outside a launcher.

    Raises
    ------
    ValueError   when the variables are incomplete, not integers or out of range
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    missing = [name for name in LAUNCH_VARIABLES if name not in environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with "
                         "torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK")
    try:
        rank, world_size, local_rank = (int(environ[name]) for name in LAUNCH_VARIABLES)
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got RANK={rank}, "
                         f"WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}")
    return rank, world_size, local_rank


def process_device(name: str, *, local_rank: int, world_size: int) -> torch.device:
    """The device of one process: with several processes, CUDA means ``cuda:LOCAL_RANK``.

    Raises
    ------
    ValueError   for ``cuda:N`` with several processes (they would share one GPU)
    """
    device = resolve_device(name)
    if device.type != "cuda" or world_size == 1:
        return device
    if device.index is not None:
        raise ValueError(f"--device {name} under torchrun: every process would use that GPU; "
                         "give --device auto or cuda (each process uses cuda:LOCAL_RANK)")
    return torch.device("cuda", local_rank)


def start_processes(device_name: str) -> Processes:
    """Join the data-parallel processes this one was launched with, if any.

    An already initialised process group (a caller's own launcher) is used as it is;
    otherwise torchrun's variables decide, and a world of several processes is joined here
    (``init_method="env://"``: ``MASTER_ADDR`` and ``MASTER_PORT``).

    Raises
    ------
    ValueError   on incomplete launch variables or a device several processes would share
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = process_device(device_name, local_rank=local_rank, world_size=world_size)
        return Processes(rank, world_size, local_rank, device, owns_group=False)
    launch = launch_environment()
    if launch is None or launch[1] == 1:
        local_rank = 0 if launch is None else launch[2]
        return Processes(0, 1, local_rank, resolve_device(device_name))
    rank, world_size, local_rank = launch
    device = process_device(device_name, local_rank=local_rank, world_size=world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                            rank=rank, world_size=world_size)
    return Processes(rank, world_size, local_rank, device, owns_group=True)


def stop_processes(processes: Processes) -> None:
    """Leave the process group if :func:`start_processes` created it."""
    if processes.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, processes: Processes) -> nn.Module:
    """``DistributedDataParallel(model)`` with several processes, else ``model`` itself.

    DDP copies rank 0's parameters and buffers to every rank here, and averages gradients
    over ranks in every ``backward``; it also copies rank 0's buffers (batch-norm running
    statistics) before every forward.
    """
    if not processes.distributed:
        return model
    device_ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def sum_over_processes(values: Sequence[float], processes: Processes) -> list[float]:
    """Element-wise sums of ``values`` over all processes (float64; the same on every rank)."""
    if not processes.distributed:
        return [float(value) for value in values]
    totals = torch.tensor([float(value) for value in values], dtype=torch.float64,
                          device=processes.device)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return totals.cpu().tolist()


def share_buffers(model: nn.Module, processes: Processes) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), as DDP's next forward would.

    Each rank's last forward of an epoch updates its own running statistics; after this,
    every rank holds exactly the state rank 0 checkpoints and evaluates with the same model.
    """
    if not processes.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def wait_for_all(processes: Processes) -> None:
    """Block until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
    if processes.distributed:
        dist.barrier()
