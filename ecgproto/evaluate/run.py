"""``ecgproto evaluate``: score one split of an archive with a checkpoint and write the report.

DATA is either a prepared cache folder (``ecgproto prepare`` output, holding meta.json) or a
PTB-XL-shaped folder (real PTB-XL, or a synthetic archive with its ``ptbxl/`` sub-folder),
which is prepared here with the checkpoint's own preprocessing (rate, length, high-pass,
folds) so test records are read exactly as the training records were.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ecgproto.config import Config, config_from_mapping
from ecgproto.data.cache import CachedArchive, open_cache, prepare_cache
from ecgproto.data.labels import GROUPS, all_labels, label_table
from ecgproto.device import resolve_device
from ecgproto.evaluate.compare import Comparison, paired_auroc_difference
from ecgproto.evaluate.evaluation import Evaluation, Predictions, evaluate_predictions
from ecgproto.evaluate.prototype_quality import (
    prototype_quality,
    top_contribution_agreement,
    top_prototype_agreement,
)
from ecgproto.evaluate.report import ReportContext, write_report
from ecgproto.evaluate.subgroups import QUALITY_FLAGS
from ecgproto.evaluate.tasks import default_tasks, output_codes
from ecgproto.model.thresholds import threshold_table
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.progress import progress
from ecgproto.errors import InputNotFoundError, UserError

SPLITS = ("train", "val", "test")
NO_PROTOTYPES = "black-box twin: no prototypes"


def open_archive(data: str | Path, meta: dict[str, Any], cache_dir: str | None = None) -> CachedArchive:
    """The archive at ``data`` preprocessed as the checkpoint expects (see module docstring).

    Raises ValueError when a given cache was prepared with other settings than the checkpoint's.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise InputNotFoundError(f"DATA {path} does not exist; pass a PTB-XL-shaped folder or an `ecgproto prepare` cache")
    train_cfg = config_from_mapping(meta["config"])
    if (path / "meta.json").is_file():
        archive = open_cache(path)
        settings = archive.meta.get("settings", {})
        expect = {"sampling_rate": int(meta["sampling_rate"]), "n_samples": int(meta["n_samples"]),
                  "highpass_hz": float((meta.get("highpass") or {}).get("cutoff_hz", train_cfg.data.highpass_hz)),
                  "highpass_order": int((meta.get("highpass") or {}).get("order", train_cfg.data.highpass_order)),
                  "highpass_edge": str((meta.get("highpass") or {}).get("edge", train_cfg.data.highpass_edge))}
        wrong = {k: (settings.get(k), v) for k, v in expect.items() if settings.get(k) != v}
        if wrong:
            diff = ", ".join(f"{k}: cache {a} vs checkpoint {b}" for k, (a, b) in wrong.items())
            raise UserError(f"cache {path} was prepared with other settings than checkpoint expects ({diff}); "
                             "pass the PTB-XL folder instead so it is prepared with the checkpoint's settings")
        return archive
    source = "synthetic" if not (path / "ptbxl_database.csv").is_file() and (path / "ptbxl" / "ptbxl_database.csv").is_file() else "ptbxl"
    data_cfg = dataclasses.replace(train_cfg.data, root=str(path), source=source,
                                   cache_dir=cache_dir or train_cfg.data.cache_dir)
    return prepare_cache(data_cfg, path)


def _info(index: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("age", "sex", *QUALITY_FLAGS) if c in index]
    return index[cols].reset_index(drop=True)


def _predict(model: torch.nn.Module, archive: CachedArchive, rows: np.ndarray, cfg: Config) -> Any:
    """Predictions on ``rows`` with the batches on ``cfg.device`` (the model stays where it is)."""
    from ecgproto.model.inference import predict_arrays

    return predict_arrays(model, archive.signals[rows], batch_size=cfg.evaluate.batch_size,
                          device=resolve_device(cfg.device))


@dataclass
class Thresholds:
    """Per-output decision thresholds (C_output,), where they came from, how each was chosen
    (:attr:`Predictions.threshold_rules`; None when read from the checkpoint) and report notes."""

    values: dict[str, np.ndarray]
    source: str
    rules: pd.DataFrame | None
    notes: list[str]


def _thresholds(model: torch.nn.Module, meta: dict[str, Any], archive: CachedArchive, cfg: Config,
                split: str) -> Thresholds:
    """Thresholds re-tuned on the validation split (rare-label rule: ``model/thresholds.py``), else the checkpoint's."""
    notes: list[str] = []
    val_rows, train_rows = archive.rows("val"), archive.rows("train")
    if cfg.evaluate.threshold_source == "validation" and len(val_rows):
        val = _predict(model, archive, val_rows, cfg)
        y = archive.labels[val_rows]
        y_train = archive.labels[train_rows] if len(train_rows) else None
        outputs = {"fused": (val.probs, np.arange(len(all_labels()))),
                   **{g: (p, label_table().indices(g)) for g, p in val.branch_probs.items()}}
        tables = []
        for output, (p, cols) in outputs.items():
            table = threshold_table(y[:, cols], p, train_labels=None if y_train is None else y_train[:, cols],
                                    min_positives=cfg.evaluate.threshold_min_positives,
                                    max_rate_ratio=cfg.evaluate.threshold_max_rate_ratio)
            table.insert(0, "output", output)
            table.insert(1, "label", output_codes(output))
            tables.append(table)
        rules = pd.concat(tables, ignore_index=True)
        values = {o: rules.loc[rules["output"] == o, "threshold"].to_numpy() for o in outputs}
        if y_train is None:
            notes.append("The data has no training split: threshold prevalences come from the validation split and "
                         "no label counts as untrained.")
        if split == "val":
            notes.append("Thresholds were tuned on the same validation split that is evaluated here: threshold "
                         "metrics (F1, sensitivity, specificity) are optimistic.")
        return Thresholds(values, f"validation split ({len(val_rows)} records, re-tuned here)", rules, notes)
    stored = meta.get("thresholds")
    if stored is None or len(stored) != len(all_labels()):
        notes.append("No validation split and no thresholds in the checkpoint: threshold metrics are not reported.")
        return Thresholds({}, "none", None, notes)
    notes.append("Thresholds come from the checkpoint (tuned on the validation split during training); branch "
                 "outputs have no stored thresholds, so their threshold metrics are not reported.")
    return Thresholds({"fused": np.asarray(stored, dtype=np.float64)}, "checkpoint (validation-tuned in training)",
                      None, notes)


def _prototype_section(model: torch.nn.Module, meta: dict[str, Any], pred: Any, thresholds: dict[str, np.ndarray],
                       cfg: Config) -> dict[str, Any]:
    if model.kind == "blackbox":
        return {"model_kind": "blackbox", "note": NO_PROTOTYPES}
    table = pd.DataFrame(meta.get("prototypes") or model.prototype_table().to_dict("records"))
    vectors = {g: model.branches[g].prototype_vectors.detach().cpu().numpy() for g in model.branches}
    q = prototype_quality(table, vectors, cfg.evaluate.near_duplicate_cosine)
    fusion = model.fusion
    proto_label = fusion.prototype_label.cpu().numpy()
    proto_branch = fusion.prototype_branch.cpu().numpy()
    if "fused" in thresholds:
        predicted = pred.probs >= thresholds["fused"][None, :]
        with torch.no_grad():
            sims = torch.as_tensor(pred.similarities, dtype=torch.float32)
            norm = fusion.normalize(sims).numpy()
            weight = fusion.effective_weight().detach().cpu().numpy()
        frac, per_label, n = top_contribution_agreement(norm, weight, proto_label, predicted)
        q["top_contribution_agreement"] = {"fraction": frac, "n_predictions": n,
                                           "per_label": dict(zip(all_labels(), per_label))}
        branch_of_label = np.full(len(all_labels()), -1)
        branch_of_label[proto_label] = proto_branch
        allowed = branch_of_label[:, None] == proto_branch[None, :]
        frac, per_label, n = top_prototype_agreement(pred.similarities, proto_label, predicted, allowed)
        q["nearest_prototype_agreement"] = {"fraction": frac, "n_predictions": n,
                                            "per_label": dict(zip(all_labels(), per_label))}
        head = getattr(fusion.cfg, "head", "")
        mask = getattr(fusion.cfg, "mask", "")
        if head == "masked_nonneg" and mask == "own_class":
            q["agreement_note"] = ("The fusion head is class-masked (own-class prototypes only), so the top contribution "
                                   "comes from the predicted class by construction; the nearest-prototype agreement "
                                   "(raw similarity within the label's branch) is the informative figure.")
    return q


def _gallery(meta: dict[str, Any], archive: CachedArchive, labels: np.ndarray, cfg: Config) -> list[tuple[bytes, str]]:
    """Thumbnails of one prototype per class for the classes with most positives in the split."""
    import matplotlib.pyplot as plt

    from ecgproto.explain.plot_ecg import figure_png_bytes, plot_12lead

    size = cfg.evaluate.gallery_size
    protos = [p for p in (meta.get("prototypes") or []) if p.get("ecg_id") is not None]
    if size <= 0 or not protos:
        return []
    by_class: dict[str, dict[str, Any]] = {}
    for p in sorted(protos, key=lambda p: int(p["index"])):
        by_class.setdefault(p["class_code"], p)
    counts = dict(zip(all_labels(), labels.sum(0)))
    chosen = sorted(by_class.values(), key=lambda p: -int(counts.get(p["class_code"], 0)))[:size]
    row_of = dict(zip(archive.index["ecg_id"].astype(np.int64), range(len(archive.index))))
    fs, n = int(meta["sampling_rate"]), int(meta["n_samples"])
    out = []
    for p in progress(chosen, desc="prototype thumbnails", unit="proto"):
        row = row_of.get(int(p["ecg_id"]))
        ws, we = int(p["window_start"]), int(p["window_end"])
        highlight = None if (ws <= 0 and we >= n) else (ws, we)
        title = f"prototype {p['index']} · {p['branch']} · {p['class_code']} · source ecg_id {p['ecg_id']}"
        if row is None:
            fig = plot_12lead(np.zeros((12, n), np.float32), fs, highlight=highlight, title=title, show_trace=False, layout="12x1")
            caption = f"{title} (source ECG not in this archive; window only)"
        else:
            fig = plot_12lead(np.asarray(archive.signals[row]), fs, highlight=highlight, title=title, layout="12x1")
            sim = p.get("similarity")
            caption = title + (f", projection similarity {sim:.3f}" if isinstance(sim, float) else "")
        out.append((figure_png_bytes(fig, dpi=45), caption))
        plt.close(fig)
    return out


def _probs(out: Any) -> dict[str, np.ndarray]:
    """Fused and branch probabilities of a :func:`_predict` result, float64."""
    return {"fused": out.probs.astype(np.float64), **{g: p.astype(np.float64) for g, p in out.branch_probs.items()}}


def _model_summary(model: torch.nn.Module) -> str:
    branches = ", ".join(g for g in GROUPS if g in model.branches)
    if model.kind == "blackbox":
        return f"{NO_PROTOTYPES} ({branches} branches with linear heads, linear fusion)."
    return f"{sum(len(model.branches[g].prototype_vectors) for g in model.branches)} prototypes ({branches} branches)."


def _compare(checkpoint: str | Path, other: str | Path, meta: dict[str, Any], archive: CachedArchive,
             rows: np.ndarray, pred: Predictions, model: torch.nn.Module, cfg: Config) -> Comparison:
    """Model ``other`` on the same records as ``pred``, paired with the evaluated model (same resamples)."""
    model_b, meta_b = load_checkpoint(other)
    keys = ("sampling_rate", "n_samples", "highpass", "labels")
    differ = [k for k in keys if meta_b.get(k) != meta.get(k)]
    if differ:
        diff = ", ".join(f"{k}: {meta.get(k)} vs {meta_b.get(k)}" for k in differ)
        raise UserError(f"--compare {other}: its preprocessing or labels differ from {checkpoint} ({diff}); both "
                         "models must read the same records the same way")
    probs_b = _probs(_predict(model_b, archive, rows, cfg))
    outputs = [o for o in pred.probs if o in probs_b]
    table = paired_auroc_difference(pred.labels, pred.probs, probs_b, pred.patient_ids,
                                    default_tasks(outputs, cfg.evaluate.benchmark_sets), cfg.evaluate.n_bootstrap,
                                    cfg.seed, cfg.evaluate.ci_level, drop_unlabeled=cfg.evaluate.drop_unlabeled)
    return Comparison(str(checkpoint), str(other), model.kind, model_b.kind, table, probs_b)


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out_dir: str | Path, cfg: Config,
                        split: str = "test", cache_dir: str | None = None,
                        compare: str | Path | None = None) -> tuple[Evaluation, dict[str, Path]]:
    """Evaluate ``checkpoint`` on ``split`` of ``data`` and write the report into ``out_dir``.

    ``compare``: a second checkpoint (e.g. the black-box twin) scored on the same records; the
    report then has a paired comparison of macro AUROC (:func:`paired_auroc_difference`).
    """
    if split not in SPLITS:
        raise UserError(f"--split must be one of {SPLITS}, got {split!r}")
    resolve_device(cfg.device)  # an unavailable --device fails before any work
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    model, meta = load_checkpoint(checkpoint)
    archive = open_archive(data, meta, cache_dir)
    rows = archive.rows(split)
    if len(rows) == 0:
        raise UserError(f"{data}: the {split} split is empty (folds per split come from the checkpoint's config); "
                         "choose another --split")
    th = _thresholds(model, meta, archive, cfg, split)
    out = _predict(model, archive, rows, cfg)
    index = archive.index.iloc[rows].reset_index(drop=True)
    pred = Predictions(index["ecg_id"].to_numpy(), index["patient_id"].to_numpy(), archive.labels[rows], _probs(out),
                       th.values, th.source, _info(index), th.rules)
    ev = evaluate_predictions(pred, cfg.evaluate, seed=cfg.seed)
    if compare is not None:
        ev = dataclasses.replace(ev, comparison=_compare(checkpoint, compare, meta, archive, rows, pred, model, cfg))
    train_cfg = meta.get("config", {}).get("data", {})
    ctx = ReportContext(
        checkpoint=str(checkpoint), data=str(data), split=split, notes=th.notes,
        model={
            "model_kind": model.kind,
            "package_version": meta.get("package_version", "?"), "config_hash": meta.get("config_hash", "?"),
            "sampling_rate (Hz)": meta.get("sampling_rate"), "n_samples": meta.get("n_samples"),
            "training_data": f"{train_cfg.get('source', '?')} archive at {train_cfg.get('root', '?')}, "
                             f"train folds {train_cfg.get('train_folds')}, val folds {train_cfg.get('val_folds')}",
            "summary": _model_summary(model),
        },
        prototype=_prototype_section(model, meta, out, th.values, cfg),
        gallery=_gallery(meta, archive, archive.labels[rows], cfg),
    )
    return ev, write_report(ev, out_dir, ctx)
