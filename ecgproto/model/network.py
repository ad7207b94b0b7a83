"""ProtoECGNet: three prototype branches (rhythm, morphology, global) fused into 71 logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ecgproto.data.labels import GROUPS, all_labels, group_labels
from ecgproto.model.backbones import N_LEADS
from ecgproto.model.branch import BranchOutput, PrototypeBranch
from ecgproto.model.config import ModelConfig
from ecgproto.model.fusion import FusionHead


@dataclass
class ModelOutput:
    """logits (B, 71) from the fusion head; similarities (B, P_total) = the branches' pooled
    similarities concatenated in branch order rhythm, morphology, global; branch: per-group outputs."""

    logits: torch.Tensor
    similarities: torch.Tensor
    branch: dict[str, BranchOutput]
    features: torch.Tensor | None = None  # what the fusion head reads (= similarities here)


class BranchNetwork(nn.Module):
    """Base of ProtoECGNet and its black-box twin: three branches whose outputs a fusion head reads.

    Checks (B, 12, n_samples) input at ``fs`` Hz and standardises it with the ``input_mean``/
    ``input_std`` (12,) buffers (set from training statistics with ``set_standardization``;
    identity by default). Subclasses set ``branches`` (each with ``n_features``, the width of what
    it gives the fusion head) and ``fusion``.
    """

    def __init__(self, model_cfg: ModelConfig, n_samples: int, fs: int) -> None:
        super().__init__()
        self.config = model_cfg
        self.labels: tuple[str, ...] = all_labels()
        self.n_samples = int(n_samples)
        self.fs = int(fs)
        self.register_buffer("input_mean", torch.zeros(N_LEADS))
        self.register_buffer("input_std", torch.ones(N_LEADS))

    # ---- standardisation ------------------------------------------------------------------
    @torch.no_grad()
    def set_standardization(self, mean, std) -> None:
        """Set per-lead input mean/std (12,) in mV (from the training split)."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() != N_LEADS or std_t.numel() != N_LEADS:
            raise ValueError(f"standardisation needs 12 means and 12 stds, got {mean_t.numel()} and {std_t.numel()}")
        if not torch.all(torch.isfinite(mean_t)) or not torch.all(std_t > 0):
            raise ValueError("standardisation stds must be positive and means finite")
        self.input_mean.copy_(mean_t)
        self.input_std.copy_(std_t)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 12, n_samples) mV → standardised signals, after checking the shape."""
        if x.ndim != 3 or x.shape[1] != N_LEADS or x.shape[2] != self.n_samples:
            raise ValueError(
                f"expected signals shaped (B, 12, {self.n_samples}) at {self.fs} Hz, got {tuple(x.shape)}; "
                f"resample/crop records to {self.n_samples} samples"
            )
        x = x.to(self.input_mean.dtype)
        return (x - self.input_mean[:, None]) / self.input_std[:, None]

    def forward_branch(self, group: str, x: torch.Tensor) -> BranchOutput:
        """Run one branch on raw signals x (B, 12, n_samples) mV (standardised here)."""
        return self.branches[group](self.standardize(x))

    def branch_slices(self) -> dict[str, slice]:
        """Columns of each branch in the concatenated vector the fusion head reads."""
        out, start = {}, 0
        for g, branch in self.branches.items():
            out[g] = slice(start, start + branch.n_features)
            start += branch.n_features
        return out


def seeded_branches(make: Callable[[str], nn.Module]) -> nn.ModuleDict:
    """``make(group)`` for rhythm, morphology, global, each under its own seed drawn once from the
    global generator: a branch's initial weights do not depend on the other branches' sizes, and a
    prototype model and its black-box twin built after the same seed start from the same backbones."""
    branch_seeds = torch.randint(0, 2**62, (len(GROUPS),)).tolist()
    branches = {}
    for g, seed in zip(GROUPS, branch_seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            branches[g] = make(g)
    return nn.ModuleDict(branches)


class ProtoECGNet(BranchNetwork):
    """Interpretable 12-lead ECG classifier over signals (B, 12, n_samples) in mV at ``fs`` Hz."""

    kind = "prototype"

    def __init__(self, model_cfg: ModelConfig, n_samples: int, fs: int) -> None:
        super().__init__(model_cfg, n_samples, fs)
        self.branches = seeded_branches(
            lambda g: PrototypeBranch(g, model_cfg.branches[g], group_labels(g), n_samples, fs))
        position = {c: i for i, c in enumerate(self.labels)}
        proto_label, proto_branch = [], []
        for b, (g, branch) in enumerate(self.branches.items()):
            codes = torch.tensor([position[c] for c in branch.class_codes])
            proto_label.append(codes[branch.prototype_classes])
            proto_branch.append(torch.full((branch.n_prototypes,), b))
        self.fusion = FusionHead(model_cfg.fusion, torch.cat(proto_label), torch.cat(proto_branch),
                                 len(self.labels), tuple(self.branches))

    # ---- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x (B, 12, n_samples) mV → ModelOutput (fusion logits, similarities, branch outputs)."""
        z = self.standardize(x)
        outs = {g: branch(z) for g, branch in self.branches.items()}
        sims = torch.cat([o.similarities for o in outs.values()], dim=1)
        return ModelOutput(self.fusion(sims), sims, outs, sims)

    # ---- bookkeeping ----------------------------------------------------------------------
    @property
    def n_prototypes(self) -> int:
        return sum(b.n_prototypes for b in self.branches.values())

    def prototype_table(self) -> pd.DataFrame:
        """One row per prototype: index (global column), branch, local_index, class_code."""
        rows = []
        for g, sl in self.branch_slices().items():
            branch = self.branches[g]
            for j, c in enumerate(branch.prototype_classes.tolist()):
                rows.append((sl.start + j, g, j, branch.class_codes[c]))
        return pd.DataFrame(rows, columns=["index", "branch", "local_index", "class_code"])
