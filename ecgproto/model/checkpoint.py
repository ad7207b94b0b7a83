"""Self-contained model checkpoints: plain tensors + plain data, written atomically.

A checkpoint file holds ``{"format", "format_version", "state_dict", "meta"}``;
``meta`` is plain data only (dict/list/str/int/float/bool/None), so the file loads
with ``torch.load(weights_only=True)`` and no pickled class is ever executed.
``load_checkpoint`` rebuilds the model from the config stored in ``meta`` and checks that
``meta`` is consistent with it (:func:`check_meta`), so a damaged or hand-edited checkpoint is
refused with one message instead of giving silently wrong outputs later.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgproto.atomic import write_atomic
from ecgproto.data.wfdb_io import FS_RANGE_HZ
from ecgproto.errors import InputNotFoundError, UserError
from ecgproto.model.ood import calibration_problem

FORMAT = "ecgproto-checkpoint"
# 2: meta["ood"] is the feature-space Mahalanobis detector (ecgproto.model.ood); format-1 files still load
FORMAT_VERSION = 2
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
    """``torch.save`` through :func:`ecgproto.atomic.write_atomic` (never half-written)."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


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
    """Load the raw payload with ``weights_only=True`` (CPU), checking the format marker.

    The one place that checks a checkpoint path: a folder gets the ``model.pt`` inside it
    suggested, a missing file :class:`InputNotFoundError`, a file that is not an ecgproto
    checkpoint one line saying so (not torch's multi-line ``weights_only`` text).
    """
    path = Path(path)
    if path.is_dir():
        inside = [p for p in (path / "model.pt", path / "train" / "model.pt") if p.is_file()]
        hint = f"did you mean {inside[0]}?" if inside else f"give the .pt file, e.g. {path / 'model.pt'}"
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file; {hint}")
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint not found: {path}; give the model.pt written by `ecgproto train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # pickled objects beyond tensors and plain data
        raise UserError(f"{path}: not an ecgproto checkpoint: it holds Python objects beyond tensors and plain "
                        "data, which are refused unloaded (possibly malicious, or not written by ecgproto)") from exc
    except Exception as exc:  # corrupted file, not a torch file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable ecgproto checkpoint ({first})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an ecgproto checkpoint (missing format marker {FORMAT!r})")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
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


MAX_DURATION_S = 600  # longest record a checkpoint may expect (n_samples / sampling_rate)


def _finite_list(value: Any, n: int | None) -> bool:
    if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)


def check_meta(meta: Any, path: str | Path) -> None:
    """Raise UserError unless ``meta`` can rebuild a model and its values are usable (before building it)."""
    if not isinstance(meta, Mapping):
        raise UserError(f"{path}: checkpoint meta is {type(meta).__name__}, not a mapping")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise UserError(f"{path}: checkpoint meta lacks {missing}; cannot rebuild the model from it")
    fs, n = meta["sampling_rate"], meta["n_samples"]
    lo, hi = FS_RANGE_HZ
    if isinstance(fs, bool) or not isinstance(fs, int) or not lo <= fs <= hi:
        raise UserError(f"{path}: checkpoint sampling_rate {fs!r} is not an integer in {lo:g}-{hi:g} Hz; "
                         "the checkpoint is damaged")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_DURATION_S * fs:
        raise UserError(f"{path}: checkpoint n_samples {n!r} is not an integer in 1-{MAX_DURATION_S * fs} "
                         f"(at most {MAX_DURATION_S} s at {fs} Hz); the checkpoint is damaged")
    hp = meta.get("highpass") or {}
    cutoff, order = hp.get("cutoff_hz", 0.5), hp.get("order", 1)
    if not (isinstance(cutoff, (int, float)) and 0 <= cutoff < fs / 2) or not (isinstance(order, int) and 1 <= order <= 8):
        raise UserError(f"{path}: checkpoint high-pass {hp!r} needs 0 <= cutoff_hz < {fs / 2:g} and order 1-8")


def check_consistency(model: torch.nn.Module, meta: Mapping[str, Any], path: str | Path) -> None:
    """Raise UserError when ``meta`` does not fit the rebuilt ``model`` (labels vs head, thresholds, OOD)."""
    head = list(model.labels)
    labels = meta.get("labels")
    if labels is not None and list(labels) != head:
        bad = next((i for i, (a, b) in enumerate(zip(labels, head)) if a != b), min(len(labels), len(head)))
        raise UserError(f"{path}: meta['labels'] lists {len(labels)} labels but the model's head has {len(head)} "
                         f"outputs in a fixed order (first difference at position {bad}); the checkpoint is "
                         "inconsistent, retrain or restore it")
    thresholds = meta.get("thresholds")
    if thresholds is not None and not _finite_list(thresholds, len(head)):
        size = len(thresholds) if isinstance(thresholds, (list, tuple)) else type(thresholds).__name__
        raise UserError(f"{path}: meta['thresholds'] must be {len(head)} finite numbers (one per label), got {size}")
    ood = meta.get("ood")
    problem = calibration_problem(ood, model) if ood is not None else None
    if problem:
        raise UserError(f"{path}: meta['ood'] (the OOD calibration) is malformed: {problem}; recalibrate with "
                         "`ecgproto score CHECKPOINT DATA --calibrate-ood --out OUT`")


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(ProtoECGNet in eval mode, meta)`` from a checkpoint written by :func:`save_checkpoint`.

    Raises UserError (naming the file) when meta is inconsistent with the weights or the model."""
    payload = read_checkpoint(path)
    meta = payload.get("meta")
    check_meta(meta, path)
    try:
        model = build_model(meta)
    except (MemoryError, RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: cannot build the model from the stored config ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); the config is damaged or needs more "
                        "memory than this machine has") from exc
    if not isinstance(payload.get("state_dict"), Mapping):
        raise UserError(f"{path}: checkpoint has no state_dict; the file is damaged")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UserError(f"{path}: weights do not match the stored config ({detail})") from exc
    check_consistency(model, meta, path)
    model.eval()
    return model, meta


def finite_or_none(x: float) -> float | None:
    """JSON-friendly float: NaN/inf become None."""
    return float(x) if x is not None and math.isfinite(float(x)) else None
