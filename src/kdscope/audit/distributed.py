"""The audit across processes, on torch.distributed (torchrun, or any initialised process group): which rank
does which batch, and how batch outcomes reach rank 0 in image order.

Batch b of the audit images goes to rank b % world_size; in each round every rank does at most one batch and
rank 0 gathers the round's outcomes in rank order, which is batch order. Rank 0 therefore joins exactly the
outcomes one process would, in the same order, and the results are the same for any number of processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_in_rank_order(item: object) -> list[object] | None:
    """Every rank's `item`, in rank order, on rank 0 (None on the others)."""
    rank, size = world()
    if size == 1:
        return [item]
    gathered: list[object] | None = [None] * size if rank == 0 else None
    dist.gather_object(item, gathered, dst=0)
    return gathered


def from_rank_zero(item: object) -> object:
    """Rank 0's `item` on every rank."""
    if world()[1] == 1:
        return item
    holder = [item]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@contextmanager
def torchrun_group(device: str) -> Iterator[str]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), for the duration: gloo on
    the CPU, nccl on CUDA (each rank on its LOCAL_RANK's GPU). Yields the device this rank's models go to. Outside
    torchrun, or when a group already exists, nothing changes."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()
