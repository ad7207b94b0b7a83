"""Re-fit a branch's last layer on cached similarities (after projection or prototype_init).

Projection replaces every prototype by a real training window, so the similarities the last
layer was trained on move. Re-running the backbone for every last-layer epoch is wasteful: the
branch is frozen, so its pooled similarities on the training and validation folds are computed
once and the last layer (P_g → C_g, no bias) is trained on them full-batch with Adam, BCE with the
branch's ``pos_weight`` and the off-class L1, keeping the fusion head's sign rule when that
head is ``sign_constrained``. The layer it started from is a candidate too: the validation macro
AUROC picks the epoch (patience as configured).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgproto.data.labels import label_table
from ecgproto.model.losses import bce_loss, last_layer_l1
from ecgproto.train.branch_forward import eval_mode
from ecgproto.train.stages import predict_branch, selection_auroc


def refit_last_layer(
    model: torch.nn.Module,
    group: str,
    archive: Any,
    rows: dict[str, np.ndarray],
    pos_weight: torch.Tensor,
    epochs: int,
    lr: float,
    l1: float,
    patience: int,
    batch_size: int,
    signed: bool,
    min_positives: int = 1,
) -> int:
    """Train branch ``group``'s last layer on cached similarities of ``rows["train"]``, selected on
    ``rows["val"]`` (``selection_auroc`` over labels with >= ``min_positives`` validation
    positives). Returns the selected epoch (-1 = the layer it started from)."""
    branch = model.branches[group]
    device = branch.last_layer.weight.device
    cols = label_table().indices(group)
    sims = {s: torch.from_numpy(predict_branch(model, group, archive, rows[s], batch_size, desc="re-fit",
                                               output="similarities")).to(device)
            for s in ("train", "val")}
    y_train = torch.from_numpy(np.asarray(archive.labels[rows["train"]][:, cols], dtype=np.float32)).to(device)
    pos_weight = pos_weight.to(device) if pos_weight is not None else None
    y_val = np.asarray(archive.labels[rows["val"]][:, cols])
    layer = branch.last_layer
    identity = branch.prototype_class_identity

    def val_auroc() -> float:
        with torch.no_grad():
            return selection_auroc(y_val, layer(sims["val"]).double().cpu().numpy(), min_positives)

    best = val_auroc()
    best_weight, best_epoch, bad = layer.weight.detach().clone(), -1, 0
    model.requires_grad_(False)
    layer.weight.requires_grad_(True)
    optimizer = torch.optim.Adam([layer.weight], lr=lr)
    with eval_mode(model):
        for epoch in range(epochs):
            loss = bce_loss(layer(sims["train"]), y_train, pos_weight) + l1 * last_layer_l1(layer.weight, identity)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if signed:
                branch.constrain_last_layer_signs()
            metric = val_auroc()
            if metric > best:
                best, best_weight, best_epoch, bad = metric, layer.weight.detach().clone(), epoch, 0
            else:
                bad += 1
                if bad >= patience:
                    break
    with torch.no_grad():
        layer.weight.copy_(best_weight)
    model.requires_grad_(False)
    return best_epoch
