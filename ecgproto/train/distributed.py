"""torch.distributed helpers: start-up from torchrun's environment, gathering predictions.

Launched with ``torchrun --nproc-per-node N -m ecgproto.cli train ...`` the ranks use the
gloo backend on CPU (NCCL when CUDA is available). Without torchrun everything is
single-process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size of this process; ``enabled`` when it belongs to a process group
    (branch stages then run in DistributedDataParallel, even for a world of one)."""

    rank: int = 0
    world_size: int = 1
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group described by torchrun's environment (WORLD_SIZE > 1), else no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), True)


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
