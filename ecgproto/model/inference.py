"""Batched, gradient-free prediction over arrays of 12-lead signals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecgproto.model.fold import fold_batchnorm
from ecgproto.model.network import ProtoECGNet
from ecgproto.progress import progress


@dataclass
class Prediction:
    """Model outputs for N records.

    probs (N, 71) fused probabilities (label order ``all_labels()``); branch_probs
    {group: (N, C_g)} from each branch's own last layer; similarities (N, P_total) pooled
    prototype similarities (columns = ``prototype_table().index``); best_windows
    {group: (N, P_g) int64} most similar window per prototype (``branch.window_samples(w)``
    maps it to input samples).
    """

    probs: np.ndarray
    branch_probs: dict[str, np.ndarray]
    similarities: np.ndarray
    best_windows: dict[str, np.ndarray]


def predict_arrays(model: ProtoECGNet, signals: np.ndarray, batch_size: int = 256,
                   device: torch.device | str | None = None, fold: bool = True) -> Prediction:
    """Run ``model`` on signals (N, 12, n_samples) float mV (memmap is fine) in eval mode, no grad.

    ``device``: where the batches run (None = the model's device). ``fold`` (default): the batches
    run through ``fold_batchnorm(model)``, an eval-mode copy with BatchNorm fused into the
    convolutions (same outputs to ~1e-6, faster on the CPU), moved to ``device``; ``model`` itself
    is then not touched at all. ``fold=False``: the model itself is moved to ``device`` and put
    in eval mode for the call. Either way the model's train/eval mode and device are as before.
    """
    if signals.ndim != 3 or signals.shape[1] != 12:
        raise ValueError(f"signals must be shaped (N, 12, T), got {tuple(signals.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = signals.shape[0]
    home = next(model.parameters()).device
    device = home if device is None else torch.device(device)
    groups = list(model.branches)
    probs, sims = [], []
    branch_probs: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    best: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    was_training = model.training
    runner = fold_batchnorm(model).to(device) if fold else model.eval().to(device)
    try:
        with torch.no_grad():
            starts = range(0, n, batch_size)
            for start in progress(starts, desc="predict", total=len(starts), unit="batch"):
                batch = np.ascontiguousarray(signals[start:start + batch_size], dtype=np.float32)
                out = runner(torch.from_numpy(batch).to(device, non_blocking=True))
                probs.append(torch.sigmoid(out.logits).cpu().numpy())
                sims.append(out.similarities.cpu().numpy())
                for g in groups:
                    branch_probs[g].append(torch.sigmoid(out.branch[g].logits).cpu().numpy())
                    best[g].append(out.branch[g].window_similarities.argmax(dim=-1).cpu().numpy())
    finally:
        if not fold:
            model.to(home)
            model.train(was_training)

    def cat(parts: list[np.ndarray], width: int, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, width), dtype=dtype)

    return Prediction(
        probs=cat(probs, len(model.labels), np.float32),
        branch_probs={g: cat(branch_probs[g], model.branches[g].n_classes, np.float32) for g in groups},
        similarities=cat(sims, model.n_prototypes, np.float32),
        best_windows={g: cat(best[g], model.branches[g].n_prototypes, np.int64) for g in groups},
    )
