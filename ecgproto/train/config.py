"""Configuration of staged training (per branch) and fusion training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class StageConfig:
    """One training stage of a branch."""

    name: Literal["warmup", "joint", "projection", "last_layer", "fusion"] = "joint"
    epochs: int = 10
    lr: float = 1e-4


def _default_stages() -> tuple[StageConfig, ...]:
    return (
        StageConfig("joint", 200, 1e-4),
        StageConfig("projection", 0, 0.0),
        StageConfig("last_layer", 20, 1e-4),
    )


@dataclass(frozen=True)
class TrainConfig:
    stages: tuple[StageConfig, ...] = field(default_factory=_default_stages)
    fusion_epochs: int = 200
    fusion_lr: float = 1e-4
    batch_size: int = 32
    weight_decay: float = 1.7e-4
    patience: int = 10
    threads: int = 2
    unique_projection: bool = False
    scheduler: Literal["cosine", "none"] = "cosine"
