"""Re-project the prototypes of an existing checkpoint (``ecgproto project``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgproto.atomic import write_atomic, write_json_atomic
from ecgproto.config import config_from_mapping, save_resolved_config
from ecgproto.yaml_dataclass import deep_merge, parse_overrides, read_yaml, to_dict
from ecgproto.model.checkpoint import load_checkpoint, save_checkpoint
from ecgproto.train.projection import project_model, provenance_frame
from ecgproto.device import resolve_device
from ecgproto.errors import UserError

ALLOWED_OVERRIDES = ("data", "train", "device")


def reproject_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    data_root: str | None = None,
    unique: bool | None = None,
    branches: list[str] | None = None,
    overrides: list[str] | None = None,
    config_path: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Project ``branches`` (default all) of ``checkpoint`` onto the training split; write OUT/model.pt.

    The config stored in the checkpoint is used; ``config_path``/``overrides`` may change only its
    ``data`` and ``train`` sections and the top-level ``device`` (the model must stay the one the
    weights belong to); ``device`` (auto|cpu|cuda|cuda:N|mps, None = the config's) is where the
    forward passes run. The last
    layers and the fusion head are not retrained, so predictions can shift slightly.
    Returns the projection summary (also written to OUT/projection.json).
    """
    from ecgproto.data.cache import prepare_cache

    model, meta = load_checkpoint(checkpoint)
    extra: dict[str, Any] = read_yaml(config_path) if config_path else {}
    extra = deep_merge(extra, parse_overrides(overrides))
    bad = sorted(set(extra) - set(ALLOWED_OVERRIDES))
    if bad:
        raise UserError(f"project: only the data and train sections and device can be changed, not {bad}")
    data = deep_merge({**meta["config"], "device": "auto"}, extra)  # not the device the model was trained on
    if data_root is not None:
        data = deep_merge(data, {"data": {"root": data_root}})
    if device is not None:
        data = deep_merge(data, {"device": device})
    cfg = config_from_mapping(data)
    model.to(resolve_device(cfg.device))
    unknown = sorted(set(branches or []) - set(model.branches))
    if unknown:
        raise UserError(f"project: unknown branch(es) {unknown}; expected some of {list(model.branches)}")
    archive = prepare_cache(cfg.data)
    n_samples = int(archive.signals.shape[-1])
    if n_samples != int(meta["n_samples"]) or int(archive.fs) != int(meta["sampling_rate"]):
        raise UserError(
            f"{checkpoint}: model expects {meta['n_samples']} samples at {meta['sampling_rate']} Hz but the "
            f"archive has {n_samples} at {archive.fs} Hz; set data.sampling_rate/duration_s accordingly"
        )
    use_unique = cfg.train.unique_projection if unique is None else unique
    result = project_model(model, archive, archive.rows("train"), groups=branches,
                           batch_size=cfg.train.eval_batch_size, unique=use_unique)
    new = {p["index"]: p for p in result.provenance}
    meta["prototypes"] = [new.get(p["index"], p) for p in meta["prototypes"]]
    projection = dict(meta.get("projection") or {})
    projection.update(result.branches)
    meta["projection"] = projection
    meta["config"] = to_dict(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / "model.pt", model, meta)
    frame = provenance_frame(meta["prototypes"])
    write_atomic(out_dir / "prototypes.csv", lambda tmp: frame.to_csv(tmp, index=False))
    summary = {**result.summary(), "unique": use_unique, "source_checkpoint": str(checkpoint)}
    write_json_atomic(out_dir / "projection.json", summary)
    save_resolved_config(cfg, out_dir)
    return summary
