"""Patient-level bootstrap: resample patients with replacement, percentile confidence intervals.

A resample draws ``n_patients`` patients with replacement; every record of a drawn
patient enters the resample as often as its patient was drawn. The evaluation works from the
patient draw counts (:attr:`BootstrapPlan.counts`, (P, B) small integers) :data:`BOOT_BLOCK`
resamples at a time (``resampled.py``); :meth:`BootstrapPlan.weights` gives the equivalent
record multiplicities (B, N), which the vectorised metrics in ``metrics.py`` accept directly.
The drawn patient indices are kept (and saved by the report) so every interval can be recomputed.

An interval needs cases of both classes to resample: a label is given an interval only when at
least :data:`MIN_CI_PATIENTS` distinct patients have a positive record and as many have a
negative one (:func:`interval_defined`). Below that the percentile bootstrap is degenerate or
badly overconfident (1 positive against 1 negative gives AUROC [1, 1]); the interval is NaN,
shown as :data:`TOO_FEW_TEXT`, and the point estimate is kept. A macro (or other summary)
interval over several labels is given when at least one of its labels has enough cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd


BOOT_BLOCK = 100  # resamples evaluated at once (count_blocks)
MIN_CI_PATIENTS = 5  # positive and negative patients a label needs for an interval
TOO_FEW_TEXT = "n/a (too few positives/negatives)"


@dataclass(frozen=True)
class BootstrapPlan:
    """Resampling plan over patients.

    ``patients`` (P,) unique patient ids; ``record_patient`` (N,) index into ``patients``
    for each record; ``draws`` (B, P) int32 indices into ``patients`` drawn with replacement.
    """

    patients: np.ndarray
    record_patient: np.ndarray
    draws: np.ndarray
    seed: int

    @property
    def n_resamples(self) -> int:
        return int(self.draws.shape[0])

    @property
    def n_patients(self) -> int:
        return int(len(self.patients))

    def patient_counts(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """How often each patient is drawn in resamples ``start:stop`` (default all), (b, P) float64."""
        return self.counts[:, start:stop].T.astype(np.float64)

    @cached_property
    def counts(self) -> np.ndarray:
        """How often each patient is drawn in each resample, (P, B) uint8 (wider past 255 draws); built once."""
        out = np.zeros((self.n_patients, self.n_resamples), dtype=np.uint8)
        for start in range(0, self.n_resamples, BOOT_BLOCK):
            draws = self.draws[start:start + BOOT_BLOCK]
            b = len(draws)
            flat = draws.astype(np.int64) * b + np.arange(b, dtype=np.int64)[:, None]
            block = np.bincount(flat.ravel(), minlength=self.n_patients * b).reshape(self.n_patients, b)
            need = np.min_scalar_type(int(block.max(initial=0)))
            if need.itemsize > out.dtype.itemsize:
                out = out.astype(need)
            out[:, start:start + b] = block
        return out

    def count_blocks(self, block: int = BOOT_BLOCK) -> Iterator[np.ndarray]:
        """:attr:`counts` of resamples ``0:block``, ``block:2*block``, …, in order: (P, b) views."""
        step = max(int(block), 1)
        for start in range(0, self.n_resamples, step):
            yield self.counts[:, start:start + step]

    def weights(self, mask: np.ndarray | None = None, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Record multiplicities (b, N) of resamples ``start:stop`` (default all); (b, mask.sum())
        for the records selected by ``mask``."""
        rp = self.record_patient if mask is None else self.record_patient[np.asarray(mask, dtype=bool)]
        return self.patient_counts(start, stop)[:, rp]

    def save(self, path: str | Path) -> Path:
        """Write the plan to ``path`` (.npz; atomic)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp, patients=self.patients, record_patient=self.record_patient, draws=self.draws,
            seed=np.int64(self.seed),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BootstrapPlan:
        """Read a plan written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["patients"], z["record_patient"], z["draws"], int(z["seed"]))


def patient_bootstrap(patient_ids: np.ndarray, n_resamples: int, seed: int) -> BootstrapPlan:
    """Plan ``n_resamples`` patient-level resamples for records with ``patient_ids`` (N,).

    Records with a missing patient id count as their own patient.
    """
    ids = np.asarray(patient_ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("patient_ids must be a non-empty 1-D array (one id per record)")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    keys = np.array([f"record:{i}" if _missing(v) else str(v) for i, v in enumerate(ids)])
    patients, record_patient = np.unique(keys, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(patients), size=(n_resamples, len(patients)), dtype=np.int32)
    return BootstrapPlan(patients, record_patient.astype(np.int64), draws, seed)


def _missing(value: object) -> bool:
    return bool(pd.isna(value))


def fill_undefined(samples: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Per-label resample values (B, C) with undefined (NaN) entries replaced by the whole-sample value ``point`` (C,).

    A macro average over the result (NaN-aware) uses a fixed label set: the labels defined in the
    whole sample. Averaging over whichever labels happen to be defined per resample would bias the
    interval (rare labels, whose only positive patient may not be drawn, drop out more often).
    """
    s = np.asarray(samples, dtype=np.float64)
    return np.where(np.isfinite(s), s, np.atleast_2d(point))


def class_patient_counts(y: np.ndarray, record_patient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label, the distinct patients with a positive record and with a negative record:
    ``y`` (N, C) 0/1 and ``record_patient`` (N,) patient of each record → ((C,), (C,)) int64."""
    y = np.asarray(y).astype(bool)
    _, patient = np.unique(np.asarray(record_patient), return_inverse=True)
    n_patients = int(patient.max()) + 1 if len(patient) else 0
    counts = []
    for cls in (y, ~y):
        has = np.zeros((n_patients, y.shape[1]), dtype=bool)
        np.logical_or.at(has, patient, cls)
        counts.append(has.sum(axis=0).astype(np.int64))
    return counts[0], counts[1]


def interval_defined(n_pos_patients: np.ndarray, n_neg_patients: np.ndarray,
                     minimum: int = MIN_CI_PATIENTS) -> np.ndarray:
    """Whether a label has enough cases for a bootstrap interval (module docstring), elementwise."""
    return (np.asarray(n_pos_patients) >= minimum) & (np.asarray(n_neg_patients) >= minimum)


def percentile_ci(samples: np.ndarray, level: float,
                  defined: np.ndarray | bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap ``samples`` (B, ...) at ``level`` (e.g. 0.95), NaN-aware.

    Resamples where the metric is undefined (NaN) are left out; where fewer than two
    resamples are defined, or where ``defined`` (broadcast to ``samples.shape[1:]``; see
    :func:`interval_defined`) is False, the interval is NaN.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    s = np.asarray(samples, dtype=np.float64)
    alpha = (1 - level) / 2
    enough = np.isfinite(s).sum(0) >= 2
    if defined is not None:
        enough = enough & np.asarray(defined, dtype=bool)
    with np.errstate(invalid="ignore"):
        safe = np.where(enough[None], s, 0.0) if s.ndim > 1 else (s if enough else np.zeros_like(s))
        lo = np.nanquantile(safe, alpha, axis=0)
        hi = np.nanquantile(safe, 1 - alpha, axis=0)
    return np.where(enough, lo, np.nan), np.where(enough, hi, np.nan)
