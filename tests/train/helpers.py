"""Tiny configs and an in-memory archive (CachedArchive contract) for the training tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ecgproto.config import Config, load_config
from ecgproto.data.labels import all_labels, label_table

N_SAMPLES = 256
FS = 100


def tiny_config(*extra: str, width: int = 4) -> Config:
    """All three branches at ``base_width`` ``width`` with 1-2 prototypes per class, 1 epoch per stage."""
    overrides = [f"model.branches.{g}.base_width={width}" for g in ("rhythm", "morphology", "global")]
    overrides += [
        "model.branches.rhythm.prototypes_per_class=1",
        "model.branches.morphology.prototypes_per_class=1",
        "model.branches.global.prototypes_per_class=2",
        "model.branches.morphology.proto_time_len=2",
        "train.stages=[{name: joint, epochs: 2, lr: 0.001}, {name: projection}, "
        "{name: last_layer, epochs: 1, lr: 0.001}]",
        "train.fusion_epochs=3",
        "train.fusion_lr=0.01",
        "train.batch_size=8",
        "train.eval_batch_size=16",
        "train.threads=1",
        "train.patience=5",
        "seed=3",
    ]
    return load_config(None, overrides + list(extra))


def tiny_archive(tmp_path: Path, n: int = 36, n_samples: int = N_SAMPLES, seed: int = 0) -> SimpleNamespace:
    """``n`` records (60% train / 20% val / 20% test) with a few labels planted in the signal."""
    rng = np.random.default_rng(seed)
    codes = list(all_labels())
    labels = np.zeros((n, 71), dtype=np.uint8)
    for g in ("rhythm", "morphology", "global"):
        cols = label_table().indices(g)
        pick = rng.integers(0, min(3, len(cols)), size=n)
        labels[np.arange(n), np.asarray(cols)[pick]] = 1
    t = np.arange(n_samples) / FS
    x = 0.05 * rng.normal(size=(n, 12, n_samples))
    x += labels[:, codes.index("SR"), None, None] * np.sin(2 * np.pi * 1.2 * t)
    x += labels[:, codes.index("NORM"), None, None] * 0.5 * np.sign(np.sin(2 * np.pi * 0.7 * t))
    path = tmp_path / "signals.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 12, n_samples))
    mm[:] = x.astype(np.float32)
    mm.flush()
    split = np.array(["train"] * n, dtype=object)
    split[int(0.6 * n) : int(0.8 * n)] = "val"
    split[int(0.8 * n) :] = "test"
    index = pd.DataFrame({"ecg_id": np.arange(1000, 1000 + n), "split": split})
    return SimpleNamespace(
        signals=np.memmap(path, dtype=np.float32, mode="r", shape=(n, 12, n_samples)),
        labels=labels, index=index, fs=FS, key="tiny", standardization=None,
    )
