"""Self-contained model checkpoints: plain tensors + plain data, written atomically.

A checkpoint file holds ``{"format", "format_version", "state_dict", "meta"}``;
``meta`` is plain data only (dict/list/str/int/float/bool/None), so the file loads
with ``torch.load(weights_only=True)`` and no pickled class is ever executed.
``load_checkpoint`` rebuilds the model from the config stored in ``meta``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "ecgproto-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("config", "sampling_rate", "n_samples")


def to_plain(obj: Any, path: str = "meta") -> Any:
    """Convert ``obj`` to plain data (numpy → lists/scalars, tuples → lists); raise on anything else."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist(), path)
    if isinstance(obj, torch.Tensor):
        return to_plain(obj.detach().cpu().numpy(), path)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{path}: {type(obj).__name__} is not plain data and cannot go into a checkpoint")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path`` then ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def plain_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of a module's parameters and buffers."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` (see HELPERS.md meta keys) to ``path`` atomically."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}; cannot rebuild the model from it")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": plain_state_dict(model),
        "meta": to_plain(dict(meta)),
    }
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the raw payload with ``weights_only=True`` (CPU), checking the format marker."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train one with `ecgproto train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted file, not a torch file, or unsafe pickle content
        raise ValueError(f"{path}: not a readable ecgproto checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ecgproto checkpoint (missing format marker {FORMAT!r})")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this ecgproto "
            f"supports ({FORMAT_VERSION}); upgrade ecgproto"
        )
    return payload


def build_model(meta: Mapping[str, Any]) -> torch.nn.Module:
    """A fresh network (``ProtoECGNet`` or its black-box twin, by ``model.kind``) from the config,
    ``n_samples`` and ``sampling_rate`` in ``meta``."""
    from ecgproto.config import config_from_mapping
    from ecgproto.model import build_network

    cfg = config_from_mapping(meta["config"])
    return build_network(cfg.model, n_samples=int(meta["n_samples"]), fs=int(meta["sampling_rate"]))


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(ProtoECGNet in eval mode, meta)`` from a checkpoint written by :func:`save_checkpoint`."""
    payload = read_checkpoint(path)
    meta = payload["meta"]
    model = build_model(meta)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored config ({exc})") from exc
    model.eval()
    return model, meta


def finite_or_none(x: float) -> float | None:
    """JSON-friendly float: NaN/inf become None."""
    return float(x) if x is not None and math.isfinite(float(x)) else None
