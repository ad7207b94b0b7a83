"""Fusion training on cached branch similarity features.

The (frozen, eval-mode) branches are run once over train/val/test to get the concatenated
similarities (N, P_total); the fusion head is then trained on those cached features only,
which takes seconds instead of re-running every backbone each epoch (reference §7).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy.special import expit

from ecgproto.config import Config
from ecgproto.data.labels import all_labels, group_labels
from ecgproto.metrics import macro_auroc
from ecgproto.model.checkpoint import plain_state_dict
from ecgproto.model.losses import fusion_loss
from ecgproto.model.thresholds import threshold_table
from ecgproto.progress import progress
from ecgproto.train.branch_forward import eval_mode
from ecgproto.train.criterion import pos_weight_for
from ecgproto.train.epochs import EpochStage, RunState, Snapshot
from ecgproto.train.stages import make_optimizer, validation_metrics


@torch.no_grad()
def similarity_features(
    model: torch.nn.Module, archive: Any, rows: np.ndarray, batch_size: int, desc: str = "features"
) -> np.ndarray:
    """What the fusion head reads, (N, P_total) float32, for archive ``rows``: the concatenated pooled
    branch similarities (the twin: pooled latents)."""
    outs = []
    device = next(model.parameters()).device
    with eval_mode(model):
        starts = range(0, len(rows), batch_size)
        for s in progress(starts, desc=desc, total=len(starts), unit="batch"):
            r = rows[s : s + batch_size]
            x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32)).to(device, non_blocking=True)
            outs.append(model(x).features.float().cpu().numpy())
    width = model.fusion.weight_raw.shape[1]
    return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)


@torch.no_grad()
def fusion_logits(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Fusion-head logits (N, 71) float64 on cached features (N, P_total) (used for AUROC ranking)."""
    with eval_mode(model):
        x = torch.from_numpy(features).to(next(model.parameters()).device)
        return model.fusion(x).double().cpu().numpy()


@torch.no_grad()
def init_fusion_from_branches(model: torch.nn.Module) -> None:
    """Start the fusion head at the branches' own last layers.

    With per-branch normalisation s̃ = (s − μ_b)/σ_b, a branch logit Σ_j L_cj s_j equals
    Σ_j (L_cj σ_b) s̃_j + μ_b Σ_j L_cj, so those weights and biases make the fused logits equal
    the branch logits wherever the head's mask and signs allow the branch weight (always for
    ``linear``). For the constrained heads every other weight starts at a magnitude of 1e-6:
    not exactly 0, where |v| has no gradient, so training can still grow it.
    Fusion training then starts from the branches' own predictions instead of from scratch.
    """
    fusion = model.fusion
    labels = {code: i for i, code in enumerate(all_labels())}
    weight = torch.zeros_like(fusion.weight_raw, dtype=torch.float64)
    bias = torch.zeros_like(fusion.bias, dtype=torch.float64)
    for group, cols in model.branch_slices().items():
        last = model.branches[group].last_layer.weight.double()  # (C_g, P_g)
        rows = torch.tensor([labels[c] for c in group_labels(group)], device=weight.device)
        mean, std = fusion.sim_mean[cols][0].double(), fusion.sim_std[cols][0].double()
        weight[rows, cols] = last * std
        bias[rows] = last.sum(dim=1) * mean
        if model.branches[group].last_layer.bias is not None:  # the twin's linear heads
            bias[rows] += model.branches[group].last_layer.bias.double()
    if fusion.cfg.head == "linear":
        fusion.weight_raw.copy_(weight)
    else:
        allowed = (weight * fusion.sign > 0) & (fusion.mask > 0)
        fusion.weight_raw.copy_(torch.where(allowed, weight.abs(), torch.full_like(weight, 1e-6)))
    fusion.bias.copy_(bias)


@torch.no_grad()
def platt_scale_fusion_head(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray,
                            min_slope: float = 1e-3) -> np.ndarray:
    """Per-label Platt scaling of the fusion head on training ``features`` (N, P_total) / ``labels`` (N, 71).

    The branches' last layers have no bias, so a head started at them ranks well but its logits
    can sit far from 0 for every record (float32 sigmoids then all read 1.0 and thresholds,
    probabilities and probability-based AUROCs are meaningless). Each label's logit z_c becomes
    a_c·z_c + b_c with a_c > 0 — row c of the weights times a_c, bias a_c·bias_c + b_c — so the
    signs and masks of the head and every split's ranking (AUROC) are unchanged; (a_c, b_c) come
    from an L2-regularised logistic regression of the label on its standardised logit. A label
    with a single class in training gets a near-constant logit at its smoothed prevalence.
    Returns the slopes a_c (71,).
    """
    from sklearn.linear_model import LogisticRegression

    fusion = model.fusion
    device = fusion.weight_raw.device
    z = fusion(torch.from_numpy(np.asarray(features, dtype=np.float32)).to(device)).double().cpu().numpy()
    y = np.asarray(labels) > 0
    mean, std = z.mean(axis=0), z.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    slope, offset = np.empty(z.shape[1]), np.empty(z.shape[1])
    for c in range(z.shape[1]):
        n_pos = int(y[:, c].sum())
        if 0 < n_pos < len(y):
            fit = LogisticRegression().fit(((z[:, c] - mean[c]) / std[c])[:, None], y[:, c])
            coef, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        else:
            coef, intercept = 0.0, float(np.log((n_pos + 0.5) / (len(y) - n_pos + 0.5)))
        slope[c] = max(coef, min_slope) / std[c]
        offset[c] = intercept - slope[c] * mean[c]
    a = torch.from_numpy(slope).to(device, fusion.weight_raw.dtype)
    fusion.weight_raw.mul_(a[:, None])
    fusion.bias.copy_(a.to(fusion.bias.dtype) * fusion.bias + torch.from_numpy(offset).to(device, fusion.bias.dtype))
    return slope


class FusionStage(EpochStage):
    """The fusion phase: the head trained on cached branch features, ``train.fusion_epochs`` epochs
    with ``train.cached_patience``, driven by :func:`ecgproto.train.epochs.run_epochs`.

    Creating it prepares the head once per run (per-branch normalisation, the start at the
    branches' last layers and its Platt scaling, recorded in ``state.fusion``) and the optimizer
    (restored from ``state`` on resume); :meth:`finish` tunes the decision thresholds.
    """

    phase = branch = stage = "fusion"
    save_each_epoch = False

    def __init__(self, cfg: Config, model: torch.nn.Module, features: dict[str, np.ndarray],
                 train_labels: np.ndarray, val_labels: np.ndarray, state: RunState, seed: int) -> None:
        tcfg = cfg.train
        self.cfg, self.model, self.features = cfg, model, features
        self.train_labels, self.val_labels = train_labels, val_labels
        self.epochs, self.patience, self.seed = tcfg.fusion_epochs, tcfg.cached_patience, seed
        self.device = next(model.parameters()).device
        self.x_train = torch.from_numpy(features["train"]).to(self.device)
        self.y_train = torch.from_numpy(np.asarray(train_labels, dtype=np.float32)).to(self.device)
        if "normalization" not in state.fusion:
            norm = model.fusion.fit_normalization(self.x_train) if cfg.model.fusion.normalize else None
            state.fusion["normalization"] = norm
            if tcfg.fusion_init == "branches":
                init_fusion_from_branches(model)
                platt_scale_fusion_head(model, features["train"], train_labels)
        model.requires_grad_(False)
        model.eval()
        params = list(model.fusion.parameters())
        for p in params:
            p.requires_grad_(True)
        self.optimizer, self.scheduler = make_optimizer(params, tcfg.fusion_lr, tcfg.fusion_epochs, tcfg, state)
        self.pos_weight = pos_weight_for(train_labels, cfg.model.loss).to(self.device)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        fusion, bs, n = self.model.fusion, self.cfg.train.fusion_batch_size, len(self.x_train)
        fusion.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        order = order.to(self.device)
        total, n_batches = 0.0, 0  # the loss sum stays on the device (float64) until the epoch ends
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = fusion_loss(fusion(self.x_train[idx]), self.y_train[idx], fusion.l1_penalty(), self.cfg.model.loss,
                               self.pos_weight)["total"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total = total + loss.detach().double()
            n_batches += 1
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        return {"lr": lr, "train_loss": float(total) / max(n_batches, 1)}

    def validate(self) -> dict[str, float]:
        return validation_metrics(self.val_labels, fusion_logits(self.model, self.features["val"]),
                                  self.cfg.train.selection_min_positives)

    def best_weights(self) -> tuple[dict[str, torch.Tensor], None]:
        return {k: v for k, v in plain_state_dict(self.model).items() if k.startswith("fusion.")}, None

    def snapshot(self) -> Snapshot:
        return Snapshot(copy.deepcopy(self.optimizer.state_dict()),
                        self.scheduler.state_dict() if self.scheduler is not None else None)

    def restore(self, best_model: dict[str, torch.Tensor] | None) -> None:
        if best_model is not None:
            self.model.load_state_dict(best_model, strict=False)
        self.model.requires_grad_(False)
        self.model.eval()

    def finish(self) -> dict[str, Any]:
        """Validation-tuned thresholds (rules per label) and the fused validation macro AUROC."""
        cfg = self.cfg
        val_logits = fusion_logits(self.model, self.features["val"])
        table = threshold_table(self.val_labels, expit(val_logits), train_labels=self.train_labels,
                                min_positives=cfg.evaluate.threshold_min_positives,
                                max_rate_ratio=cfg.evaluate.threshold_max_rate_ratio)
        return {"thresholds": table["threshold"].tolist(), "threshold_rules": table["rule"].tolist(),
                "val_macro_auroc": macro_auroc(self.val_labels, val_logits)}
