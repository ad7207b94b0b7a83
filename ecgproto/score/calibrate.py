"""(Re-)calibrate a checkpoint's OOD detector on a PTB-XL-layout folder, after training.

``ecgproto score CHECKPOINT DATA --calibrate-ood --out OUT`` reads the training folds
(``data.train_folds`` of the checkpoint's config) and the validation folds (``data.val_folds``)
of the PTB-XL-layout folder DATA (the real PTB-XL or the synthetic archive's ``ptbxl/``) with
the scorer's own preprocessing, fits :func:`ecgproto.model.ood.fit_ood` (distance on the
training folds' readable records, flag threshold on the validation folds') and writes
``OUT/<checkpoint stem>.ood.pt`` (the same model, ``meta["ood"]`` replaced) and
``OUT/ood_calibration.json``. ``ecgproto train`` stores the same calibration itself; this
re-fits it, e.g. for a checkpoint from before checkpoint format 2 or at another flag rate.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ecgproto.atomic import write_json_atomic
from ecgproto.device import resolve_device
from ecgproto.model.checkpoint import load_checkpoint, save_checkpoint
from ecgproto.model.ood import band_edges, feature_width, fit_ood
from ecgproto.progress import progress
from ecgproto.score.scorer import ScoreOptions
from ecgproto.score.sources import list_records
from ecgproto.data.preprocess import Preprocessing
from ecgproto.score.worker import forward_with_ood, read_batch
from ecgproto.errors import UserError


def folder_features(model: torch.nn.Module, prep: Preprocessing, paths: list[str],
                    batch_size: int = 64, desc: str = "OOD features") -> tuple[np.ndarray, int]:
    """OOD features (n_ok, F) of the readable records among ``paths`` and the number unreadable."""
    edges = tuple(band_edges(prep.fs))
    parts, n_bad = [np.zeros((0, feature_width(model, edges)))], 0
    starts = range(0, len(paths), batch_size)
    for start in progress(starts, desc=desc, total=len(starts), unit="batch"):
        batch = read_batch(paths[start:start + batch_size], prep)
        n_bad += sum(s != "ok" for s in batch.status)
        if len(batch.signals):
            parts.append(forward_with_ood(model, batch.signals, edges)[2])
    return np.concatenate(parts), n_bad


def calibrate_checkpoint(checkpoint: str | Path, data_root: str | Path, out_dir: str | Path,
                         flag_rate: float = 0.05, options: ScoreOptions = ScoreOptions()) -> Path:
    """Fit the OOD detector on the training and validation folds of ``data_root``; write the calibrated
    checkpoint. ``options``: ``batch_size``, ``threads`` and ``device`` are used. Returns ``OUT/<stem>.ood.pt``."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    device = resolve_device(options.device)
    model, meta = load_checkpoint(checkpoint)
    if model.kind == "blackbox":
        raise UserError(f"{checkpoint}: a black-box twin (model.kind: blackbox) has no OOD detector (its scores "
                         "carry no OOD columns); there is nothing to calibrate")
    prep = Preprocessing.from_meta(meta)
    data = meta["config"]["data"]
    folds = {"training": tuple(int(f) for f in data["train_folds"]),
             "validation": tuple(int(f) for f in data["val_folds"])}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(options.threads or os.cpu_count() or 1)  # one process reads and runs the model
    model.to(device)
    try:
        features, unreadable = {}, {}
        for split, split_folds in folds.items():
            records = list_records(data_root, prep.fs, "ptbxl", None, split_folds)
            features[split], unreadable[split] = folder_features(
                model, prep, records.frame["path"].tolist(), options.batch_size, f"OOD features ({split})")
            if len(features[split]) < 2:
                raise UserError(f"{data_root}: only {len(features[split])} readable {split} records (folds "
                                 f"{list(split_folds)}); cannot calibrate the OOD score")
    finally:
        torch.set_num_threads(threads_before)
    calib = fit_ood(features["training"], features["validation"], flag_rate, branches=list(model.branches),
                    fs=prep.fs)
    calib["source"] = {"data": str(Path(data_root).resolve()), "train_folds": list(folds["training"]),
                       "val_folds": list(folds["validation"]), "n_unreadable": unreadable}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{checkpoint.stem}.ood.pt"
    save_checkpoint(target, model, {**meta, "ood": calib})
    report = {k: v for k, v in calib.items() if k not in ("quantiles", "mean", "scale", "precision")}
    write_json_atomic(out_dir / "ood_calibration.json", {**report, "checkpoint": str(target)}, indent=1)
    return target
