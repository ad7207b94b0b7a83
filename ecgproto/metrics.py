"""Ranking metrics shared by training (model selection) and evaluation: dataset-level AUROC.

Computed on the whole split, never per batch. A label whose column has no positive or no
negative record has an undefined AUROC: NaN (reported as "undefined"), never 0.5.
The evaluation-only metrics (weighted/bootstrap forms, AUPRC, Brier, F1, Fmax) are in
:mod:`ecgproto.evaluate.metrics`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def label_arrays(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as bool and ``probs`` as float64, both (N, C) (a 1-D pair becomes one column)."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim == 1:
        y, p = y[:, None], p[:, None]
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must have the same shape (N, C)")
    return y, p


def per_label_auroc(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """AUROC per column of ``labels``/``probs`` (N, C) → (C,); NaN where a column has one class only.

    Rank-based (Mann–Whitney U with mid-ranks for ties), vectorised over labels.
    """
    y, p = label_arrays(labels, probs)
    n_pos = y.sum(0).astype(np.float64)
    n_neg = y.shape[0] - n_pos
    ranks = rankdata(p, axis=0)
    u = (ranks * y).sum(0) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean AUROC over labels that have both positives and negatives (NaN if none)."""
    aucs = per_label_auroc(labels, probs)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
