"""Calibrate a checkpoint's OOD flag on its validation fold, after training.

Training does not store ``meta["ood"]`` itself, so ``ecgproto score CHECKPOINT DATA
--calibrate-ood --out OUT`` scores the validation folds (``data.val_folds`` of the
checkpoint's config) of the PTB-XL-layout folder DATA (the real PTB-XL or the
synthetic archive's ``ptbxl/``) with the regular scoring pipeline, fits
:func:`ecgproto.score.ood.calibrate_ood` on the similarities of the good records and
writes ``OUT/<checkpoint stem>.ood.pt`` (the same model, ``meta["ood"]`` added) and
``OUT/ood_calibration.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.score.ood import calibrate_ood
from ecgproto.score.scorer import ScoreOptions, file_sha256, score_model
from ecgproto.score.store import SCORES_PARQUET, SIMILARITIES_PARQUET


def calibrate_checkpoint(checkpoint: str | Path, data_root: str | Path, out_dir: str | Path,
                         flag_rate: float = 0.05, options: ScoreOptions = ScoreOptions()) -> Path:
    """Score the validation folds of ``data_root``, fit the OOD calibration, write the calibrated checkpoint.

    Returns the path of ``OUT/<stem>.ood.pt``.
    """
    from ecgproto.train.checkpoint import load_checkpoint, save_checkpoint

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found; give the .pt file written by `ecgproto train`")
    model, meta = load_checkpoint(checkpoint)
    if model.kind == "blackbox":
        raise ValueError(f"{checkpoint}: a black-box twin (model.kind: blackbox) has no prototypes, and the OOD score "
                         "is built from prototype similarities; there is nothing to calibrate")
    val_folds = tuple(int(f) for f in meta["config"]["data"]["val_folds"])
    run_dir = out_dir / "ood_validation_scores"
    run_options = dataclasses.replace(options, save_similarities=True, input_kind="ptbxl", folds=val_folds,
                                      shard=(0, 1))
    score_model(model, {**meta, "ood": None}, data_root, run_dir, run_options,
                model_id=file_sha256(checkpoint))
    status = pd.read_parquet(run_dir / SCORES_PARQUET, columns=["status"])["status"].to_numpy()
    sims = pd.read_parquet(run_dir / SIMILARITIES_PARQUET).drop(columns="record_id").to_numpy(dtype=np.float64)
    good = status == "ok"
    if good.sum() < 2:
        raise ValueError(f"{data_root}: only {int(good.sum())} readable validation records (folds {list(val_folds)}); "
                         "cannot calibrate the OOD score")
    branches = model.prototype_table().sort_values("index")["branch"].tolist()
    calib = calibrate_ood(sims[good], flag_rate, prototype_branches=branches)
    calib["source"] = {"data": str(Path(data_root).resolve()), "folds": list(val_folds),
                       "n_unreadable": int((~good).sum())}
    target = out_dir / f"{checkpoint.stem}.ood.pt"
    save_checkpoint(target, model, {**meta, "ood": calib})
    report = {k: v for k, v in calib.items() if k != "quantiles"}
    tmp = out_dir / "ood_calibration.json.tmp"
    tmp.write_text(json.dumps({**report, "checkpoint": str(target)}, indent=1))
    os.replace(tmp, out_dir / "ood_calibration.json")
    return target
