"""Calibration: reliability bins and expected calibration error."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd


def reliability_bins(
    labels: np.ndarray,
    probs: np.ndarray,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> pd.DataFrame:
    """Reliability table of binary ``labels``/``probs`` (any shape, flattened).

    Returns one row per non-empty bin: ``bin_lo``, ``bin_hi``, ``mean_prob`` (mean
    predicted probability), ``frac_pos`` (observed fraction of positives), ``count``.
    Bins are half-open ``[lo, hi)`` except the last, which includes 1.0; ``uniform``
    bins split [0, 1] evenly, ``quantile`` bins hold equal numbers of predictions.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {np.shape(labels)} and probabilities {np.shape(probs)} differ in shape")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1))) if len(p) else np.array([0.0, 1.0])
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        raise ValueError(f"unknown binning strategy {strategy!r}; use 'uniform' or 'quantile'")
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(idx, minlength=len(edges) - 1)
    sum_p = np.bincount(idx, weights=p, minlength=len(edges) - 1)
    sum_y = np.bincount(idx, weights=y, minlength=len(edges) - 1)
    keep = count > 0
    return pd.DataFrame({
        "bin_lo": edges[:-1][keep],
        "bin_hi": edges[1:][keep],
        "mean_prob": sum_p[keep] / count[keep],
        "frac_pos": sum_y[keep] / count[keep],
        "count": count[keep].astype(np.int64),
    })


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE = Σ_bins (count / total) · |frac_pos − mean_prob| of a :func:`reliability_bins` table."""
    total = table["count"].sum()
    if total == 0:
        return float("nan")
    return float((table["count"] / total * (table["frac_pos"] - table["mean_prob"]).abs()).sum())
