"""The epoch loop every trainable phase shares: epoch budget, model selection, early stopping.

A phase — a branch stage (:class:`ecgproto.train.loop.BranchStage`) or the fusion head
(:class:`ecgproto.train.fusion.FusionStage`) — implements :class:`EpochStage`;
:func:`run_epochs` does the bookkeeping once: the starting point as a candidate (epoch -1),
the best epoch by the validation selection metric, ``patience`` epochs without improvement,
the ``--max-epochs`` budget, the resumable :class:`RunState` and the best weights restored
at the end.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class RunState:
    """Everything needed to continue a run after the last completed epoch."""

    phase: int = 0
    epoch: int = 0
    best_metric: float = -np.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_model: dict[str, torch.Tensor] | None = None
    best_head: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    head: dict[str, torch.Tensor] | None = None
    scaler: dict[str, Any] | None = None  # fp16 GradScaler (loss scale and its growth tracker)
    log: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    projection: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)


class EpochBudget:
    """Epochs this call may still run (``--max-epochs``; None = no limit)."""

    def __init__(self, max_epochs: int | None = None) -> None:
        self.left: float = math.inf if max_epochs is None else max_epochs

    @property
    def exhausted(self) -> bool:
        return self.left <= 0

    def spend(self) -> None:
        self.left -= 1


@dataclass(frozen=True)
class Snapshot:
    """Optimizer, scheduler, (warm-up) head and fp16 loss-scaler state after an epoch, for a resumed run."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    head: dict[str, torch.Tensor] | None = None
    scaler: dict[str, Any] | None = None


class EpochStage(ABC):
    """One trainable phase as :func:`run_epochs` drives it."""

    phase: str  # log name, e.g. "rhythm/joint" or "fusion"
    branch: str
    stage: str
    epochs: int
    patience: int
    # True: the state is saved after every epoch (slow branch epochs); False: only when the
    # budget runs out (the fusion head's epochs on cached features take milliseconds)
    save_each_epoch: bool = True
    # whether the starting weights compete with the trained epochs (not for a fresh warm-up head)
    start_is_candidate: bool = True

    @abstractmethod
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch; returns ``lr`` and the ``train_*`` means for the log."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """``val_macro_auroc`` and ``val_selection`` (the metric the best epoch is chosen by)."""

    @abstractmethod
    def best_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Copies of the weights to keep if this epoch is the best: (model, warm-up head or None)."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Optimizer/scheduler/head state to resume from."""

    @abstractmethod
    def restore(self, best_model: dict[str, torch.Tensor] | None) -> None:
        """Load the best weights and freeze the model (eval mode) when the phase ends."""


def run_epochs(stage: EpochStage, state: RunState, budget: EpochBudget,
               log: Callable[[dict[str, Any]], None], save: Callable[[], None]) -> bool:
    """Run (or continue) ``stage`` until its epochs are done or it stops early; False when the
    budget ran out first (``state`` then holds what a resumed run continues from)."""
    s = state
    if stage.start_is_candidate and s.epoch == 0 and s.best_model is None:
        # a phase must beat the weights it was given on validation to replace them
        metrics = stage.validate()
        s.best_metric, s.best_epoch = metrics["val_selection"], -1
        s.best_model, _ = stage.best_weights()
        log({"phase": stage.phase, "branch": stage.branch, "stage": stage.stage, "epoch": -1, "lr": 0.0,
             **metrics, "best": True, "seconds": 0.0})
    while s.epoch < stage.epochs:
        if budget.exhausted:
            if not stage.save_each_epoch:
                _keep(s, stage.snapshot())
                save()
            return False
        t0 = time.perf_counter()
        terms = stage.train_epoch(s.epoch)
        metrics = stage.validate()
        metric = metrics["val_selection"]
        improved = metric > s.best_metric
        if improved:
            s.best_metric, s.best_epoch, s.bad_epochs = metric, s.epoch, 0
            s.best_model, s.best_head = stage.best_weights()
        else:
            s.bad_epochs += 1
        log({"phase": stage.phase, "branch": stage.branch, "stage": stage.stage, "epoch": s.epoch, **terms,
             **metrics, "best": improved, "seconds": time.perf_counter() - t0})
        s.epoch += 1
        budget.spend()
        if s.bad_epochs >= stage.patience:
            s.epoch = stage.epochs
        if stage.save_each_epoch:
            _keep(s, stage.snapshot())
            if s.epoch < stage.epochs:
                save()
    stage.restore(s.best_model)
    return True


def _keep(state: RunState, snap: Snapshot) -> None:
    state.optimizer, state.scheduler, state.head, state.scaler = snap.optimizer, snap.scheduler, snap.head, snap.scaler
