"""A tiny checkpoint whose prototypes point at records of the real PTB-XL sample."""

from __future__ import annotations

from pathlib import Path

import torch

from ecgproto.config import load_config
from ecgproto.yaml_dataclass import to_dict
from ecgproto.data.labels import all_labels
from ecgproto.model import build_network
from ecgproto.model.checkpoint import save_checkpoint

TINY = [f"model.branches.{g}.base_width=4" for g in ("rhythm", "morphology", "global")] + [
    "model.branches.rhythm.prototypes_per_class=1",
    "model.branches.morphology.prototypes_per_class=1",
    "model.branches.global.prototypes_per_class=1",
]


# labels forced to be predicted (threshold 0) in the tiny checkpoint; all others never are (threshold > 1)
PREDICTED = ("NORM", "IMI", "SR", "LAO/LAE")  # LAO/LAE: a "/" in a label must not make a folder


def tiny_checkpoint(path: Path, data_root: str, *extra: str, kind: str = "prototype") -> tuple[torch.nn.Module, dict]:
    """Seeded tiny model + meta (prototype provenance on sample ecg_ids 1..5), saved to ``path``.

    Thresholds predict exactly the labels in :data:`PREDICTED` for every record. ``kind="blackbox"``
    gives the black-box twin (no prototypes; meta as `ecgproto train` writes it).
    """
    cfg = load_config(None, TINY + [f"data.root={data_root}", f"model.kind={kind}", *extra])
    torch.manual_seed(0)
    model = build_network(cfg.model, n_samples=1000, fs=100).eval()
    prototypes = []
    for row in model.prototype_table().itertuples(index=False):
        branch = model.branches[row.branch]
        w = row.local_index % branch.n_windows
        (ws, we), (rs, re_), (ls, le) = branch.window_samples(w), branch.receptive_field(w), branch.window_leads(w)
        prototypes.append({
            "index": row.index, "branch": row.branch, "local_index": row.local_index, "class_code": row.class_code,
            "ecg_id": 1 + row.index % 5, "window_start": ws, "window_end": we, "rf_start": rs, "rf_end": re_,
            "lead_start": ls, "lead_end": le, "similarity": 0.9,
        })
    meta = {
        "config": to_dict(cfg), "sampling_rate": 100, "n_samples": 1000,
        "highpass": {"cutoff_hz": 0.5, "order": 1}, "labels": list(all_labels()),
        "prototypes": prototypes, "thresholds": [0.0 if c in PREDICTED else 1.01 for c in all_labels()],
        "model_kind": kind, "ood": None,
    }
    save_checkpoint(path, model, meta)
    return model, meta
