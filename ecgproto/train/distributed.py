"""torch.distributed helpers: start-up from torchrun's environment, gathering predictions.

Launched with ``torchrun --nproc-per-node N -m ecgproto.cli train ...`` the backend follows the
device (``--device`` / config ``device``): NCCL when it resolves to CUDA, each process on GPU
``LOCAL_RANK``; gloo on the CPU. Without torchrun everything is single-process and these helpers
are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ecgproto.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size of this process; ``enabled`` when it belongs to a process group
    (branch stages then run in DistributedDataParallel, even for a world of one)."""

    rank: int = 0
    world_size: int = 1
    enabled: bool = False
    local_rank: int = 0  # torchrun's LOCAL_RANK: the GPU of this process on its node

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (WORLD_SIZE > 1), else no-op.

    The backend follows ``device``: NCCL when it resolves to CUDA (this process then uses GPU
    ``LOCAL_RANK``, also for the collectives), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank=local)
    if not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), True, local)


def process_device(device: str, info: DistInfo) -> torch.device:
    """The device of this process: ``device`` resolved, ``auto``/``cuda`` on GPU ``LOCAL_RANK`` under torchrun."""
    return resolve_device(device, local_rank=info.local_rank if info.enabled else None)


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's parameters and buffers to every rank, in place (after the steps each rank runs on its
    own, projection and the last-layer re-fit, so the ranks stay identical on a GPU too)."""
    if not info.enabled:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group if this process joined one."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(rows: np.ndarray, info: DistInfo) -> np.ndarray:
    """The rows this rank evaluates (contiguous block; every rank's blocks together = ``rows``)."""
    if not info.enabled:
        return rows
    return np.array_split(rows, info.world_size)[info.rank]


def gather_rows(local: np.ndarray, info: DistInfo) -> np.ndarray:
    """Concatenate every rank's ``shard`` results back in rank order (the original row order)."""
    if not info.enabled:
        return local
    parts: list[np.ndarray | None] = [None] * info.world_size
    dist.all_gather_object(parts, local)
    return np.concatenate(parts)


def barrier(info: DistInfo) -> None:
    """Synchronise ranks (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()
