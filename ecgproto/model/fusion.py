"""Fusion of the concatenated branch similarities (B, P_total) into the 71 label logits.

1. Per-branch normalisation (``FusionConfig.normalize``): s̃_j = (s_j − μ_b) / σ_b with one
   mean μ_b and standard deviation σ_b per branch b (all of the branch's prototypes pooled),
   fitted on training similarities by ``fit_normalization`` and stored as buffers. One
   scalar pair per branch keeps similarities comparable within a branch while putting the
   branches (cosine ranges ±1, ±13, ±4 at reference scale) on one scale.
2. Head: logit_c = b_c + Σ_j w_cj · s̃_j, with the prototypes j connected to label c given by
   ``mask``: "own_class" (c's own K prototypes), "own_branch" (every prototype of c's branch),
   "own_class_and_other_branches" (own prototypes plus every prototype of the two other
   branches) or "all". Heads:
   - ``sign_constrained`` (default): w_cj = +|v_cj| ≥ 0 for c's own prototypes and
     −|v_cj| ≤ 0 for every other connected prototype. Each term's sign is fixed by
     class membership: looking like a prototype of the label raises its logit, looking like a
     prototype of another class lowers it (the structure of the branch last layers, +1/−0.5).
   - ``masked_nonneg``: w_cj = |v_cj| ≥ 0 on every connected prototype; with
     "own_class" each logit is a sum of evidence from the label's own prototypes only.
     Measured on a small synthetic run it under-fits (similarities share a per-record common
     factor that only negative evidence can cancel): see docs/readme/model.md.
   - ``linear``: dense signed weights, mask ignored (the reference head).
   The magnitude |v| has gradient ±1 whatever its size (a softplus would stall near 0) and
   the L1 term can drive it to exactly 0. All start from w = 1/K on a label's own K
   prototypes, ±1e-3 on other connected ones, bias 0.

``contributions(s)`` returns w_cj · s̃_j (B, 71, P); summed over j plus the bias it equals
the logits exactly (up to float rounding), which is what explanations report.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgproto.model.config import FusionConfig

_SMALL_WEIGHT = 1e-3


class FusionHead(nn.Module):
    """Per-branch-normalised similarities (B, P_total) → logits (B, n_labels).

    prototype_label (P_total,): index of each prototype's class in the 71-label vector;
    prototype_branch (P_total,): branch index (0 rhythm, 1 morphology, 2 global) of each prototype.
    """

    def __init__(self, cfg: FusionConfig, prototype_label: torch.Tensor, prototype_branch: torch.Tensor,
                 n_labels: int, branch_names: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.branch_names = tuple(branch_names)
        n_protos = int(prototype_label.numel())
        self.register_buffer("prototype_label", prototype_label.long().clone(), persistent=False)
        self.register_buffer("prototype_branch", prototype_branch.long().clone(), persistent=False)
        self.register_buffer("sim_mean", torch.zeros(n_protos))
        self.register_buffer("sim_std", torch.ones(n_protos))

        own = torch.zeros(n_labels, n_protos)
        own[prototype_label, torch.arange(n_protos)] = 1.0
        label_branch = torch.full((n_labels,), -1, dtype=torch.long)
        label_branch[prototype_label] = prototype_branch.long()
        same_branch = (label_branch[:, None] == prototype_branch[None, :]).float()
        masks = {
            "own_class": own,
            "own_branch": same_branch,
            "own_class_and_other_branches": torch.maximum(own, 1.0 - same_branch),
            "all": torch.ones(n_labels, n_protos),
        }
        mask = torch.ones(n_labels, n_protos) if cfg.head == "linear" else masks[cfg.mask]
        sign = 2.0 * own - 1.0 if cfg.head == "sign_constrained" else torch.ones(n_labels, n_protos)
        # Derived from the config, so not stored in checkpoints.
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("sign", sign * mask, persistent=False)

        per_class = own.sum(dim=1, keepdim=True).clamp(min=1.0)
        magnitude = torch.where(own > 0, own / per_class, torch.full_like(own, _SMALL_WEIGHT))
        self.weight_raw = nn.Parameter(own / per_class if cfg.head == "linear" else magnitude)
        self.bias = nn.Parameter(torch.zeros(n_labels))

    def effective_weight(self) -> torch.Tensor:
        """The weights w (n_labels, P_total) actually applied (masked and sign-fixed unless ``linear``)."""
        if self.cfg.head == "linear":
            return self.weight_raw
        return self.weight_raw.abs() * self.sign

    def normalize(self, similarities: torch.Tensor) -> torch.Tensor:
        """Raw similarities (B, P_total) → per-branch standardised similarities s̃."""
        if not self.cfg.normalize:
            return similarities
        return (similarities - self.sim_mean) / self.sim_std

    def forward(self, similarities: torch.Tensor) -> torch.Tensor:
        """Raw concatenated similarities (B, P_total) → logits (B, n_labels)."""
        return F.linear(self.normalize(similarities), self.effective_weight(), self.bias)

    def contributions(self, similarities: torch.Tensor) -> torch.Tensor:
        """Raw similarities (B, P_total) → w_cj·s̃_j (B, n_labels, P_total); sum over j + bias = logits."""
        return self.normalize(similarities).unsqueeze(1) * self.effective_weight().unsqueeze(0)

    def l1_penalty(self) -> torch.Tensor:
        """Σ |w_cj| over the applied weights (the fusion L1 term)."""
        return self.effective_weight().abs().sum()

    @torch.no_grad()
    def fit_normalization(self, similarities: torch.Tensor | np.ndarray) -> dict[str, dict[str, float]]:
        """Fit one mean/std per branch on training similarities (N, P_total); returns them as plain data."""
        sims = torch.as_tensor(similarities).detach().to(self.sim_mean.device, torch.float64)
        state: dict[str, dict[str, float]] = {}
        for b, name in enumerate(self.branch_names):
            cols = self.prototype_branch == b
            values = sims[:, cols]
            mean = float(values.mean())
            std = float(values.std()) if values.numel() > 1 else 1.0
            if not math.isfinite(std) or std < 1e-6:
                std = 1.0
            state[name] = {"mean": mean, "std": std}
        self.load_normalization(state)
        return state

    @torch.no_grad()
    def load_normalization(self, state: dict[str, dict[str, float]]) -> None:
        """Set the per-branch mean/std buffers from ``{branch: {"mean": m, "std": s}}``."""
        for b, name in enumerate(self.branch_names):
            cols = self.prototype_branch == b
            self.sim_mean[cols] = float(state[name]["mean"])
            self.sim_std[cols] = float(state[name]["std"])

    def normalization_state(self) -> dict[str, dict[str, float]]:
        """Current per-branch mean/std as plain data (stored in checkpoint meta)."""
        out = {}
        for b, name in enumerate(self.branch_names):
            idx = int(torch.nonzero(self.prototype_branch == b)[0])
            out[name] = {"mean": float(self.sim_mean[idx]), "std": float(self.sim_std[idx])}
        return out
