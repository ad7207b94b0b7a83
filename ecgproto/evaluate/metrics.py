"""Dataset-level classification metrics (never per-batch averages)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def per_label_auroc(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """AUROC per column of ``labels``/``probs`` (N, C); NaN where a column has one class only."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    out = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        y = labels[:, c]
        if 0 < y.sum() < len(y):
            out[c] = roc_auc_score(y, probs[:, c])
    return out


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean AUROC over labels that have both positives and negatives (NaN if none)."""
    aucs = per_label_auroc(labels, probs)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
