"""Out-of-distribution (OOD) detector: a shrinkage Mahalanobis distance in a feature space that
sees domain shift.

Per record the feature vector (:func:`ood_features`) concatenates

- the model's view: each branch's add-on latent map averaged over leads and time (D_g values
  per branch, in branch order), and
- the signal's view: per lead, log10 of the power (mV²) in the frequency bands
  :data:`BAND_EDGES_HZ` (the last band ends at the Nyquist frequency) of the high-passed model
  input, from a Welch periodogram with ~1.28 s windows.

The network is trained to be invariant to what separates archives (noise spectra, gain,
filtering), so its latents alone rank real PTB-XL against the synthetic archive poorly (AUROC
~0.72 under the demo model); the band powers see those differences, the latents what the model
makes of the beats. :func:`fit_ood` standardises every feature with its mean and standard
deviation over the *training* records, fits a Ledoit-Wolf shrinkage covariance there, and sets
the flag threshold at the ``1 - flag_rate`` quantile of the *validation* records' scores, so
about ``flag_rate`` of new in-distribution records are flagged (the distance is fitted on other
records than those that set the threshold, so the rate holds out of sample). The score is

    ood_score = sqrt(z' P z / F)

(z the standardised features, P the shrinkage precision, F the number of features): about 1
for a typical training record, larger = less like the training data. The calibration is plain
data in checkpoint ``meta["ood"]`` (:data:`OOD_METHOD`, :data:`OOD_VERSION`).

A checkpoint without a calibration, or with one of an older method (:data:`LEGACY_METHODS`,
before checkpoint format 2), gets the uncalibrated ranking score ``-mean_g max_j s_gj`` (the
mean over branches of the highest prototype similarity, negated) and no flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.signal import welch

from ecgproto.errors import UserError

OOD_METHOD = "feature_mahalanobis"
OOD_VERSION = 2
LEGACY_METHODS = ("branch_max_similarity_z",)
BAND_EDGES_HZ = (0.5, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0)  # lower edges; the last band ends at fs / 2
WELCH_WINDOW_S = 1.28
MIN_FIT_RECORDS = 2
_QUANTILE_GRID = np.linspace(0.0, 1.0, 1001)


# ---- features ---------------------------------------------------------------------------------
def band_edges(fs: float) -> list[float]:
    """Band edges (Hz) used at sampling rate ``fs``: :data:`BAND_EDGES_HZ` below Nyquist, then fs / 2."""
    nyquist = fs / 2.0
    return [e for e in BAND_EDGES_HZ if e < nyquist] + [nyquist]


def band_powers(signals: np.ndarray, fs: float, edges: Sequence[float] | None = None) -> np.ndarray:
    """log10 band power (mV²) per lead and band: (N, 12, T) → (N, 12 · n_bands) float64, lead-major."""
    x = np.asarray(signals, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"signals must be (N, leads, T), got {x.shape}")
    edges = list(band_edges(fs) if edges is None else edges)
    if len(x) == 0:
        return np.zeros((0, x.shape[1] * (len(edges) - 1)))
    nperseg = min(x.shape[2], max(8, int(round(WELCH_WINDOW_S * fs))))
    freqs, psd = welch(x, fs=fs, nperseg=nperseg, axis=2)
    df = freqs[1] - freqs[0]
    upper = np.r_[edges[1:-1], np.inf]  # the last band includes the Nyquist bin
    bands = [psd[:, :, (freqs >= lo) & (freqs < hi)].sum(axis=2) * df for lo, hi in zip(edges[:-1], upper)]
    return np.log10(np.stack(bands, axis=2) + 1e-12).reshape(len(x), -1)


def feature_width(model: torch.nn.Module, edges: Sequence[float]) -> int:
    """F, the length of :func:`ood_features` for ``model`` and band ``edges``."""
    return sum(b.proto_dim for b in model.branches.values()) + 12 * (len(edges) - 1)


def pooled_latents(branch_outputs: Mapping[str, Any]) -> np.ndarray:
    """Each branch's add-on latent (B, D, L, T') averaged over L and T', concatenated: (B, sum D) float64."""
    parts = [out.latent.flatten(2).mean(dim=2).double().cpu().numpy() for out in branch_outputs.values()]
    return np.concatenate(parts, axis=1)


def ood_features(branch_outputs: Mapping[str, Any], signals: np.ndarray, fs: float,
                 edges: Sequence[float] | None = None) -> np.ndarray:
    """The OOD feature vectors (N, F) float64: pooled latents then band powers (module docstring).

    ``branch_outputs`` are the model's per-branch outputs for ``signals`` (N, 12, T) mV, the
    high-passed model input at ``fs`` Hz."""
    return np.concatenate([pooled_latents(branch_outputs), band_powers(signals, fs, edges)], axis=1)


@torch.no_grad()
def extract_ood_features(model: torch.nn.Module, signals: Any, rows: np.ndarray | None = None,
                         batch_size: int = 256, edges: Sequence[float] | None = None) -> np.ndarray:
    """:func:`ood_features` of ``signals[rows]`` ((N, 12, T) mV, a memmap is fine) in batches, eval mode."""
    rows = np.arange(len(signals)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = np.ascontiguousarray(signals[rows[start:start + batch_size]], dtype=np.float32)
            out = model(torch.from_numpy(batch).to(next(model.parameters()).device))
            parts.append(ood_features(out.branch, batch, model.fs, edges))
    finally:
        model.train(was_training)
    if parts:
        return np.concatenate(parts)
    return np.zeros((0, feature_width(model, band_edges(model.fs) if edges is None else edges)))


# ---- calibration --------------------------------------------------------------------------------
def fit_ood(train_features: np.ndarray, val_features: np.ndarray, flag_rate: float = 0.05, *,
            branches: Sequence[str], fs: float) -> dict:
    """Fit the detector on in-distribution features (N, F): distance on ``train_features``, flag
    threshold on ``val_features`` (other records), for records scored at ``fs`` Hz.

    Returns plain data for checkpoint ``meta["ood"]``: ``method``, ``version``, ``branches``,
    ``band_edges_hz``, ``n_features``, the standardisation ``mean``/``scale`` (F), the shrinkage
    ``precision`` (F × F) and ``shrinkage``, ``flag_rate``, ``threshold`` (scores ``>= threshold``
    are flagged), the validation score ``quantiles`` on a 0..1 grid of 1001 points (to re-threshold
    at another rate), ``n_fit`` and ``n_val``.
    """
    from sklearn.covariance import LedoitWolf

    if not 0.0 < flag_rate < 1.0:
        raise UserError(f"flag_rate must be in (0, 1), got {flag_rate}")
    train = np.asarray(train_features, dtype=np.float64)
    val = np.asarray(val_features, dtype=np.float64)
    if train.ndim != 2 or val.ndim != 2 or train.shape[1] != val.shape[1]:
        raise ValueError(f"OOD features must be (N, F) with the same F, got {train.shape} and {val.shape}")
    for name, x in (("training", train), ("validation", val)):
        if len(x) < MIN_FIT_RECORDS:
            raise UserError(f"OOD calibration needs at least {MIN_FIT_RECORDS} {name} records, got {len(x)}")
        if not np.isfinite(x).all():
            raise ValueError(f"OOD calibration: the {name} features are not all finite")
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    lw = LedoitWolf(assume_centered=True).fit((train - mean) / scale)
    calib = {"method": OOD_METHOD, "version": OOD_VERSION, "branches": list(branches),
             "band_edges_hz": [float(e) for e in band_edges(fs)], "n_features": int(train.shape[1]),
             "mean": mean.tolist(), "scale": scale.tolist(), "precision": lw.precision_.tolist(),
             "shrinkage": float(lw.shrinkage_), "n_fit": int(len(train)), "n_val": int(len(val))}
    calib["quantiles"] = np.quantile(ood_scores(val, calib), _QUANTILE_GRID).tolist()
    calib["flag_rate"] = float(flag_rate)
    calib["threshold"] = ood_threshold(calib, flag_rate)
    return calib


def ood_threshold(calibration: Mapping[str, Any], flag_rate: float) -> float:
    """Score threshold that flags ``flag_rate`` of the calibration (validation) records."""
    if not 0.0 < flag_rate < 1.0:
        raise UserError(f"OOD flag rate must be in (0, 1), got {flag_rate}")
    return float(np.interp(1.0 - flag_rate, _QUANTILE_GRID, np.asarray(calibration["quantiles"])))


def ood_scores(features: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """OOD score per record (N,) float64 from features (N, F) under a current calibration."""
    x = np.asarray(features, dtype=np.float64)
    n_features = int(calibration["n_features"])
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"OOD features must be (N, {n_features}), got {x.shape}")
    z = (x - np.asarray(calibration["mean"])) / np.asarray(calibration["scale"])
    d2 = np.einsum("ij,jk,ik->i", z, np.asarray(calibration["precision"]), z)
    return np.sqrt(np.maximum(d2, 0.0) / n_features)


def uncalibrated_scores(similarities: np.ndarray, prototype_branches: Sequence[str]) -> np.ndarray:
    """Ranking-only score without a calibration: ``-mean_g max_j s_gj`` (N,) from similarities (N, P)."""
    sims = np.asarray(similarities, dtype=np.float64)
    branches = np.asarray(list(prototype_branches), dtype=object)
    if sims.ndim != 2 or sims.shape[1] != len(branches):
        raise ValueError(f"similarities must be (N, {len(branches)}), got {sims.shape}")
    names = list(dict.fromkeys(branches.tolist()))
    if not len(sims) or not names:
        return np.zeros(len(sims))
    return -np.stack([sims[:, branches == g].max(axis=1) for g in names], axis=1).mean(axis=1)


# ---- checkpoint meta ----------------------------------------------------------------------------
def is_current(calibration: Mapping[str, Any] | None) -> bool:
    """Whether ``calibration`` is of this detector (False for None or a legacy method)."""
    return isinstance(calibration, Mapping) and calibration.get("method") == OOD_METHOD


def legacy_note(calibration: Mapping[str, Any]) -> str:
    """The one-line note for a checkpoint whose OOD calibration predates this detector."""
    return (f"the checkpoint's OOD calibration (method {calibration.get('method')!r}) predates the feature-space "
            f"detector ({OOD_METHOD!r}): ood_score is the uncalibrated -mean branch max similarity and ood_flag is "
            "empty; recalibrate with `ecgproto score CHECKPOINT DATA --calibrate-ood --out OUT`")


def _finite(value: Any, n: int) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def calibration_problem(calibration: Any, model: torch.nn.Module) -> str | None:
    """Why ``calibration`` (checkpoint ``meta["ood"]``) cannot score ``model``'s records, or None.

    A legacy calibration is not checked (it is never used: see :func:`legacy_note`)."""
    if not isinstance(calibration, Mapping):
        return f"it is {type(calibration).__name__}, not a mapping"
    method = calibration.get("method")
    if method in LEGACY_METHODS:
        return None
    if method != OOD_METHOD:
        return f"unknown method {method!r} (expected {OOD_METHOD!r})"
    if calibration.get("version") != OOD_VERSION:
        return f"version {calibration.get('version')!r}, this ecgproto reads version {OOD_VERSION}"
    branches = list(getattr(model, "branches", {}))
    if list(calibration.get("branches") or []) != branches:
        return f"it is for branches {calibration.get('branches')}, the model has {branches}"
    edges = calibration.get("band_edges_hz")
    if edges != band_edges(model.fs):
        return f"band edges {edges} do not fit the model's {model.fs} Hz"
    n = feature_width(model, edges)
    if calibration.get("n_features") != n:
        return f"n_features {calibration.get('n_features')!r}, the model's features have {n}"
    precision = calibration.get("precision")
    if not (_finite(calibration.get("mean"), n) and _finite(calibration.get("scale"), n)
            and all(v > 0 for v in calibration["scale"])):
        return f"it needs a finite mean and a positive scale of {n} values"
    if not (isinstance(precision, (list, tuple)) and len(precision) == n and all(_finite(r, n) for r in precision)):
        return f"it needs a finite {n} x {n} precision matrix"
    if not (_finite(calibration.get("quantiles"), len(_QUANTILE_GRID)) and _finite([calibration.get("threshold")], 1)
            and _finite([calibration.get("flag_rate")], 1) and 0 < calibration["flag_rate"] < 1):
        return f"it needs {len(_QUANTILE_GRID)} finite quantiles, a finite threshold and a flag rate in (0, 1)"
    return None
