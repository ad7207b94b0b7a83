"""Dataset-level evaluation metrics (never per-batch averages); AUROC itself is in :mod:`ecgproto.metrics`.

Every metric is computed on the whole split. The weighted functions take a
``weights`` matrix (B, N): row b gives each record's multiplicity in resample b
(all ones = the plain point estimate), so the same vectorised code yields point
estimates and patient-level bootstrap distributions (see ``bootstrap.py``).

A label whose column has no positive or no negative record has an undefined AUROC
(and AUPRC when it has no positive): the value is NaN and reported as "undefined",
never 0.5. Predictions are ``probs >= threshold`` throughout.
"""

from __future__ import annotations

import numpy as np

from ecgproto.metrics import label_arrays, per_label_auroc


def weighted_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUROC averaged over defined labels, weighted by each label's number of positives."""
    y, _ = label_arrays(labels, probs)
    return weighted_mean_rows(per_label_auroc(labels, probs)[None], y.sum(0)[None].astype(float))[0]


def weighted_mean_rows(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise mean of ``values`` (B, C) weighted by ``weights`` (B, C), ignoring NaN values."""
    ok = np.isfinite(values) & (weights > 0)
    w = np.where(ok, weights, 0.0)
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.where(ok, values, 0.0) * w).sum(1) / total
    return np.where(total > 0, out, np.nan)


def nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean of each row of ``values`` (B, C) over its finite entries; NaN for an all-NaN row."""
    ok = np.isfinite(values)
    count = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, values, 0.0).sum(1) / count
    return np.where(count > 0, out, np.nan)


def _tie_groups(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted 1-D array."""
    return np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]


def auroc_weighted(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-label AUROC under record multiplicities ``weights`` (B, N) → (B, C).

    AUROC = P(score_pos > score_neg) + ½ P(tie) over weighted pairs; NaN where a
    resample has no positive or no negative of a label.
    """
    y, p = label_arrays(labels, probs)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    out = np.full((w.shape[0], y.shape[1]), np.nan)
    for c in range(y.shape[1]):
        order = np.argsort(p[:, c], kind="stable")
        starts = _tie_groups(p[order, c])
        yc = y[order, c]
        wc = w[:, order]
        pos = np.add.reduceat(wc * yc, starts, axis=1)
        neg = np.add.reduceat(wc * ~yc, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        num = (pos * (below + 0.5 * neg)).sum(1)
        den = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c] = np.where(den > 0, num / den, np.nan)
    return out


def average_precision_weighted(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-label average precision (AUPRC, step-wise as scikit-learn) under ``weights`` (B, N) → (B, C).

    NaN where a resample has no positive of a label.
    """
    y, p = label_arrays(labels, probs)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    out = np.full((w.shape[0], y.shape[1]), np.nan)
    for c in range(y.shape[1]):
        order = np.argsort(-p[:, c], kind="stable")
        starts = _tie_groups(p[order, c])
        yc = y[order, c]
        wc = w[:, order]
        tp = np.add.reduceat(wc * yc, starts, axis=1)
        fp = np.add.reduceat(wc * ~yc, starts, axis=1)
        ctp, cfp = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
        total_pos = ctp[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(ctp + cfp > 0, ctp / (ctp + cfp), 0.0)
            out[:, c] = np.where(total_pos > 0, (tp * precision).sum(1) / total_pos, np.nan)
    return out


def per_label_auprc(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Average precision per label (N, C) → (C,); NaN for a label without positives."""
    y, _ = label_arrays(labels, probs)
    return average_precision_weighted(labels, probs, np.ones((1, y.shape[0])))[0]


def brier_weighted(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-label Brier score (mean squared error of the probability) under ``weights`` (B, N) → (B, C)."""
    y, p = label_arrays(labels, probs)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ (p - y) ** 2) / w.sum(1, keepdims=True)


def per_label_brier(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Brier score per label (N, C) → (C,)."""
    y, _ = label_arrays(labels, probs)
    return brier_weighted(labels, probs, np.ones((1, y.shape[0])))[0]


def confusion_weighted(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Weighted TP/FP/FN/TN counts per label at ``thresholds`` (C,) → each (B, C)."""
    y, p = label_arrays(labels, probs)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    pred = p >= np.asarray(thresholds, dtype=np.float64)[None, :]
    return {
        "tp": w @ (pred & y),
        "fp": w @ (pred & ~y),
        "fn": w @ (~pred & y),
        "tn": w @ (~pred & ~y),
    }


def threshold_metrics_weighted(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """F1, sensitivity, specificity and PPV per label at ``thresholds`` under ``weights`` → each (B, C).

    Undefined values (e.g. sensitivity without positives, F1 without positives) are NaN.
    """
    cm = confusion_weighted(labels, probs, thresholds, weights)
    return rates_from_confusion(cm["tp"], cm["fp"], cm["fn"], cm["tn"])


def rates_from_confusion(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """F1, sensitivity, specificity and PPV from (weighted) confusion counts of equal shape; NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        ppv = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        f1 = np.where(tp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {"f1": f1, "sensitivity": sens, "specificity": spec, "ppv": ppv}


def per_label_threshold_metrics(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray
) -> dict[str, np.ndarray]:
    """F1, sensitivity, specificity, PPV per label (N, C) at ``thresholds`` (C,) → each (C,)."""
    y, _ = label_arrays(labels, probs)
    out = threshold_metrics_weighted(labels, probs, thresholds, np.ones((1, y.shape[0])))
    return {k: v[0] for k, v in out.items()}


def fmax_weighted(
    labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, step: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centric Fmax (PTB-XL benchmark / CAFA) under ``weights`` (B, N) → (Fmax (B,), threshold (B,)).

    For each threshold t on the grid 0, step, …, 1: precision is averaged over records
    with at least one label predicted (p >= t), recall over records with at least one
    true label; F(t) = 2PR/(P+R); Fmax = max_t F(t).

    Records without any true label (scored under the ``keep_all`` convention) therefore count in
    precision whenever something is predicted for them (each such prediction is a false
    positive) and never in recall (undefined for them). Under ``drop_unlabeled`` (the PTB-XL
    benchmark, where Fmax comes from) they are not scored, so both averages run over the same
    records and this is the benchmark's definition.
    """
    y, p = label_arrays(labels, probs)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    grid = fmax_grid(step)
    has_true, prec_t, rec_t, has_pred_t = fmax_record_terms(y, p, grid)
    f = np.full((w.shape[0], len(grid)), np.nan)
    rec_den = w @ has_true
    for k in range(len(grid)):
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = (w @ prec_t[k]) / (w @ has_pred_t[k])
            rec = (w @ rec_t[k]) / rec_den
            f[:, k] = np.where((prec + rec) > 0, 2 * prec * rec / (prec + rec), 0.0)
    f = np.where(np.isfinite(f), f, -np.inf)
    best = f.argmax(1)
    fmax = f[np.arange(len(best)), best]
    return np.where(np.isfinite(fmax), fmax, np.nan), grid[best]


def fmax_record_terms(y: np.ndarray, p: np.ndarray, grid: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-record terms of Fmax at each threshold of ``grid`` (K,) for bool ``y``/float ``p`` (N, C).

    Returns ``has_true`` (N,), precision and recall of each record (K, N) (0 where undefined)
    and ``has_pred`` (K, N): whether anything is predicted (p >= t). One pass over the scores:
    a score counts as predicted at threshold k exactly when k < searchsorted(grid, score, 'right').
    """
    n, k = y.shape[0], len(grid)
    level = np.where(np.isnan(p), 0, np.searchsorted(grid, p, side="right"))  # NaN >= t is False
    flat = (level * n + np.arange(n)[:, None]).ravel()
    at = np.bincount(flat, minlength=(k + 1) * n).reshape(k + 1, n)  # labels per record and level
    hits = np.bincount(flat[np.asarray(y).ravel()], minlength=(k + 1) * n).reshape(k + 1, n)
    for t in range(k - 1, 0, -1):  # suffix sums over levels: row t = labels with level >= t
        at[t] += at[t + 1]
        hits[t] += hits[t + 1]
    n_pred, tp = at[1:], hits[1:]  # threshold t: labels with level > t, (K, N)
    n_true = y.sum(1)
    has_true, has_pred = n_true > 0, n_pred > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(has_pred, tp / np.maximum(n_pred, 1), 0.0)
        rec = np.where(has_true, tp / np.maximum(n_true, 1), 0.0)
    return has_true, prec, rec, has_pred


def fmax_grid(step: float) -> np.ndarray:
    """Thresholds 0, step, …, 1 of Fmax (rounded to 10 decimals)."""
    return np.round(np.arange(0.0, 1.0 + step / 2, step), 10)


def fmax(labels: np.ndarray, probs: np.ndarray, step: float = 0.01) -> tuple[float, float]:
    """Sample-centric Fmax over (N, C) labels/probabilities → (Fmax, best threshold)."""
    y, _ = label_arrays(labels, probs)
    f, t = fmax_weighted(labels, probs, np.ones((1, y.shape[0])), step)
    return float(f[0]), float(t[0])
