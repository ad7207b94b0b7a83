"""Out-of-distribution score from prototype similarities.

A record that resembles no prototype is unlike the training data. Per branch g,
``m_g`` is the record's highest similarity to any prototype of that branch. The
branches' similarity scales differ, so each ``m_g`` is standardised with the mean and
standard deviation of ``m_g`` on the validation fold, and

    ood_score = mean_g (mean_val(m_g) - m_g) / std_val(m_g)

(larger = less like every prototype; about 0 for a typical validation record).
``calibrate_ood`` fits those statistics and the flag threshold, the
``1 - flag_rate`` quantile of the validation scores, so a chosen fraction of
in-distribution records is flagged. It is stored in checkpoint ``meta["ood"]``.
Without a calibration the score falls back to ``-mean_g m_g`` (uncalibrated, ranking
only) and no record is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OOD_METHOD = "branch_max_similarity_z"
_QUANTILE_GRID = np.linspace(0.0, 1.0, 1001)


def _branch_columns(prototype_branches: Sequence[str]) -> dict[str, np.ndarray]:
    """Branch name → column indices, in first-appearance order."""
    branches = np.asarray(list(prototype_branches), dtype=object)
    names = list(dict.fromkeys(branches.tolist()))
    return {name: np.flatnonzero(branches == name) for name in names}


def branch_max_similarity(similarities: np.ndarray, prototype_branches: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per-branch maximum similarity: (N, P) similarities → ((N, G) float64, branch names)."""
    sims = np.asarray(similarities, dtype=np.float64)
    if sims.ndim != 2 or sims.shape[1] != len(prototype_branches):
        raise ValueError(f"similarities must be (N, {len(prototype_branches)}), got {sims.shape}")
    cols = _branch_columns(prototype_branches)
    if sims.shape[0] == 0:
        return np.zeros((0, len(cols))), list(cols)
    return np.stack([sims[:, c].max(axis=1) for c in cols.values()], axis=1), list(cols)


def calibrate_ood(similarities_val: np.ndarray, flag_rate: float = 0.05, *,
                  prototype_branches: Sequence[str] | None = None) -> dict:
    """Fit the OOD score on validation similarities (N, P) of in-distribution records.

    ``prototype_branches`` (P,) names each prototype's branch (None = one pool).
    Returns plain data for checkpoint ``meta["ood"]``: method, branches, per-branch
    ``mean``/``std`` of the max similarity, ``flag_rate``, ``threshold`` (scores
    ``>= threshold`` are flagged), the validation score ``quantiles`` on a 0..1 grid
    of 1001 points (to re-threshold at another rate) and ``n_val``.
    """
    if not 0.0 < flag_rate < 1.0:
        raise ValueError(f"flag_rate must be in (0, 1), got {flag_rate}")
    sims = np.asarray(similarities_val, dtype=np.float64)
    branches = list(prototype_branches) if prototype_branches is not None else ["all"] * sims.shape[-1]
    maxes, names = branch_max_similarity(sims, branches)
    if len(maxes) < 2:
        raise ValueError(f"OOD calibration needs at least 2 validation records, got {len(maxes)}")
    mean = maxes.mean(axis=0)
    std = maxes.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    calib = {"method": OOD_METHOD, "branches": names, "mean": mean.tolist(), "std": std.tolist(),
             "n_val": int(len(maxes))}
    scores = ood_scores(sims, branches, calib)
    calib["quantiles"] = np.quantile(scores, _QUANTILE_GRID).tolist()
    calib["flag_rate"] = float(flag_rate)
    calib["threshold"] = ood_threshold(calib, flag_rate)
    return calib


def ood_threshold(calibration: dict, flag_rate: float) -> float:
    """Score threshold that flags ``flag_rate`` of the calibration (validation) records."""
    if not 0.0 < flag_rate < 1.0:
        raise ValueError(f"OOD flag rate must be in (0, 1), got {flag_rate}")
    return float(np.interp(1.0 - flag_rate, _QUANTILE_GRID, np.asarray(calibration["quantiles"])))


def ood_scores(similarities: np.ndarray, prototype_branches: Sequence[str],
               calibration: dict | None) -> np.ndarray:
    """OOD score per record (N,) float64 from similarities (N, P); see the module docstring."""
    maxes, names = branch_max_similarity(similarities, prototype_branches)
    if calibration is None:
        return -maxes.mean(axis=1)
    if calibration.get("method") != OOD_METHOD:
        raise ValueError(f"unknown OOD calibration method {calibration.get('method')!r}; expected {OOD_METHOD!r}")
    if list(calibration["branches"]) != names and calibration["branches"] != ["all"]:
        raise ValueError(f"OOD calibration is for branches {calibration['branches']}, model has {names}")
    if calibration["branches"] == ["all"] and names != ["all"]:
        maxes = np.asarray(similarities, dtype=np.float64).max(axis=1, keepdims=True)
    mean = np.asarray(calibration["mean"], dtype=np.float64)
    std = np.asarray(calibration["std"], dtype=np.float64)
    return ((mean - maxes) / std).mean(axis=1)
