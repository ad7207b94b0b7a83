"""The staged training run: per branch (warm-up) → joint → projection → last layer, then fusion.

Every epoch ends with the dataset-level macro AUROC on the full validation fold; the best
epoch of each stage is restored when the stage ends (early stopping after ``patience``
epochs without improvement) — the bookkeeping of :func:`ecgproto.train.epochs.run_epochs`,
shared by :class:`BranchStage` and :class:`ecgproto.train.fusion.FusionStage`. A resumable
training state (phase, epoch, weights, optimizer and scheduler state, best weights, RNG state,
log) is written atomically to ``out_dir/train_state.pt`` after every branch epoch, every phase
and when ``--max-epochs`` stops a run; ``resume=True`` continues from it and gives the same
weights as an uninterrupted run. Under torchrun, branch stages run in DistributedDataParallel.
The model and the batches live on the config's ``device`` (``--device``); a branch step runs in
``train.precision`` (:func:`ecgproto.train.stages.train_step`), its loss terms stay on the device
and are read once per epoch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from ecgproto.atomic import write_atomic
from ecgproto.config import Config, replace
from ecgproto.data.dataset import ArchiveDataset, Augmentation, make_loader, set_loader_epoch, split_indices
from ecgproto.data.labels import GROUPS, label_table
from ecgproto.device import check_precision
from ecgproto.errors import InputNotFoundError, UserError
from ecgproto.model.checkpoint import atomic_torch_save, plain_state_dict
from ecgproto.progress import progress
from ecgproto.train.branch_forward import BranchRunner
from ecgproto.train.config import StageConfig
from ecgproto.train.criterion import build_branch_criterion, pos_weight_for
from ecgproto.train.distributed import DistInfo, broadcast_module, gather_rows, process_device, shard
from ecgproto.train.epochs import EpochBudget, EpochStage, RunState, Snapshot, run_epochs
from ecgproto.train.fusion import FusionStage, similarity_features
from ecgproto.train.projection import BranchProjection, project_branch
from ecgproto.train.refit import refit_last_layer
from ecgproto.train.stages import (
    WarmupHead,
    make_grad_scaler,
    make_optimizer,
    make_warmup_head,
    predict_branch,
    setup_stage,
    train_step,
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


def resume_hash(cfg: Config) -> str:
    """The config hash a resumed run must match: the device is left out (a run started on one
    device may continue on another)."""
    return replace(cfg, device="auto").hash


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
        self.device = process_device(cfg.device, self.dist)
        check_precision(cfg.train.precision, self.device)
        self.model = model.to(self.device)
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
        self._fusion_features: dict[str, np.ndarray] | None = None

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
            "config_hash": resume_hash(self.cfg),
            "model": plain_state_dict(self.model),
            **{k: getattr(s, k) for k in (
                "phase", "epoch", "best_metric", "best_epoch", "bad_epochs", "best_model", "best_head",
                "optimizer", "scheduler", "head", "scaler", "log", "provenance", "projection", "fusion",
            )},
            "rng": torch.random.get_rng_state(),
        }
        atomic_torch_save(payload, self.state_path)
        write_log(self.out_dir / LOG_NAME, self.state.log)

    def load_state(self) -> None:
        """Restore the state written by :meth:`save_state` (same config required)."""
        path = self.state_path
        if not path.is_file():
            raise InputNotFoundError(f"--resume: no training state at {path}; start without --resume")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != STATE_FORMAT:
            raise UserError(f"{path}: not an ecgproto training state")
        if payload["config_hash"] != resume_hash(self.cfg):
            raise UserError(
                f"{path}: written with a different config (hash {payload['config_hash'][:12]} vs "
                f"{resume_hash(self.cfg)[:12]}); resume with the same config or use a new --out"
            )
        self.model.load_state_dict(payload["model"])
        fresh = RunState()
        for key in vars(self.state):  # a state written before a field existed keeps its default
            setattr(self.state, key, payload.get(key, getattr(fresh, key)))
        torch.random.set_rng_state(payload["rng"])

    # ----------------------------------------------------------------- run
    def run(self, max_epochs: int | None = None) -> bool:
        """Run (or continue) all phases; returns True when finished.

        ``max_epochs`` stops after that many epochs in this call (used to test resume).
        """
        budget = EpochBudget(max_epochs)
        while self.state.phase < len(self.phases):
            phase = self.phases[self.state.phase]
            if phase.group is None:
                done = self._run_fusion(budget)
            elif phase.stage.name in ("projection", "prototype_init"):
                self._run_projection(phase)
                done = True
            else:
                done = run_epochs(BranchStage(self, phase), self.state, budget, self._log, self.save_state)
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

    def val_metrics(self, group: str, head: WarmupHead | None) -> dict[str, float]:
        """Validation macro AUROC of branch ``group`` over every label with a positive
        (``val_macro_auroc``) and the selection metric (``val_selection``)."""
        rows = shard(self.rows["val"], self.dist)
        probs = predict_branch(self.model, group, self.archive, rows, self.cfg.train.eval_batch_size, head)
        probs = gather_rows(probs, self.dist)
        return validation_metrics(self.val_labels[:, label_table().indices(group)], probs,
                                  self.cfg.train.selection_min_positives)

    def _run_projection(self, phase: Phase) -> None:
        group = phase.group
        t0 = time.perf_counter()
        result = project_branch(
            self.model, group, self.archive, self.rows["train"],
            batch_size=self.cfg.train.eval_batch_size, unique=self.cfg.train.unique_projection,
        )
        broadcast_module(self.model.branches[group], self.dist)  # every rank keeps rank 0's prototypes
        if phase.stage.name == "projection":  # prototype_init: a starting point only, no provenance
            self._record_projection(group, result)
        self._log({
            "phase": phase.name, "branch": group, "stage": phase.stage.name, "epoch": 0,
            **self.val_metrics(group, None), "best": False, "seconds": time.perf_counter() - t0,
        })
        if phase.stage.refit_epochs > 0:
            t0 = time.perf_counter()
            cols = label_table().indices(group)
            best_epoch = refit_last_layer(
                self.model, group, self.archive, {"train": self.rows["train"], "val": self.rows["val"]},
                pos_weight_for(self.train_labels[:, cols], self.cfg.model.loss),
                phase.stage.refit_epochs, phase.stage.lr, self.cfg.model.loss.l1_last_layer,
                self.cfg.train.cached_patience, self.cfg.train.eval_batch_size,
                signed=self.signed_last_layers,
                min_positives=self.cfg.train.selection_min_positives,
            )
            broadcast_module(self.model.branches[group].last_layer, self.dist)
            self._log({
                "phase": phase.name, "branch": group, "stage": "last_layer_refit", "epoch": best_epoch,
                **self.val_metrics(group, None), "best": True, "seconds": time.perf_counter() - t0,
            })

    def _record_projection(self, group: str, result: BranchProjection) -> None:
        self.state.provenance[group] = result.provenance
        self.state.projection[group] = result.summary()

    def fusion_features(self) -> dict[str, np.ndarray]:
        """What the fusion head reads for every split, computed once per process (sharded across ranks)."""
        if self._fusion_features is None:
            self._fusion_features = {
                split: gather_rows(similarity_features(self.model, self.archive, shard(self.rows[split], self.dist),
                                                       self.cfg.train.eval_batch_size, f"features {split}"), self.dist)
                for split in ("train", "val", "test")
            }
        return self._fusion_features

    def _run_fusion(self, budget: EpochBudget) -> bool:
        stage = FusionStage(self.cfg, self.model, self.fusion_features(), self.train_labels, self.val_labels,
                            self.state, seed=self.cfg.seed * 100 + self.state.phase)
        if not run_epochs(stage, self.state, budget, self._log, self.save_state):
            return False
        self.state.fusion.update(stage.finish(), best_epoch=self.state.best_epoch)
        return True


class BranchStage(EpochStage):
    """A trainable stage of one branch (warm-up, joint, last layer) as :func:`run_epochs` drives it.

    Creating it seeds a fresh stage from its own seed (so one branch's results do not depend on
    how much randomness the branches before it consumed), builds the warm-up head, freezes what
    the stage does not train, and restores the optimizer of a resumed stage.
    """

    def __init__(self, trainer: Trainer, phase: Phase) -> None:
        group, stage, tcfg, s = phase.group, phase.stage, trainer.cfg.train, trainer.state
        model, seed = trainer.model, stage_seed(trainer.cfg.seed, phase.group, phase.index)
        self.trainer, self.model, self.group = trainer, model, group
        self.phase, self.branch, self.stage = phase.name, group, stage.name
        self.epochs, self.patience = stage.epochs, tcfg.patience
        if s.epoch == 0 and s.optimizer is None:
            torch.manual_seed(seed)
        self.head: WarmupHead | None = None
        if stage.name == "warmup" and model.kind == "prototype":
            self.head = make_warmup_head(model, group, trainer.n_samples, seed)
            if s.head is not None:
                self.head.load_state_dict(s.head)
        self.start_is_candidate = self.head is None
        self.setup = setup_stage(model, group, stage.name, self.head, stage.train_last_layer, stage.train_backbone)
        self.optimizer, self.scheduler = make_optimizer(self.setup.params, stage.lr, stage.epochs, tcfg, s)
        self.cols = label_table().indices(group)
        device = trainer.device
        self.criterion = build_branch_criterion(model, group, trainer.train_labels, trainer.cfg.model.loss).to(device)
        self.signed_last_layer = trainer.signed_last_layers and self.setup.trains_last_layer
        runner: torch.nn.Module = BranchRunner(model, group, latent_only=self.head is not None)
        if trainer.dist.enabled:
            runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
        self.runner = torch.compile(runner) if tcfg.compile else runner
        self.precision, self.scaler = tcfg.precision, make_grad_scaler(tcfg.precision, device)
        if self.scaler is not None and s.scaler is not None:  # a resumed fp16 stage keeps its loss scale
            self.scaler.load_state_dict(s.scaler)
        self.loader = make_loader(trainer.dataset, tcfg.batch_size, shuffle=True, seed=seed,
                                  world_size=trainer.dist.world_size, rank=trainer.dist.rank,
                                  num_workers=tcfg.num_workers, pin_memory=tcfg.pin_memory and device.type == "cuda")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        set_loader_epoch(self.loader, epoch)
        self.setup.train()
        device = self.trainer.device
        sums: dict[str, torch.Tensor] = {}  # float64 on the device: read once, after the epoch
        n_batches = 0
        for x, y, _ in progress(self.loader, desc=f"{self.phase} {epoch + 1}/{self.epochs}", unit="batch"):
            x, y = x.to(device, non_blocking=True), y[:, self.cols].to(device, non_blocking=True)
            loss, terms = train_step(self.setup, self.model, self.runner, self.criterion, self.optimizer, x, y,
                                     self.precision, self.scaler)
            if self.signed_last_layer:
                self.model.branches[self.group].constrain_last_layer_signs()
            n_batches += 1
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.double()
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        return {"lr": lr, **{f"train_{k}": float(v) / max(n_batches, 1) for k, v in sums.items()}}

    def validate(self) -> dict[str, float]:
        return self.trainer.val_metrics(self.group, self.head)

    def best_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        return plain_state_dict(self.model), plain_state_dict(self.head) if self.head is not None else None

    def snapshot(self) -> Snapshot:
        return Snapshot(copy.deepcopy(self.optimizer.state_dict()),
                        self.scheduler.state_dict() if self.scheduler is not None else None,
                        plain_state_dict(self.head) if self.head is not None else None,
                        self.scaler.state_dict() if self.scaler is not None else None)

    def restore(self, best_model: dict[str, torch.Tensor] | None) -> None:
        if best_model is not None:
            self.model.load_state_dict(best_model)
        self.model.requires_grad_(False)
        self.model.eval()


def write_log(path: Path, log: list[dict[str, Any]]) -> None:
    """``train_log.csv``: one row per epoch of each phase (rewritten atomically)."""
    frame = pd.DataFrame(log)
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
