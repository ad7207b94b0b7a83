"""The branch and fusion criteria built from the training labels: BCE pos_weight, label co-occurrence,
and the branch's ``BranchLoss`` (formerly ``losses_adapter.py``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ecgproto.data.labels import label_table


def pos_weight_for(labels: np.ndarray, loss_cfg: Any) -> torch.Tensor:
    """BCE ``pos_weight`` (C,) from training labels (N, C) with ``loss_cfg.pos_weight_rule`` and
    ``loss_cfg.pos_weight_cap`` (``ecgproto.model.losses.pos_weight_from_labels``)."""
    from ecgproto.model.losses import pos_weight_from_labels

    return pos_weight_from_labels(np.asarray(labels), loss_cfg.pos_weight_cap, loss_cfg.pos_weight_rule)


def cooccurrence_for(train_labels: np.ndarray, group: str) -> np.ndarray:
    """Jaccard co-occurrence (C_g, C_g) of the group's labels over the training split (N, 71)."""
    from ecgproto.model.losses import jaccard_cooccurrence

    return jaccard_cooccurrence(np.asarray(train_labels)[:, label_table().indices(group)])


def build_branch_criterion(model: torch.nn.Module, group: str, train_labels: np.ndarray, loss_cfg: Any):
    """``BranchLoss`` of branch ``group`` with pos_weight and co-occurrence from the training labels."""
    from ecgproto.model.losses import BranchLoss

    cols = label_table().indices(group)
    branch = model.branches[group]
    if model.kind == "blackbox":  # the twin trains with BCE only: no prototype terms
        return BranchLoss(replace(loss_cfg, contrastive=0.0), torch.zeros(0, len(cols)), None,
                          pos_weight_for(np.asarray(train_labels)[:, cols], loss_cfg))
    return BranchLoss(
        loss_cfg,
        branch.prototype_class_identity,
        cooccurrence_for(train_labels, group),
        pos_weight_for(np.asarray(train_labels)[:, cols], loss_cfg),
    )
