"""Fusion training on cached branch similarity features.

The (frozen, eval-mode) branches are run once over train/val/test to get the concatenated
similarities (N, P_total); the fusion head is then trained on those cached features only,
which takes seconds instead of re-running every backbone each epoch (reference §7).
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.special import expit

from ecgproto.data.labels import all_labels, group_labels
from ecgproto.evaluate.metrics import macro_auroc
from ecgproto.evaluate.thresholds import threshold_table
from ecgproto.progress import progress
from ecgproto.train.branch_io import eval_mode
from ecgproto.train.checkpoint import plain_state_dict
from ecgproto.train.distributed import gather_rows, shard
from ecgproto.model.losses import fusion_loss
from ecgproto.train.losses_adapter import pos_weight_for
from ecgproto.train.stages import make_optimizer, validation_metrics

if TYPE_CHECKING:
    from ecgproto.train.loop import Trainer


@torch.no_grad()
def similarity_features(
    model: torch.nn.Module, archive: Any, rows: np.ndarray, batch_size: int, desc: str = "features"
) -> np.ndarray:
    """What the fusion head reads, (N, P_total) float32, for archive ``rows``: the concatenated pooled
    branch similarities (the twin: pooled latents)."""
    outs = []
    with eval_mode(model):
        starts = range(0, len(rows), batch_size)
        for s in progress(starts, desc=desc, total=len(starts), unit="batch"):
            r = rows[s : s + batch_size]
            x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32))
            outs.append(model(x).features.float().numpy())
    width = model.fusion.weight_raw.shape[1]
    return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)


def cached_features(trainer: Trainer) -> dict[str, np.ndarray]:
    """Features of every split, computed once per process (sharded across ranks)."""
    cache = getattr(trainer, "_fusion_features", None)
    if cache is None:
        cache = {}
        for split in ("train", "val", "test"):
            rows = shard(trainer.rows[split], trainer.dist)
            local = similarity_features(trainer.model, trainer.archive, rows,
                                        trainer.cfg.train.eval_batch_size, f"features {split}")
            cache[split] = gather_rows(local, trainer.dist)
        trainer._fusion_features = cache
    return cache


@torch.no_grad()
def fusion_logits(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Fusion-head logits (N, 71) float64 on cached features (N, P_total) (used for AUROC ranking)."""
    with eval_mode(model):
        return model.fusion(torch.from_numpy(features)).double().numpy()


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
        rows = torch.tensor([labels[c] for c in group_labels(group)])
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
def calibrate_fusion_head(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray,
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
    z = fusion(torch.from_numpy(np.asarray(features, dtype=np.float32))).double().numpy()
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
    a = torch.from_numpy(slope).to(fusion.weight_raw.dtype)
    fusion.weight_raw.mul_(a[:, None])
    fusion.bias.copy_(a.to(fusion.bias.dtype) * fusion.bias + torch.from_numpy(offset).to(fusion.bias.dtype))
    return slope


def run_fusion(trainer: Trainer, budget: list[float]) -> bool:
    """Train the fusion head (one phase of the run); returns False when the epoch budget ran out."""
    cfg, tcfg, s, model = trainer.cfg, trainer.cfg.train, trainer.state, trainer.model
    feats = cached_features(trainer)
    y_train = torch.from_numpy(np.asarray(trainer.train_labels, dtype=np.float32))
    x_train = torch.from_numpy(feats["train"])
    if "normalization" not in s.fusion:
        norm = model.fusion.fit_normalization(x_train) if cfg.model.fusion.normalize else None
        s.fusion["normalization"] = norm
        if tcfg.fusion_init == "branches":
            init_fusion_from_branches(model)
            calibrate_fusion_head(model, feats["train"], trainer.train_labels)
    model.requires_grad_(False)
    model.eval()
    params = list(model.fusion.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer, scheduler = make_optimizer(params, tcfg.fusion_lr, tcfg.fusion_epochs, tcfg, s)
    pos_weight = pos_weight_for(trainer.train_labels, cfg.model.loss.pos_weight_cap)
    n = len(x_train)
    bs = tcfg.fusion_batch_size
    seed = cfg.seed * 100 + s.phase
    def val_metrics() -> dict[str, float]:
        return validation_metrics(trainer.val_labels, fusion_logits(model, feats["val"]), tcfg.selection_min_positives)

    if s.epoch == 0 and s.best_model is None:
        # the starting head is a candidate too: training must beat it on validation to replace it
        metrics = val_metrics()
        s.best_metric = metrics["val_selection"]
        s.best_model = {k: v for k, v in plain_state_dict(model).items() if k.startswith("fusion.")}
        s.best_epoch = -1
        trainer._log({"phase": "fusion", "branch": "fusion", "stage": "fusion", "epoch": -1, "lr": 0.0,
                      **metrics, "best": True, "seconds": 0.0})
    while s.epoch < tcfg.fusion_epochs:
        if budget[0] <= 0:
            _snapshot(s, optimizer, scheduler)
            trainer.save_state()
            return False
        t0 = time.perf_counter()
        model.fusion.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + s.epoch))
        total, n_batches = 0.0, 0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            logits = model.fusion(x_train[idx])
            loss = fusion_loss(logits, y_train[idx], model.fusion.l1_penalty(), cfg.model.loss, pos_weight)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n_batches += 1
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        metrics = val_metrics()
        metric = metrics["val_selection"]
        improved = metric > s.best_metric
        if improved:
            s.best_metric, s.best_epoch, s.bad_epochs = metric, s.epoch, 0
            s.best_model = {k: v for k, v in plain_state_dict(model).items() if k.startswith("fusion.")}
        else:
            s.bad_epochs += 1
        trainer._log({
            "phase": "fusion", "branch": "fusion", "stage": "fusion", "epoch": s.epoch, "lr": lr,
            "train_loss": total / max(n_batches, 1), **metrics, "best": improved,
            "seconds": time.perf_counter() - t0,
        })
        s.epoch += 1
        budget[0] -= 1
        if s.bad_epochs >= tcfg.cached_patience:
            s.epoch = tcfg.fusion_epochs
    if s.best_model is not None:
        model.load_state_dict(s.best_model, strict=False)
    model.requires_grad_(False)
    model.eval()
    val_logits = fusion_logits(model, feats["val"])
    table = threshold_table(trainer.val_labels, expit(val_logits), train_labels=trainer.train_labels,
                            min_positives=cfg.evaluate.threshold_min_positives,
                            max_rate_ratio=cfg.evaluate.threshold_max_rate_ratio)
    s.fusion["thresholds"] = table["threshold"].tolist()
    s.fusion["threshold_rules"] = table["rule"].tolist()
    s.fusion["val_macro_auroc"] = macro_auroc(trainer.val_labels, val_logits)
    s.fusion["best_epoch"] = s.best_epoch
    return True


def _snapshot(s: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    s.optimizer = copy.deepcopy(optimizer.state_dict())
    s.scheduler = scheduler.state_dict() if scheduler is not None else None
