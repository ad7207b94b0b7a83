"""Calibration of predicted probabilities: reliability bins, expected calibration error, and the
logistic calibration slope and intercept."""

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


def calibration_fit(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-6, max_iter: int = 50) -> dict[str, float]:
    """Logistic recalibration of binary ``labels`` on ``probs`` (any shape, flattened; Cox 1958).

    ``slope``: b of ``y ~ a + b·logit(p)`` — 1 is ideal, below 1 the probabilities are too extreme
    (overconfident), above 1 too timid. ``intercept``: a of ``y ~ a + logit(p)`` (slope fixed at 1,
    "calibration in the large") — 0 is ideal, below 0 the probabilities are too high on average.
    NaN when there is only one class, or the classes are separated (the slope then has no finite
    maximum-likelihood value). ``n`` is the number of predictions.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels {np.shape(labels)} and probabilities {np.shape(probs)} differ in shape")
    z = np.log(p) - np.log1p(-p)
    out = {"n": float(len(y)), "slope": float("nan"), "intercept": float("nan")}
    if len(y) == 0 or y.min() == y.max():
        return out
    x = np.column_stack([np.ones_like(z), z])
    coef = _newton(x, y, np.zeros(len(y)), max_iter)
    if coef is not None:
        out["slope"] = float(coef[1])
    intercept = _newton(x[:, :1], y, z, max_iter)
    if intercept is not None:
        out["intercept"] = float(intercept[0])
    return out


def _newton(x: np.ndarray, y: np.ndarray, offset: np.ndarray, max_iter: int) -> np.ndarray | None:
    """Maximum-likelihood logistic coefficients of ``y ~ x·β + offset`` (None when they diverge)."""
    beta = np.zeros(x.shape[1])
    for _ in range(max_iter):
        eta = np.clip(x @ beta + offset, -500, 500)
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        hess = x.T @ (x * w[:, None])
        try:
            step = np.linalg.solve(hess + 1e-12 * np.eye(len(beta)), x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e3:
            return None
        if np.abs(step).max() < 1e-8:
            return beta
    return None  # no convergence: separated classes
