"""Training-side construction of the model's losses (pos_weight, co-occurrence, combined loss)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgproto.data.labels import label_table


def pos_weight_for(labels: np.ndarray, cap: float) -> torch.Tensor:
    """BCE ``pos_weight`` (C,) = (N − n_c) / n_c from training labels (N, C), capped at ``cap``.

    A class without training positives gets 1 (its positive term never occurs).
    """
    labels = np.asarray(labels, dtype=np.float64)
    n = labels.shape[0]
    pos = labels.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0)
    return torch.from_numpy(np.clip(w, 1e-3, cap).astype(np.float32))


def build_branch_criterion(model: torch.nn.Module, group: str, train_labels: np.ndarray, loss_cfg: Any):
    """The model's combined prototype loss for branch ``group`` (joint stage)."""
    raise NotImplementedError("waiting for ecgproto.model.losses")


def cooccurrence_for(train_labels: np.ndarray, group: str) -> np.ndarray:
    """Jaccard co-occurrence (C_g, C_g) of the group's labels in the training split."""
    raise NotImplementedError("waiting for ecgproto.model.losses")
