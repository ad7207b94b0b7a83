"""The black-box twin: the same branch backbones with plain linear heads, fused linearly.

It exists to measure the cost of interpretability. Each branch is the prototype branch's
backbone and add-on layers, globally average-pooled, followed by a linear head over its own
group's labels (what the warm-up stage of a prototype branch trains). The fusion head is a
dense linear layer over the concatenated pooled latents of the three branches (the twin of the
prototype model's fusion over concatenated similarities). It has no prototypes, so scores of a
twin carry no prototype or OOD columns and it cannot be explained case by case.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ecgproto.data.labels import group_labels
from ecgproto.model.backbones import Backbone
from ecgproto.model.branch import AddOn, BranchOutput
from ecgproto.model.config import BranchConfig, ModelConfig
from ecgproto.model.fusion import FusionHead
from ecgproto.model.network import BranchNetwork, ModelOutput, ProtoECGNet, seeded_branches


class LinearBranch(nn.Module):
    """Backbone → add-on → mean over every latent axis → Linear(D, C_g) (with bias)."""

    def __init__(self, group: str, cfg: BranchConfig, class_codes: tuple[str, ...]) -> None:
        super().__init__()
        cfg = cfg.resolved(group)
        self.group = group
        self.cfg = cfg
        self.class_codes = tuple(class_codes)
        self.backbone = Backbone(cfg.backbone, cfg.base_width, cfg.lead_aware, cfg.dropout, cfg.padding)
        self.n_features = cfg.proto_dim or self.backbone.out_channels
        self.add_on = AddOn(self.backbone.out_channels, self.n_features, cfg.add_on_activation)
        self.last_layer = nn.Linear(self.n_features, len(self.class_codes))

    @property
    def n_prototypes(self) -> int:
        return 0

    @property
    def n_classes(self) -> int:
        return len(self.class_codes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised x (B, 12, T) → add-on latent (B, D, L, T')."""
        return self.add_on(self.backbone(x))

    def forward(self, x: torch.Tensor) -> BranchOutput:
        """Standardised x (B, 12, T) → BranchOutput; ``similarities`` holds the pooled latent (B, D)."""
        latent = self.encode(x)
        pooled = latent.flatten(2).mean(dim=2)
        return BranchOutput(self.last_layer(pooled), pooled, pooled.new_zeros(len(x), 0, 1), latent)


class BlackBoxECGNet(BranchNetwork):
    """Black-box twin of :class:`~ecgproto.model.network.ProtoECGNet` over (B, 12, n_samples) mV."""

    kind = "blackbox"

    def __init__(self, model_cfg: ModelConfig, n_samples: int, fs: int) -> None:
        super().__init__(model_cfg, n_samples, fs)
        self.branches = seeded_branches(lambda g: LinearBranch(g, model_cfg.branches[g], group_labels(g)))
        feature_branch = torch.cat([torch.full((b.n_features,), i) for i, b in enumerate(self.branches.values())])
        fusion_cfg = type(model_cfg.fusion)(head="linear", mask="all", normalize=model_cfg.fusion.normalize)
        self.fusion = FusionHead(fusion_cfg, torch.zeros_like(feature_branch), feature_branch,
                                 len(self.labels), tuple(self.branches))
        with torch.no_grad():
            self.fusion.weight_raw.zero_()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x (B, 12, n_samples) mV → ModelOutput with ``features`` = concatenated pooled latents and
        no similarities (B, 0)."""
        z = self.standardize(x)
        outs = {g: branch(z) for g, branch in self.branches.items()}
        feats = torch.cat([o.similarities for o in outs.values()], dim=1)
        return ModelOutput(self.fusion(feats), feats.new_zeros(len(x), 0), outs, feats)

    @property
    def n_prototypes(self) -> int:
        return 0

    def prototype_table(self) -> pd.DataFrame:
        """No prototypes: an empty table with the prototype model's columns."""
        return pd.DataFrame({"index": pd.Series(dtype="int64"), "branch": pd.Series(dtype="object"),
                             "local_index": pd.Series(dtype="int64"), "class_code": pd.Series(dtype="object")})


def build_network(model_cfg: ModelConfig, n_samples: int, fs: int) -> nn.Module:
    """``ProtoECGNet`` or, for ``model.kind: blackbox``, its ``BlackBoxECGNet`` twin."""
    cls = BlackBoxECGNet if model_cfg.kind == "blackbox" else ProtoECGNet
    return cls(model_cfg, n_samples=n_samples, fs=fs)
