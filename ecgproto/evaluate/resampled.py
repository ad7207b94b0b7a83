"""Bootstrap metrics computed from how often each patient is drawn (counts), not from record weights.

A resample is fully described by its patient draw counts c (P,) (:attr:`BootstrapPlan.counts`):
record i enters it c[patient(i)] times. Every bootstrapped metric of the evaluation is a function
of sums of record statistics weighted by c, so each is precomputed once per (labels, scores,
records) as a statistic × patient matrix X and then evaluated for a block of b resamples as one
product with the (P, b) counts:

* AUROC and AUPRC (:class:`RankedLabels`): per label the records are sorted once; the sums
  needed are, per tie group holding a positive, the positive and negative weight in the group
  and the negative weight in the gap below it: one sparse row per statistic, one nonzero per
  record. The counts are whole numbers, so these sums are exact (float32 where every sum stays
  below 2**24) and AUROC equals :func:`~ecgproto.evaluate.metrics.auroc_weighted` bit for bit;
  AUPRC adds the same per-group terms in another order (equal to ~1e-16).
* Brier score and the confusion counts at thresholds (:class:`PatientSums`; the counts, hence
  F1/sensitivity/specificity/PPV, exact), and sample-centric Fmax (:class:`FmaxTable`):
  per-patient sums of the record terms, a dense product.

No (resamples × records) weight matrix is built: memory holds the plan's (P, B) uint8 counts,
the tables above and one block's products.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ecgproto.evaluate.bootstrap import BOOT_BLOCK, BootstrapPlan
from ecgproto.evaluate.metrics import fmax_grid, fmax_record_terms, rates_from_confusion
from ecgproto.metrics import label_arrays

EXACT_FLOAT32 = 2**24  # integers below this are exact in float32


def _patient_sum(record_patient: np.ndarray, n_patients: int, values: np.ndarray) -> np.ndarray:
    """Per-patient sums of record rows ``values`` (N, m) → (P, m) float64."""
    n = len(record_patient)
    agg = sp.csr_matrix((np.ones(n), (record_patient, np.arange(n))), shape=(n_patients, n))
    return np.asarray(agg @ np.asarray(values, dtype=np.float64).reshape(n, -1))


class RankedLabels:
    """Per-label AUROC and AUPRC of resamples from patient draw counts (module docstring).

    ``labels``/``probs`` (N, C) of the scored records, ``record_patient`` (N,) their patient
    index in ``0..n_patients-1``. Per label, over the K ascending tie groups holding a positive,
    the sparse rows are ``P_0..P_K-1`` (positive weight of group k) then the negative weight
    interleaved as ``G_0, T_0, G_1, T_1, …, T_K-1, G_K`` (G_k: the gap below group k, G_K: above
    the last; T_k: the ties within group k). AUROC needs one cumulative sum (of the positives),
    AUPRC a second (of the negatives); both stay in the exact integer dtype (float32 when every
    sum is below 2**24) and the products are accumulated in float64.
    """

    def __init__(self, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray, n_patients: int) -> None:
        y, p = label_arrays(labels, probs)
        rp = np.asarray(record_patient, dtype=np.int64)
        most = int(np.bincount(rp, minlength=n_patients).max()) if len(rp) else 0
        # any (cumulative) sum is at most (patients drawn) × (records of the largest patient)
        self.dtype = np.float32 if n_patients * max(most, 1) < EXACT_FLOAT32 else np.float64
        self.n_groups: list[int] = []
        self.matrices: list[sp.csr_matrix] = []
        for c in range(y.shape[1]):
            order = np.argsort(p[:, c], kind="stable")
            s, yc = p[order, c], y[order, c]
            group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # tie groups, as metrics._tie_groups
            has_pos = np.zeros(int(group[-1]) + 1 if len(group) else 0, dtype=bool)
            has_pos[group[yc]] = True
            k = (np.cumsum(has_pos) - 1)[group]  # index of the positive group at or below each record
            n_k = int(has_pos.sum())
            row = np.where(yc, k, n_k + np.where(has_pos[group], 2 * k + 1, 2 * k + 2))
            self.n_groups.append(n_k)
            self.matrices.append(sp.csr_matrix((np.ones(len(row), dtype=self.dtype), (row, rp[order])),
                                               shape=(3 * n_k + 1, n_patients)))

    def evaluate(self, counts: np.ndarray, auprc: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """AUROC and AUPRC (b, C) for patient draw counts ``counts`` (P, b); NaN where undefined.

        ``auprc=False`` skips AUPRC (returned as None). All sums are whole numbers (exact)."""
        c = np.ascontiguousarray(counts, dtype=self.dtype)
        b = c.shape[1]
        auroc = np.full((b, len(self.matrices)), np.nan)
        ap = np.full((b, len(self.matrices)), np.nan) if auprc else None
        for j, (m, n_k) in enumerate(zip(self.matrices, self.n_groups)):
            if n_k == 0:
                continue
            s = m @ c  # whole numbers, exact in self.dtype (so are the sums and cumulative sums below)
            pos, gap, tie = s[:n_k], s[n_k::2], s[n_k + 1::2]
            neg = gap[:n_k] + tie  # negatives in the gap below group k and in group k
            ctp = np.cumsum(pos[::-1], axis=0)[::-1]  # positives at or above group k
            tot_pos = ctp[0].astype(np.float64)
            tot_neg = (neg.sum(0) + gap[n_k]).astype(np.float64)
            # Σ_k P_k (negatives below k + ½ ties in k), summed by parts: each negative × positives above it
            num = (np.einsum("kb,kb->b", neg, ctp, dtype=np.float64)
                   - 0.5 * np.einsum("kb,kb->b", tie, pos, dtype=np.float64))
            den = tot_pos * tot_neg
            with np.errstate(invalid="ignore", divide="ignore"):
                auroc[:, j] = np.where(den > 0, num / den, np.nan)
            if ap is None:
                continue
            seen = ctp + (tot_neg.astype(self.dtype) - (np.cumsum(neg, axis=0) - tie))  # records at or above group k
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(seen > 0, ctp / seen.astype(np.float64), 0.0)
                ap[:, j] = np.where(tot_pos > 0, np.einsum("kb,kb->b", pos, precision, dtype=np.float64) / tot_pos,
                                    np.nan)
        return auroc, ap


class PatientSums:
    """Brier score and threshold metrics (F1, sensitivity, specificity, PPV) of resamples from counts.

    ``thresholds`` (C,) or None (Brier only); see :class:`RankedLabels` for the other arguments.
    """

    def __init__(self, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray, n_patients: int,
                 thresholds: np.ndarray | None = None) -> None:
        y, p = label_arrays(labels, probs)
        parts = [np.ones((len(y), 1)), (p - y) ** 2]
        if thresholds is not None:
            pred = p >= np.asarray(thresholds, dtype=np.float64)[None, :]
            parts += [pred & y, pred & ~y, ~pred & y]  # TP, FP, FN; TN = records − the three (exact)
        self.n_labels = y.shape[1]
        self.table = np.hstack([_patient_sum(record_patient, n_patients, part) for part in parts])

    def evaluate(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """``brier`` and, with thresholds, ``f1``/``sensitivity``/``specificity``/``ppv``, each (b, C)."""
        s = np.asarray(counts, dtype=np.float64).T @ self.table
        c = self.n_labels
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {"brier": s[:, 1:1 + c] / s[:, :1]}
        if s.shape[1] > 1 + c:
            tp, fp, fn = (s[:, 1 + c * (i + 1):1 + c * (i + 2)] for i in range(3))
            out.update(rates_from_confusion(tp, fp, fn, s[:, :1] - tp - fp - fn))
        return out


class FmaxTable:
    """Sample-centric Fmax of resamples from counts (definition: :func:`~ecgproto.evaluate.metrics.fmax_weighted`)."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray, n_patients: int,
                 step: float) -> None:
        y, p = label_arrays(labels, probs)
        has_true, prec, rec, has_pred = fmax_record_terms(y, p, fmax_grid(step))
        self.n_grid = len(prec)
        self.table = np.hstack([_patient_sum(record_patient, n_patients, x)
                                for x in (has_true, prec.T, rec.T, has_pred.T)])

    def evaluate(self, counts: np.ndarray) -> np.ndarray:
        """Fmax (b,) of patient draw counts ``counts`` (P, b); NaN where no threshold has a finite F."""
        s = np.asarray(counts, dtype=np.float64).T @ self.table
        k = self.n_grid
        rec_den, prec_num, rec_num, prec_den = s[:, :1], s[:, 1:1 + k], s[:, 1 + k:1 + 2 * k], s[:, 1 + 2 * k:]
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = prec_num / prec_den
            rec = rec_num / rec_den
            f = np.where((prec + rec) > 0, 2 * prec * rec / (prec + rec), 0.0)
        f = np.where(np.isfinite(f), f, -np.inf).max(1)
        return np.where(np.isfinite(f), f, np.nan)


def label_metric_resamples(plan: BootstrapPlan, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray,
                           thresholds: np.ndarray | None = None, block: int = BOOT_BLOCK) -> dict[str, np.ndarray]:
    """Per-label metrics of every resample of ``plan`` on the records given (N, C), each (B, C).

    ``record_patient`` (N,): the records' patient index in the plan. Keys ``auroc``, ``auprc``,
    ``brier`` and, with ``thresholds`` (C,), ``f1``/``sensitivity``/``specificity``/``ppv``; equal
    to the ``*_weighted`` functions of :mod:`ecgproto.evaluate.metrics` on the plan's weights.
    """
    ranked = RankedLabels(labels, probs, record_patient, plan.n_patients)
    sums = PatientSums(labels, probs, record_patient, plan.n_patients, thresholds)
    parts = []
    for counts in plan.count_blocks(block):
        auroc, auprc = ranked.evaluate(counts)
        parts.append({"auroc": auroc, "auprc": auprc, **sums.evaluate(counts)})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def auroc_resamples(plan: BootstrapPlan, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray,
                    block: int = BOOT_BLOCK) -> np.ndarray:
    """Per-label AUROC (B, C) of every resample of ``plan`` (as :func:`label_metric_resamples`)."""
    ranked = RankedLabels(labels, probs, record_patient, plan.n_patients)
    return np.concatenate([ranked.evaluate(counts, auprc=False)[0] for counts in plan.count_blocks(block)])


def fmax_resamples(plan: BootstrapPlan, labels: np.ndarray, probs: np.ndarray, record_patient: np.ndarray,
                   step: float, block: int = BOOT_BLOCK) -> np.ndarray:
    """Sample-centric Fmax (B,) of every resample of ``plan`` (as :func:`label_metric_resamples`)."""
    table = FmaxTable(labels, probs, record_patient, plan.n_patients, step)
    return np.concatenate([table.evaluate(counts) for counts in plan.count_blocks(block)])
