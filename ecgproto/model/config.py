"""Configuration of the three prototype branches, the fusion head and the losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class BranchConfig:
    """One prototype branch: backbone → add-on → prototypes → last layer."""

    group: Literal["rhythm", "morphology", "global"] = "rhythm"
    kind: Literal["1d", "2d"] = "1d"
    backbone: str = "resnet1d18"
    base_width: int = 64  # channels of the first stage (reference: 64 → latent 512)
    prototypes_per_class: int = 5
    proto_time_len: int = 0  # latent time steps per prototype; 0 = whole latent axis (global)
    pooling: Literal["max", "mean"] = "max"
    lead_aware: bool = False
    add_on_activation: Literal["sigmoid", "relu", "none"] = "sigmoid"
    dropout: float = 0.0


@dataclass(frozen=True)
class FusionConfig:
    """Fusion of the concatenated branch similarities into the 71 logits."""

    head: Literal["masked_nonneg", "linear"] = "masked_nonneg"
    normalize: bool = True  # per-branch standardisation of similarities


@dataclass(frozen=True)
class LossConfig:
    """Weights of each loss term (0 switches a term off)."""

    pos_weight_cap: float = 100.0
    clustering: float = 0.004
    separation: float = 0.0004
    diversity: float = 250.0
    contrastive: float = 300.0
    l1_last_layer: float = 1e-4
    l1_fusion: float = 1e-4


def _default_branches() -> dict[str, BranchConfig]:
    return {
        "rhythm": BranchConfig("rhythm", "1d", "resnet1d18", 64, 5, 0),
        "morphology": BranchConfig("morphology", "2d", "resnet18_2d", 64, 18, 3, dropout=0.35),
        "global": BranchConfig("global", "2d", "resnet18_2d", 64, 7, 0, dropout=0.35),
    }


@dataclass(frozen=True)
class ModelConfig:
    branches: dict[str, BranchConfig] = field(default_factory=_default_branches)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    loss: LossConfig = field(default_factory=LossConfig)
