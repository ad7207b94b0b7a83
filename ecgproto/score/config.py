"""Configuration of batch scoring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreConfig:
    batch_size: int = 64
    num_workers: int = 2
    chunk_size: int = 1024  # rows per written output chunk
    top_k: int = 3
    ood_flag_fraction: float = 0.01  # fraction of validation records flagged as out-of-distribution
