"""``train_model``: build the model, run every phase, write checkpoint, log and summary.

Outputs in ``out_dir`` (rank 0 only): ``model.pt`` (checkpoint), ``train_log.csv`` (one row
per epoch and phase), ``train_summary.json`` (validation and test-fold macro AUROC of the
fused model and of each branch, timings, projection counts), ``prototypes.csv`` (provenance
of every prototype) and ``train_state.pt``
(resumable training state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgproto import __version__
from ecgproto.atomic import write_atomic, write_json_atomic
from ecgproto.config import Config
from ecgproto.yaml_dataclass import to_dict
from ecgproto.data.labels import all_labels, label_statistics, label_table
from ecgproto.metrics import macro_auroc
from ecgproto.model.ood import extract_ood_features, fit_ood
from ecgproto.model.checkpoint import finite_or_none, save_checkpoint
from ecgproto.train.distributed import DistInfo, gather_rows, process_device, shard
from ecgproto.train.fusion import fusion_logits
from ecgproto.train.loop import LOG_NAME, Trainer, write_log
from ecgproto.train.criterion import cooccurrence_for
from ecgproto.train.projection import provenance_frame
from ecgproto.train.stages import branch_auroc, predict_branch

MODEL_NAME = "model.pt"
SUMMARY_NAME = "train_summary.json"
PROTOTYPES_NAME = "prototypes.csv"


@dataclass
class TrainOutcome:
    """The trained model (eval mode, on the CPU) and the summary written to ``train_summary.json``."""

    model: torch.nn.Module
    summary: dict[str, Any]


def configure_torch(cfg: Config, device: torch.device | None = None) -> None:
    """Threads, seeds and deterministic algorithms for a reproducible CPU run; on a GPU, cuDNN's
    autotuner instead (GPU runs are seeded, not bit-for-bit reproducible)."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if device is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif cfg.train.deterministic and not torch.are_deterministic_algorithms_enabled():
        # public API; it also imports torch's compiler config (about 1-5 s once per process)
        torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(cfg: Config, archive: Any) -> torch.nn.Module:
    """Seeded network (``model.kind``) for the archive's rate/length, with train-split standardisation."""
    from ecgproto.model import build_network
    from ecgproto.model.pretrained import apply_pretrained

    torch.manual_seed(cfg.seed)
    model = build_network(cfg.model, n_samples=int(archive.signals.shape[-1]), fs=int(archive.fs))
    apply_pretrained(model)  # branches with model.branches.<group>.pretrained set (local ImageNet file)
    if archive.standardization is not None:
        model.set_standardization(archive.standardization["mean"], archive.standardization["std"])
    return model


def checkpoint_meta(trainer: Trainer, val_metrics: dict[str, Any]) -> dict[str, Any]:
    """Plain-data meta of the finished model (keys listed in HELPERS.md)."""
    cfg, archive, s = trainer.cfg, trainer.archive, trainer.state
    table = label_table()
    prototypes = [p for g in trainer.model.branches for p in s.provenance.get(g, [])]
    if not prototypes:  # branches without a projection stage: provenance rows without a source
        prototypes = [
            {**row, "ecg_id": None, "window_start": None, "window_end": None, "rf_start": None,
             "rf_end": None, "similarity": None}
            for row in trainer.model.prototype_table().to_dict("records")
        ]
    return {
        "package_version": __version__,
        "config": to_dict(cfg),
        "config_hash": cfg.hash,
        "labels": list(all_labels()),
        "groups": {g: list(table.groups[g]) for g in table.groups},
        "sampling_rate": int(archive.fs),
        "n_samples": int(archive.signals.shape[-1]),
        "highpass": {"cutoff_hz": cfg.data.highpass_hz, "order": cfg.data.highpass_order, "edge": cfg.data.highpass_edge},
        "standardization": archive.standardization,
        "model_kind": cfg.model.kind,
        "cooccurrence": {g: cooccurrence_for(trainer.train_labels, g).tolist() for g in trainer.model.branches},
        "label_stats": label_statistics(trainer.train_labels),
        "prototypes": sorted(prototypes, key=lambda p: p["index"]),
        "projection": s.projection,
        "thresholds": s.fusion.get("thresholds", [0.5] * len(all_labels())),
        "threshold_rules": s.fusion.get("threshold_rules"),
        "fusion_normalization": s.fusion.get("normalization"),
        "val_metrics": val_metrics,
        "data_key": getattr(archive, "key", None),
        "ood": fit_ood_detector(trainer) if trainer.model.n_prototypes else None,
    }


def fit_ood_detector(trainer: Trainer) -> dict[str, Any]:
    """OOD calibration (:func:`ecgproto.model.ood.fit_ood`): distance fitted on the training records,
    threshold at ``train.ood_flag_rate`` of the validation records."""
    model, archive, batch = trainer.model, trainer.archive, trainer.cfg.train.eval_batch_size
    features = {split: extract_ood_features(model, archive.signals, trainer.rows[split], batch)
                for split in ("train", "val")}
    return fit_ood(features["train"], features["val"], trainer.cfg.train.ood_flag_rate,
                   branches=list(model.branches), fs=int(archive.fs))


def evaluate_splits(trainer: Trainer) -> dict[str, dict[str, float | None]]:
    """Macro AUROC of the fused model and of each branch on the validation and test folds."""
    out: dict[str, dict[str, float | None]] = {}
    feats = trainer.fusion_features()
    for split in ("val", "test"):
        labels = np.asarray(trainer.archive.labels[trainer.rows[split]])
        metrics = {"fused": finite_or_none(macro_auroc(labels, fusion_logits(trainer.model, feats[split])))}
        for g in trainer.model.branches:
            probs = predict_branch(trainer.model, g, trainer.archive, shard(trainer.rows[split], trainer.dist),
                                   trainer.cfg.train.eval_batch_size, desc=f"evaluate {split}")
            metrics[g] = finite_or_none(branch_auroc(labels, gather_rows(probs, trainer.dist), g))
        out[split] = metrics
    return out


def train_model(
    cfg: Config,
    archive: Any,
    out_dir: str | Path,
    resume: bool = False,
    dist_info: DistInfo | None = None,
    max_epochs: int | None = None,
) -> TrainOutcome | None:
    """Train all branches and the fusion head (None when stopped early by ``max_epochs``)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_torch(cfg, process_device(cfg.device, dist_info or DistInfo()))
    model = build_model(cfg, archive)
    trainer = Trainer(cfg, archive, model, out_dir, dist_info)
    if resume:
        trainer.load_state()
    if not trainer.run(max_epochs=max_epochs):
        return None
    metrics = evaluate_splits(trainer)
    summary = {
        "macro_auroc": metrics,
        "thresholds_tuned_on": "val",
        "projection": trainer.state.projection,
        "n_records": {k: int(len(v)) for k, v in trainer.rows.items()},
        "n_prototypes": int(model.n_prototypes),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "world_size": trainer.dist.world_size,
        "device": str(trainer.device),
        "precision": cfg.train.precision,
        "seconds_this_call": round(time.perf_counter() - t0, 2),
        "seconds_training_total": round(sum(float(r.get("seconds", 0.0)) for r in trainer.state.log), 2),
        "config_hash": cfg.hash,
    }
    if trainer.dist.is_main:
        meta = checkpoint_meta(trainer, metrics["val"])
        save_checkpoint(out_dir / MODEL_NAME, model, meta)
        write_log(out_dir / LOG_NAME, trainer.state.log)
        frame = provenance_frame(meta["prototypes"])
        write_atomic(out_dir / PROTOTYPES_NAME, lambda tmp: frame.to_csv(tmp, index=False))
        write_json_atomic(out_dir / SUMMARY_NAME, summary, default=str)
    return TrainOutcome(model.cpu(), summary)
