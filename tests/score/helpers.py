"""Tiny checkpoints and small real-record folders for the scoring tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecgproto.config import load_config
from ecgproto.yaml_dataclass import to_dict
from ecgproto.data.labels import all_labels
from ecgproto.data.preprocess import highpass
from ecgproto.data.wfdb_io import read_record
from ecgproto.model import build_network
from ecgproto.model.checkpoint import save_checkpoint

FS = 100
N_SAMPLES = 1000


def tiny_checkpoint(path: Path, ood: dict | None = None, fs: int = FS, n_samples: int = N_SAMPLES,
                    kind: str = "prototype") -> Path:
    """A real checkpoint of an untrained width-4 ProtoECGNet (``kind="blackbox"``: its black-box twin,
    meta as `ecgproto train` writes it) with seeded random thresholds."""
    overrides = [f"model.branches.{g}.base_width=4" for g in ("rhythm", "morphology", "global")]
    overrides += ["model.branches.rhythm.prototypes_per_class=1", "model.branches.morphology.prototypes_per_class=1",
                  "model.branches.global.prototypes_per_class=2", f"data.sampling_rate={fs}", f"model.kind={kind}"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_network(cfg.model, n_samples, fs).eval()
    model.set_standardization(torch.zeros(12), torch.full((12,), 0.3))
    rng = np.random.default_rng(0)
    meta = {"config": to_dict(cfg), "labels": list(all_labels()), "sampling_rate": fs, "n_samples": n_samples,
            "highpass": {"cutoff_hz": 0.5, "order": 1}, "standardization": None,
            "thresholds": rng.uniform(0.3, 0.7, 71).round(4).tolist()}
    if kind == "blackbox":
        meta.update(model_kind="blackbox", prototypes=[], ood=None)
    if ood is not None:
        meta["ood"] = ood
    return save_checkpoint(path, model, meta)


def preprocessed(paths: list[str], fs: int = FS, n_samples: int = N_SAMPLES) -> tuple[np.ndarray, list[str]]:
    """Records read one by one with read_record + highpass (the in-process reference): (n_ok, 12, T), statuses."""
    good, status = [], []
    for p in paths:
        r = read_record(p, fs, n_samples)
        status.append(r.status)
        if r.status == "ok":
            good.append(highpass(r.signal, fs, 0.5, 1))
    return np.stack(good).astype(np.float32), status


def ptbxl_subset(src: Path, dst: Path, n: int) -> Path:
    """A PTB-XL folder holding the first ``n`` records of ``src`` (100 Hz files copied)."""
    db = pd.read_csv(src / "ptbxl_database.csv").head(n)
    dst.mkdir(parents=True)
    db.to_csv(dst / "ptbxl_database.csv", index=False)
    for name in db["filename_lr"]:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            shutil.copy(src / (name + ext), dst / (name + ext))
    return dst
