"""Per-label decision thresholds tuned on the validation fold, with a rule for rare labels.

An F1-maximising threshold is only as good as the validation positives it is tuned on: with
one to three positives the best F1 often sits at a tiny threshold that predicts the label for
most records. The rule, per label c (N validation records, n_c validation positives, and a
prevalence π_c: the training prevalence when training labels are given, else the validation
one):

- ``not_trained``: no positive in the training labels → threshold :data:`NEVER` (above every
  probability): the label is never predicted.
- ``prevalence``: n_c < ``min_positives`` → the threshold that predicts c for about π_c·N
  validation records (round(π_c·N), at least the top one while π_c > 0; :data:`NEVER` when
  π_c = 0).
- ``f1``: otherwise the F1-maximising threshold on validation, …
- ``capped``: … unless it predicts c for more than ``max_rate_ratio``·π_c·N validation
  records; then the threshold that predicts it for that many (at least one).

Every label is thus predicted for at most max(1, ``max_rate_ratio``·π_c·N) validation records,
so the mean number of predicted labels per record stays within about ``max_rate_ratio`` (default
1.5) times Σ_c π_c, the mean number of true labels. A count is met exactly up to ties: the
threshold never predicts more records than the count (a tie at the cut moves it up to the next
distinct probability, or just above the highest one). Predictions are ``probs >= threshold``;
thresholds are plain floats (JSON-safe).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEVER = 1.01  # threshold of a label that is never predicted (probabilities are <= 1)
MIN_POSITIVES = 10  # validation positives below which a label falls back to its prevalence
MAX_RATE_RATIO = 1.5  # predicted rate of a label at most this multiple of its prevalence
RULES = ("f1", "capped", "prevalence", "not_trained")


def _sorted_desc(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: descending order (N, C), sorted probabilities (N, C), and whether a row ends a run of ties."""
    order = np.argsort(-probs, axis=0, kind="stable")
    p_sorted = np.take_along_axis(probs, order, axis=0)
    last = np.vstack([p_sorted[1:] != p_sorted[:-1], np.ones((1, probs.shape[1]), dtype=bool)])
    return order, p_sorted, last


def _count_thresholds(p_sorted: np.ndarray, last: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per column the lowest threshold predicting at most ``counts`` (C,) records → (C,).

    A count of 0 gives :data:`NEVER`; a tie larger than the count at the top gives a value just
    above the highest probability.
    """
    n = np.arange(1, len(p_sorted) + 1)[:, None]
    reach = np.where(last & (n <= counts[None, :]), n, 0).max(0)
    at_reach = p_sorted[np.maximum(reach - 1, 0), np.arange(p_sorted.shape[1])]
    above_top = np.minimum(np.nextafter(p_sorted[0], np.inf), NEVER)
    return np.where(counts > 0, np.where(reach > 0, at_reach, above_top), NEVER)


def threshold_table(labels: np.ndarray, probs: np.ndarray, *, train_labels: np.ndarray | None = None,
                    min_positives: int = MIN_POSITIVES, max_rate_ratio: float = MAX_RATE_RATIO) -> pd.DataFrame:
    """Thresholds and the rule applied (see the module docstring) for validation ``labels``/``probs`` (N, C).

    ``train_labels`` (N_train, C) multi-hot, optional: gives the prevalence and the
    ``not_trained`` labels. Returns C rows (label column order): ``threshold``, ``rule``,
    ``n_val_pos``, ``prevalence`` (π_c), ``val_rate`` (fraction of validation records
    predicted at ``threshold``) and ``f1_threshold`` (the F1-maximising threshold; NaN
    without validation positives).
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape or len(y) == 0:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must have the same shape (N >= 1, C)")
    if min_positives < 1:
        raise ValueError(f"min_positives must be >= 1, got {min_positives}")
    if max_rate_ratio < 1:
        raise ValueError(f"max_rate_ratio must be >= 1 (a multiple of the prevalence), got {max_rate_ratio}")
    n, n_pos = len(y), y.sum(0)
    if train_labels is None:
        trained = np.ones(y.shape[1], dtype=bool)
        prevalence = n_pos / n
    else:
        t = np.asarray(train_labels).astype(bool)
        if t.ndim != 2 or t.shape[1] != y.shape[1] or len(t) == 0:
            raise ValueError(f"train_labels must be (N_train >= 1, {y.shape[1]}), got {t.shape}")
        trained = t.any(0)
        prevalence = t.mean(0)
    order, p_sorted, last = _sorted_desc(p)
    tp = np.cumsum(np.take_along_axis(y, order, axis=0), axis=0)
    k = np.arange(1, n + 1)[:, None]
    f1 = np.where(last, 2 * tp / (k + n_pos[None, :]), -1.0)  # evaluated at the end of each run of ties
    best = f1.argmax(0)
    f1_threshold = np.where(n_pos > 0, p_sorted[best, np.arange(y.shape[1])], np.nan)
    cap = np.maximum(1, np.floor(max_rate_ratio * prevalence * n + 1e-9)).astype(np.int64)
    target = np.where(prevalence > 0, np.maximum(1, np.round(prevalence * n)), 0).astype(np.int64)
    few = n_pos < min_positives
    capped = ~few & (best + 1 > cap)
    rule = np.select([~trained, few, capped], ["not_trained", "prevalence", "capped"], "f1")
    counts = np.select([few, capped], [target, cap], 0)
    by_count = _count_thresholds(p_sorted, last, counts)
    threshold = np.select([~trained, few | capped], [NEVER, by_count], f1_threshold)
    return pd.DataFrame({
        "threshold": threshold.astype(np.float64), "rule": rule, "n_val_pos": n_pos.astype(np.int64),
        "prevalence": prevalence.astype(np.float64),
        "val_rate": (p >= threshold[None, :]).mean(0),
        "f1_threshold": f1_threshold.astype(np.float64),
    })


def tune_thresholds(labels: np.ndarray, probs: np.ndarray, *, train_labels: np.ndarray | None = None,
                    min_positives: int = MIN_POSITIVES, max_rate_ratio: float = MAX_RATE_RATIO) -> np.ndarray:
    """Decision thresholds (C,) for validation ``labels``/``probs`` (N, C): F1-maximising, with the
    rare-label rule of the module docstring (see :func:`threshold_table` for the rule per label)."""
    return threshold_table(labels, probs, train_labels=train_labels, min_positives=min_positives,
                           max_rate_ratio=max_rate_ratio)["threshold"].to_numpy()
