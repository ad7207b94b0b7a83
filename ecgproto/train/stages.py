"""What each training stage of a branch trains, in which mode, with which loss.

Every stage starts by freezing the whole model (``requires_grad=False``, eval mode)
and then unfreezes only its own modules and puts only those in train mode, so
frozen BatchNorm/dropout never drift (reference bug 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ecgproto.data.labels import label_table
from ecgproto.evaluate.metrics import macro_auroc
from ecgproto.progress import progress
from ecgproto.train.branch_io import branch_forward, eval_mode

TRAINABLE_STAGES = ("warmup", "joint", "last_layer")


def pooled_latent(latent: torch.Tensor) -> torch.Tensor:
    """(B, D, ...) latent map → (B, D) mean over every axis after the channels."""
    return latent.flatten(2).mean(dim=2) if latent.dim() > 2 else latent


class WarmupHead(torch.nn.Module):
    """Temporary linear head on the pooled latent for the warm-up stage (not kept in the model)."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, n_classes)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled_latent(latent))


def make_warmup_head(model: torch.nn.Module, group: str, n_samples: int, seed: int) -> WarmupHead:
    """A seeded ``WarmupHead`` sized from one dummy forward of branch ``group``."""
    with torch.no_grad(), eval_mode(model):
        latent = branch_forward(model, group, torch.zeros(1, 12, n_samples)).latent
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    head = WarmupHead(pooled_latent(latent).shape[1], len(label_table().indices(group)))
    torch.random.set_rng_state(gen_state)
    return head


@dataclass
class StageSetup:
    """Trainable parameters of a stage and the modules that must be in train mode."""

    name: str
    group: str
    params: list[torch.nn.Parameter]
    train_modules: list[torch.nn.Module] = field(default_factory=list)
    head: WarmupHead | None = None

    def train(self) -> None:
        """Train mode for this stage's modules only (everything else stays in eval)."""
        for m in self.train_modules:
            m.train()


def setup_stage(model: torch.nn.Module, group: str, name: str, head: WarmupHead | None = None) -> StageSetup:
    """Freeze everything, then unfreeze what stage ``name`` of branch ``group`` trains."""
    if name not in TRAINABLE_STAGES:
        raise ValueError(f"stage {name!r} has no trainable parameters; expected one of {TRAINABLE_STAGES}")
    model.requires_grad_(False)
    model.eval()
    branch = model.branches[group]
    last = branch.last_layer
    last_ids = {id(p) for p in last.parameters()}
    proto_id = id(branch.prototype_vectors)
    if name == "warmup":
        if head is None:
            raise ValueError("the warm-up stage needs its WarmupHead")
        params = [p for p in branch.parameters() if id(p) not in last_ids and id(p) != proto_id]
        params += list(head.parameters())
        train_modules = [branch, head]
    elif name == "joint":
        params = [p for p in branch.parameters() if id(p) not in last_ids]
        train_modules = [branch]
    else:  # last_layer
        params = list(last.parameters())
        train_modules = []
        head = None
    for p in params:
        p.requires_grad_(True)
    return StageSetup(name, group, params, train_modules, head)


def offclass_l1(branch: torch.nn.Module) -> torch.Tensor:
    """Σ |W_cj| over off-class connections (prototype j not of class c) of the last layer."""
    identity = branch.prototype_class_identity.to(branch.last_layer.weight.dtype)  # (P, C)
    return (branch.last_layer.weight.abs() * (1.0 - identity.T)).sum()


def stage_logits(setup: StageSetup, out: Any) -> torch.Tensor:
    """(B, C_g) logits the stage is trained and selected on."""
    if setup.name == "warmup":
        return setup.head(out.latent)
    return out.logits


def stage_loss(
    setup: StageSetup,
    model: torch.nn.Module,
    out: Any,
    y: torch.Tensor,
    criterion: torch.nn.Module,
    pos_weight: torch.Tensor,
    l1_last_layer: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its named terms. ``y``: (B, C_g) float targets of the branch's group."""
    if setup.name == "joint":
        result = criterion(out, y)
        return _split_loss(result)
    logits = stage_logits(setup, out)
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
    if setup.name == "warmup":
        return bce, {"bce": float(bce.detach())}
    l1 = offclass_l1(model.branches[setup.group])
    total = bce + l1_last_layer * l1
    return total, {"bce": float(bce.detach()), "l1_offclass": float(l1.detach())}


def _split_loss(result: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Accept ``total`` or ``(total, {term: value})`` from the model's combined loss."""
    if isinstance(result, tuple):
        total, terms = result
        return total, {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in terms.items()}
    return result, {"loss": float(result.detach())}


@torch.no_grad()
def predict_branch(
    model: torch.nn.Module,
    group: str,
    archive: Any,
    rows: np.ndarray,
    batch_size: int,
    head: WarmupHead | None = None,
    desc: str = "validate",
) -> np.ndarray:
    """Sigmoid probabilities (N, C_g) of branch ``group`` (or its warm-up head) on archive ``rows``."""
    outs = []
    with eval_mode(model):
        if head is not None:
            head.eval()
        starts = range(0, len(rows), batch_size)
        for s in progress(starts, desc=f"{desc} {group}", total=len(starts), unit="batch"):
            r = rows[s : s + batch_size]
            x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32))
            out = branch_forward(model, group, x)
            logits = head(out.latent) if head is not None else out.logits
            outs.append(torch.sigmoid(logits.float()).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, len(label_table().indices(group))))


def branch_auroc(labels: np.ndarray, probs: np.ndarray, group: str) -> float:
    """Dataset-level macro AUROC of branch ``group`` (labels (N,71) uint8, probs (N,C_g))."""
    return macro_auroc(np.asarray(labels)[:, label_table().indices(group)], probs)
