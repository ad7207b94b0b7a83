"""What each training stage of a branch trains, in which mode, with which loss.

Every stage starts by freezing the whole model (``requires_grad=False``, eval mode)
and then unfreezes only its own modules and puts only those in train mode, so
frozen BatchNorm/dropout never drift (reference bug 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ecgproto.data.labels import label_table
from ecgproto.device import autocast, check_precision
from ecgproto.metrics import macro_auroc
from ecgproto.progress import progress
from ecgproto.model.losses import bce_loss
from ecgproto.train.branch_forward import branch_forward, branch_latent, eval_mode
from ecgproto.train.config import TrainConfig

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
    """A seeded ``WarmupHead`` sized from one dummy forward of branch ``group``, on the model's device
    (initialised on the CPU, so its weights do not depend on the device)."""
    device = next(model.parameters()).device
    with torch.no_grad(), eval_mode(model):
        latent = branch_latent(model, group, torch.zeros(1, 12, n_samples, device=device))
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    head = WarmupHead(pooled_latent(latent).shape[1], len(label_table().indices(group)))
    torch.random.set_rng_state(gen_state)
    return head.to(device)


@dataclass
class StageSetup:
    """Trainable parameters of a stage and the modules that must be in train mode."""

    name: str
    group: str
    params: list[torch.nn.Parameter]
    train_modules: list[torch.nn.Module] = field(default_factory=list)
    head: WarmupHead | None = None
    trains_last_layer: bool = False

    def train(self) -> None:
        """Train mode for this stage's modules only (everything else stays in eval)."""
        for m in self.train_modules:
            m.train()


def setup_stage(model: torch.nn.Module, group: str, name: str, head: WarmupHead | None = None,
                train_last_layer: bool = False, train_backbone: bool = True) -> StageSetup:
    """Freeze everything, then unfreeze what stage ``name`` of branch ``group`` trains
    (joint stage: ``train_last_layer`` trains the last layer too, ``train_backbone=False`` leaves
    the backbone frozen and in eval mode)."""
    if name not in TRAINABLE_STAGES:
        raise ValueError(f"stage {name!r} has no trainable parameters; expected one of {TRAINABLE_STAGES}")
    model.requires_grad_(False)
    model.eval()
    branch = model.branches[group]
    last = branch.last_layer
    last_ids = {id(p) for p in last.parameters()}
    if model.kind == "blackbox":  # the twin: warm-up and joint train the whole branch with its head
        params = list(branch.parameters()) if name != "last_layer" else list(last.parameters())
        for p in params:
            p.requires_grad_(True)
        return StageSetup(name, group, params, [branch] if name != "last_layer" else [], None)
    proto_id = id(branch.prototype_vectors)
    if name == "warmup":
        if head is None:
            raise ValueError("the warm-up stage needs its WarmupHead")
        params = [p for p in branch.parameters() if id(p) not in last_ids and id(p) != proto_id]
        params += list(head.parameters())
        train_modules = [branch, head]
    elif name == "joint":
        frozen = last_ids if not train_last_layer else set()
        if not train_backbone:
            frozen = frozen | {id(p) for p in branch.backbone.parameters()}
        params = [p for p in branch.parameters() if id(p) not in frozen]
        train_modules = [branch] if train_backbone else [branch.add_on]
    else:  # last_layer
        params = list(last.parameters())
        train_modules = []
        head = None
    for p in params:
        p.requires_grad_(True)
    return StageSetup(name, group, params, train_modules, head, last.weight.requires_grad)


def stage_loss(
    setup: StageSetup, model: torch.nn.Module, out: Any, y: torch.Tensor, criterion: torch.nn.Module
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch and its named terms (detached scalar tensors: reading them is left to the
    caller, once per epoch, so a GPU step needs no host sync). ``y``: (B, C_g) float targets of the
    branch's group.

    ``criterion`` is the branch's ``BranchLoss``: joint = BCE + clustering + separation +
    diversity + contrastive; last_layer = BCE + L1 on off-class last-layer weights;
    warm-up = BCE on the temporary head's logits (``out`` is then the latent tensor).
    The black-box twin: BCE on its own head's logits in every stage.
    """
    if setup.name == "warmup" and setup.head is not None:  # ``out`` is the latent only (no prototypes run)
        bce = bce_loss(setup.head(out), y, criterion.pos_weight)
        return bce, {"bce": bce.detach()}
    if model.kind == "blackbox":  # the twin's own linear head: BCE only
        bce = bce_loss(out.logits, y, criterion.pos_weight)
        return bce, {"bce": bce.detach()}
    terms = criterion(out, y, model.branches[setup.group], stage=setup.name,
                      with_last_layer_l1=setup.name == "joint" and setup.trains_last_layer)
    total = terms.pop("total")
    return total, {k: v.detach() for k, v in terms.items()}


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler of ``train.precision`` fp16 (None for fp32 and bf16, which need none);
    UserError for a precision the device cannot run."""
    check_precision(precision, device)
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def train_step(setup: StageSetup, model: torch.nn.Module, runner: torch.nn.Module, criterion: torch.nn.Module,
               optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
               scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step of a branch stage on device-resident ``x`` (B, 12, T) and ``y`` (B, C_g):
    forward and loss (under autocast for bf16/fp16; fp32 runs exactly the plain step), backward
    (scaled by ``scaler`` for fp16), optimizer step. Returns the detached loss and terms (tensors)."""
    with autocast(x.device, precision):
        loss, terms = stage_loss(setup, model, runner(x), y, criterion)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach(), terms


@torch.no_grad()
def predict_branch(
    model: torch.nn.Module,
    group: str,
    archive: Any,
    rows: np.ndarray,
    batch_size: int,
    head: WarmupHead | None = None,
    desc: str = "validate",
    output: Literal["logits", "similarities"] = "logits",
) -> np.ndarray:
    """Logits (N, C_g) float64 of branch ``group`` (or its warm-up head) on archive ``rows``, or with
    ``output="similarities"`` its pooled similarities (N, P_g) float32.

    Logits, not probabilities: AUROC only needs the ranking, and float32 sigmoids of large
    negative logits all round to 0 (ties would read as AUROC 0.5).
    """
    outs = []
    device = next(model.parameters()).device
    with eval_mode(model):
        if head is not None:
            head.eval()
        starts = range(0, len(rows), batch_size)
        for s in progress(starts, desc=f"{desc} {group}", total=len(starts), unit="batch"):
            r = rows[s : s + batch_size]
            x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32)).to(device, non_blocking=True)
            if output == "similarities":
                outs.append(branch_forward(model, group, x).similarities.float().cpu().numpy())
                continue
            logits = head(branch_latent(model, group, x)) if head is not None else branch_forward(model, group, x).logits
            outs.append(logits.double().cpu().numpy())
    if outs:
        return np.concatenate(outs)
    if output == "similarities":
        return np.zeros((0, model.branches[group].n_prototypes), np.float32)
    return np.zeros((0, len(label_table().indices(group))))


def selection_auroc(labels: np.ndarray, scores: np.ndarray, min_positives: int = 1) -> float:
    """Macro AUROC over the labels (columns of ``labels``/``scores``) with at least
    ``min_positives`` positives and one negative: the model-selection metric. Falls back to
    every defined label when none has that many positives."""
    y = np.asarray(labels) > 0
    keep = (y.sum(0) >= min_positives) & (y.sum(0) < len(y))
    if not keep.any():
        return macro_auroc(y, scores)
    return macro_auroc(y[:, keep], np.asarray(scores)[:, keep])


def validation_metrics(labels: np.ndarray, scores: np.ndarray, min_positives: int) -> dict[str, float]:
    """What every validation step logs for ``labels``/``scores`` (N, C): ``val_macro_auroc`` over
    every label with a positive and the model-selection metric ``val_selection``."""
    return {"val_macro_auroc": macro_auroc(labels, scores),
            "val_selection": selection_auroc(labels, scores, min_positives)}


def branch_auroc(labels: np.ndarray, scores: np.ndarray, group: str) -> float:
    """Dataset-level macro AUROC of branch ``group`` (labels (N,71) uint8, logits or probs (N,C_g))."""
    return macro_auroc(np.asarray(labels)[:, label_table().indices(group)], scores)


def make_optimizer(
    params: list[torch.nn.Parameter], lr: float, epochs: int, tcfg: TrainConfig, state: Any
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam (``tcfg.weight_decay``) and the configured schedule over ``epochs``, restored from a
    resumed run's ``state.optimizer`` / ``state.scheduler`` when those are set."""
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=tcfg.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        if tcfg.scheduler == "cosine" else None
    )
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    return optimizer, scheduler
