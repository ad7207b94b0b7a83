"""Tiny model configurations shared by the model tests."""

from __future__ import annotations

from ecgproto.config import load_config
from ecgproto.model.config import ModelConfig

N_SAMPLES = 1000
FS = 100


def tiny_config(*extra: str, width: int = 4) -> ModelConfig:
    """Reference layout at ``base_width`` ``width`` with few prototypes (fast on one CPU thread)."""
    overrides = [f"model.branches.{g}.base_width={width}" for g in ("rhythm", "morphology", "global")]
    overrides += [
        "model.branches.rhythm.prototypes_per_class=2",
        "model.branches.morphology.prototypes_per_class=2",
        "model.branches.global.prototypes_per_class=3",
    ]
    return load_config(None, overrides + list(extra)).model
