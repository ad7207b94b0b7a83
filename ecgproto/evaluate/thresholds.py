"""Per-label decision thresholds tuned on the validation fold."""

from __future__ import annotations

import numpy as np


def tune_thresholds(labels: np.ndarray, probs: np.ndarray, default: float = 0.5) -> np.ndarray:
    """F1-maximising threshold per label for ``labels``/``probs`` (N, C) → (C,).

    Candidate thresholds are the observed probabilities; a label without positives
    keeps ``default``. Predictions are ``probs >= threshold``.
    """
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    out = np.full(labels.shape[1], default, dtype=np.float64)
    for c in range(labels.shape[1]):
        y = labels[:, c]
        n_pos = int(y.sum())
        if n_pos == 0:
            continue
        order = np.argsort(-probs[:, c], kind="stable")
        p_sorted = probs[order, c]
        tp = np.cumsum(y[order])
        k = np.arange(1, len(y) + 1)
        # only evaluate at the last index of each run of tied probabilities
        last = np.r_[p_sorted[1:] != p_sorted[:-1], True]
        f1 = np.where(last, 2 * tp / (k + n_pos), -1.0)
        best = int(np.argmax(f1))
        out[c] = p_sorted[best]
    return out
