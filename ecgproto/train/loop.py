"""The staged training run: per branch (warm-up) → joint → projection → last layer, then fusion.

Every epoch ends with the dataset-level macro AUROC on the full validation fold; the best
epoch of each stage is restored when the stage ends (early stopping after ``patience``
epochs without improvement). After every epoch a resumable training state (phase, epoch,
weights, optimizer and scheduler state, best weights, RNG state, log) is written atomically to
``out_dir/train_state.pt``; ``resume=True`` continues from it and gives the same weights as an
uninterrupted run. Under torchrun, branch stages run in DistributedDataParallel.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from ecgproto.config import Config
from ecgproto.data.dataset import ArchiveDataset, Augmentation, make_loader, set_loader_epoch, split_indices
from ecgproto.data.labels import GROUPS, label_table
from ecgproto.progress import progress
from ecgproto.train import fusion as fusion_mod
from ecgproto.train.branch_io import BranchRunner
from ecgproto.train.checkpoint import atomic_torch_save, plain_state_dict
from ecgproto.train.config import StageConfig
from ecgproto.train.distributed import DistInfo, gather_rows, shard
from ecgproto.train.losses_adapter import build_branch_criterion, pos_weight_for
from ecgproto.train.projection import project_branch
from ecgproto.train.refit import refit_last_layer
from ecgproto.train.stages import (
    WarmupHead,
    make_optimizer,
    make_warmup_head,
    predict_branch,
    setup_stage,
    stage_loss,
    validation_metrics,
)

STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.csv"
STATE_FORMAT = "ecgproto-train-state"


@dataclass(frozen=True)
class Phase:
    """One step of the run: a stage of one branch, or the fusion head."""

    group: str | None  # None for fusion
    stage: StageConfig | None
    index: int = 0  # position of the stage in its branch's stage list

    @property
    def name(self) -> str:
        return "fusion" if self.group is None else f"{self.group}/{self.stage.name}"


def stage_seed(seed: int, group: str, index: int) -> int:
    """Seed of stage ``index`` of branch ``group``: independent of the other branches' stages."""
    return seed * 1000 + list(GROUPS).index(group) * 100 + index


def plan_phases(cfg: Config) -> list[Phase]:
    """Branch stages in branch order (stages with 0 epochs skipped, projection kept), then fusion.

    The black-box twin runs the same list minus the prototype stages (projection, prototype_init).
    """
    phases = []
    prototype_stages = ("projection", "prototype_init")
    for group in cfg.model.branches:
        for index, stage in enumerate(cfg.train.stages_for(group)):
            if stage.name in prototype_stages and cfg.model.kind == "blackbox":
                continue
            if stage.name in prototype_stages or stage.epochs > 0:
                phases.append(Phase(group, stage, index))
    phases.append(Phase(None, None))
    return phases


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
    log: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    projection: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Runs the phases of :func:`plan_phases` on ``model`` with data from ``archive``."""

    def __init__(
        self,
        cfg: Config,
        archive: Any,
        model: torch.nn.Module,
        out_dir: str | Path,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg
        self.archive = archive
        self.model = model
        self.out_dir = Path(out_dir)
        self.dist = dist_info or DistInfo()
        self.phases = plan_phases(cfg)
        self.state = RunState()
        self.rows = {s: split_indices(archive, s) for s in ("train", "val", "test")}
        self.train_labels = np.asarray(archive.labels[self.rows["train"]])
        self.val_labels = np.asarray(archive.labels[self.rows["val"]])
        self.n_samples = int(archive.signals.shape[-1])
        tcfg = cfg.train
        self.dataset = ArchiveDataset(
            archive, "train",
            Augmentation(tcfg.augment_scale, tcfg.augment_noise_mv, tcfg.augment_shift_samples),
            seed=cfg.seed,
        )

    # ----------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_NAME

    def save_state(self) -> None:
        """Write the resumable state atomically (rank 0 only)."""
        if not self.dist.is_main:
            return
        s = self.state
        payload = {
            "format": STATE_FORMAT,
            "config_hash": self.cfg.hash,
            "model": plain_state_dict(self.model),
            **{k: getattr(s, k) for k in (
                "phase", "epoch", "best_metric", "best_epoch", "bad_epochs", "best_model", "best_head",
                "optimizer", "scheduler", "head", "log", "provenance", "projection", "fusion",
            )},
            "rng": torch.random.get_rng_state(),
        }
        atomic_torch_save(payload, self.state_path)
        write_log(self.out_dir / LOG_NAME, self.state.log)

    def load_state(self) -> None:
        """Restore the state written by :meth:`save_state` (same config required)."""
        path = self.state_path
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {path}; start without --resume")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: not an ecgproto training state")
        if payload["config_hash"] != self.cfg.hash:
            raise ValueError(
                f"{path}: written with a different config (hash {payload['config_hash'][:12]} vs "
                f"{self.cfg.hash[:12]}); resume with the same config or use a new --out"
            )
        self.model.load_state_dict(payload["model"])
        for key in vars(self.state):
            setattr(self.state, key, payload[key])
        torch.random.set_rng_state(payload["rng"])

    # ----------------------------------------------------------------- run
    def run(self, max_epochs: int | None = None) -> bool:
        """Run (or continue) all phases; returns True when finished.

        ``max_epochs`` stops after that many epochs in this call (used to test resume).
        """
        budget = [max_epochs if max_epochs is not None else np.inf]
        while self.state.phase < len(self.phases):
            phase = self.phases[self.state.phase]
            if phase.group is None:
                done = self._run_fusion(budget)
            elif phase.stage.name in ("projection", "prototype_init"):
                self._run_projection(phase)
                done = True
            else:
                done = self._run_branch_stage(phase, budget)
            if not done:
                return False
            self.state = RunState(
                phase=self.state.phase + 1, log=self.state.log, provenance=self.state.provenance,
                projection=self.state.projection, fusion=self.state.fusion,
            )
            self.save_state()
        return True

    @property
    def signed_last_layers(self) -> bool:
        """Trained branch last layers keep the ``sign_constrained`` fusion head's sign rule (own class
        >= 0, other classes <= 0), so the fusion head can start exactly at them."""
        return self.model.kind == "prototype" and self.cfg.model.fusion.head == "sign_constrained"

    def _log(self, row: dict[str, Any]) -> None:
        self.state.log.append(row)

    def _val_metrics(self, group: str, head: WarmupHead | None) -> dict[str, float]:
        """Validation macro AUROC of branch ``group`` over every label with a positive
        (``val_macro_auroc``) and the selection metric (``val_selection``)."""
        rows = shard(self.rows["val"], self.dist)
        probs = predict_branch(self.model, group, self.archive, rows, self.cfg.train.eval_batch_size, head)
        probs = gather_rows(probs, self.dist)
        return validation_metrics(self.val_labels[:, label_table().indices(group)], probs,
                                  self.cfg.train.selection_min_positives)

    def _run_branch_stage(self, phase: Phase, budget: list[float]) -> bool:
        group, stage, tcfg = phase.group, phase.stage, self.cfg.train
        s = self.state
        if s.epoch == 0 and s.optimizer is None:
            # a fresh stage draws dropout/augmentation from its own seed, so one branch's
            # results do not depend on how much randomness the branches before it consumed
            torch.manual_seed(stage_seed(self.cfg.seed, group, phase.index))
        head = None
        if stage.name == "warmup" and self.model.kind == "prototype":
            head = make_warmup_head(self.model, group, self.n_samples, stage_seed(self.cfg.seed, group, phase.index))
            if s.head is not None:
                head.load_state_dict(s.head)
        setup = setup_stage(self.model, group, stage.name, head, stage.train_last_layer, stage.train_backbone)
        optimizer, scheduler = make_optimizer(setup.params, stage.lr, stage.epochs, tcfg, s)
        cols = label_table().indices(group)
        criterion = build_branch_criterion(self.model, group, self.train_labels, self.cfg.model.loss)
        signed_last_layer = self.signed_last_layers and setup.trains_last_layer
        runner: torch.nn.Module = BranchRunner(self.model, group, latent_only=head is not None)
        if self.dist.enabled:
            runner = DistributedDataParallel(runner)
        loader = make_loader(
            self.dataset, tcfg.batch_size, shuffle=True, seed=stage_seed(self.cfg.seed, group, phase.index),
            world_size=self.dist.world_size, rank=self.dist.rank,
        )
        if head is None and s.epoch == 0 and s.best_model is None:
            # the stage's starting point is a candidate too (not for a fresh warm-up head): a stage
            # must beat the branch it was given on validation to replace it, so no stage costs accuracy
            metrics = self._val_metrics(group, None)
            s.best_metric = metrics["val_selection"]
            s.best_model = plain_state_dict(self.model)
            self._log({"phase": phase.name, "branch": group, "stage": stage.name, "epoch": -1, "lr": 0.0,
                       **metrics, "best": True, "seconds": 0.0})
        while s.epoch < stage.epochs:
            if budget[0] <= 0:
                return False
            t0 = time.perf_counter()
            set_loader_epoch(loader, s.epoch)
            setup.train()
            sums: dict[str, float] = {}
            n_batches = 0
            for x, y, _ in progress(loader, desc=f"{phase.name} {s.epoch + 1}/{stage.epochs}", unit="batch"):
                yg = y[:, cols]
                out = runner(x)
                loss, terms = stage_loss(setup, self.model, out, yg, criterion)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if signed_last_layer:
                    self.model.branches[group].constrain_last_layer_signs()
                n_batches += 1
                for k, v in {"loss": float(loss.detach()), **terms}.items():
                    sums[k] = sums.get(k, 0.0) + v
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            metrics = self._val_metrics(group, head)
            metric = metrics["val_selection"]
            improved = metric > s.best_metric
            if improved:
                s.best_metric, s.best_epoch, s.bad_epochs = metric, s.epoch, 0
                s.best_model = plain_state_dict(self.model)
                s.best_head = plain_state_dict(head) if head is not None else None
            else:
                s.bad_epochs += 1
            self._log({
                "phase": phase.name, "branch": group, "stage": stage.name, "epoch": s.epoch, "lr": lr,
                **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
                **metrics, "best": improved, "seconds": time.perf_counter() - t0,
            })
            s.epoch += 1
            budget[0] -= 1
            stop = s.bad_epochs >= tcfg.patience
            if stop:
                s.epoch = stage.epochs
            s.optimizer = copy.deepcopy(optimizer.state_dict())
            s.scheduler = scheduler.state_dict() if scheduler is not None else None
            s.head = plain_state_dict(head) if head is not None else None
            if s.epoch < stage.epochs:
                self.save_state()
        if s.best_model is not None:
            self.model.load_state_dict(s.best_model)
        self.model.requires_grad_(False)
        self.model.eval()
        return True

    def _run_projection(self, phase: Phase) -> None:
        group = phase.group
        t0 = time.perf_counter()
        prov, missing, shared = project_branch(
            self.model, group, self.archive, self.rows["train"],
            batch_size=self.cfg.train.eval_batch_size, unique=self.cfg.train.unique_projection,
        )
        if phase.stage.name == "projection":  # prototype_init: a starting point only, no provenance
            self._record_projection(group, prov, missing, shared)
        self._log({
            "phase": phase.name, "branch": group, "stage": phase.stage.name, "epoch": 0,
            **self._val_metrics(group, None), "best": False, "seconds": time.perf_counter() - t0,
        })
        if phase.stage.refit_epochs > 0:
            t0 = time.perf_counter()
            cols = label_table().indices(group)
            best_epoch = refit_last_layer(
                self.model, group, self.archive, {"train": self.rows["train"], "val": self.rows["val"]},
                pos_weight_for(self.train_labels[:, cols], self.cfg.model.loss.pos_weight_cap),
                phase.stage.refit_epochs, phase.stage.lr, self.cfg.model.loss.l1_last_layer,
                self.cfg.train.cached_patience, self.cfg.train.eval_batch_size,
                signed=self.signed_last_layers,
                min_positives=self.cfg.train.selection_min_positives,
            )
            self._log({
                "phase": phase.name, "branch": group, "stage": "last_layer_refit", "epoch": best_epoch,
                **self._val_metrics(group, None), "best": True, "seconds": time.perf_counter() - t0,
            })

    def _record_projection(self, group: str, prov: list[dict[str, Any]], missing: int, shared: int) -> None:
        self.state.provenance[group] = prov
        self.state.projection[group] = {
            "unique_source_ecgs": len({p["ecg_id"] for p in prov if p["ecg_id"] is not None}),
            "n_prototypes": len(prov),
            "not_projected": missing,
            "shared_fallback": shared,
        }

    def _run_fusion(self, budget: list[float]) -> bool:
        return fusion_mod.run_fusion(self, budget)


def write_log(path: Path, log: list[dict[str, Any]]) -> None:
    """``train_log.csv``: one row per epoch of each phase (rewritten atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(log).to_csv(tmp, index=False)
    os.replace(tmp, path)
