"""Paired comparison of two models on the same records: macro AUROC of A, of B and of A − B.

Both models are scored on the same patient resamples (:func:`patient_bootstrap` with one seed),
so the interval of the difference accounts for the records the two share: a paired
patient bootstrap. Each resample's macro AUROC averages over a fixed label set, the labels with
at least one positive and one negative among the task's scored records (the rule of the main
intervals, :func:`fill_undefined`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgproto.evaluate.bootstrap import (BootstrapPlan, class_patient_counts, fill_undefined, interval_defined,
                                         patient_bootstrap, percentile_ci)
from ecgproto.evaluate.metrics import auroc_weighted, nanmean_rows
from ecgproto.evaluate.resampled import auroc_resamples
from ecgproto.evaluate.tasks import Task, record_mask, task_arrays

COMPARE_COLUMNS = ("task", "n_labels", "n_records", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi",
                   "diff", "diff_lo", "diff_hi", "ci_too_few")


@dataclass
class Comparison:
    """Model A (the evaluated checkpoint) against model B on the same records.

    ``table``: :func:`paired_auroc_difference` output; ``probs_b``: B's probabilities per output
    ((N, C_output), the records of the evaluation) so the table can be recomputed.
    """

    name_a: str
    name_b: str
    kind_a: str
    kind_b: str
    table: pd.DataFrame
    probs_b: dict[str, np.ndarray]


def _label_aurocs(cache: dict, prefix: tuple, targets: tuple[str, ...], y: np.ndarray, p: np.ndarray,
                  mask: np.ndarray, plan: BootstrapPlan | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-label AUROC (C,) and its resamples (B, C) on the ``mask`` records, cached by (prefix, target)."""
    todo = [j for j, t in enumerate(targets) if (prefix, t) not in cache]
    if todo:
        y_m, p_m = y[mask][:, todo], p[mask][:, todo]
        point = auroc_weighted(y_m, p_m, np.ones((1, len(y_m))))[0]
        boot = None if plan is None else auroc_resamples(plan, y_m, p_m, plan.record_patient[mask])
        for k, j in enumerate(todo):
            cache[(prefix, targets[j])] = (point[k], None if boot is None else boot[:, k])
    entries = [cache[(prefix, t)] for t in targets]
    return np.array([e[0] for e in entries]), None if plan is None else np.stack([e[1] for e in entries], axis=1)


def _macro(point: np.ndarray, boot: np.ndarray | None) -> tuple[float, np.ndarray | None]:
    """Macro AUROC over the labels defined in ``point`` (C,): the value and its resamples (B,)."""
    keep = np.isfinite(point)
    value = float(point[keep].mean()) if keep.any() else float("nan")
    return value, None if boot is None else nanmean_rows(fill_undefined(boot[:, keep], point[keep]))


def paired_auroc_difference(labels71: np.ndarray, probs_a: dict[str, np.ndarray], probs_b: dict[str, np.ndarray],
                            patient_ids: np.ndarray, tasks: Sequence[Task], n_resamples: int, seed: int,
                            level: float, *, drop_unlabeled: bool = False) -> pd.DataFrame:
    """Macro AUROC of models A and B and of A − B per task, with paired patient-bootstrap intervals.

    ``labels71`` (N, 71) multi-hot in ``all_labels()`` order; ``probs_a``/``probs_b`` map an output
    name (``"fused"`` or a branch) to its (N, C_output) probabilities for the same N records;
    ``patient_ids`` (N,). ``n_resamples`` patient resamples (0 = no intervals) drawn with ``seed``
    (the resamples of ``evaluate_predictions`` with the same ids and seed); ``level`` e.g. 0.95.
    ``drop_unlabeled`` scores only records with a positive label of the task (PTB-XL benchmark).
    Returns one row per task with the columns :data:`COMPARE_COLUMNS`; ``n_labels`` is the size of
    the fixed label set; intervals are NaN without resamples and, with ``ci_too_few`` True, when no label
    of the task has :data:`~ecgproto.evaluate.bootstrap.MIN_CI_PATIENTS` positive and negative patients;
    values are NaN for a task without records.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    for name, probs in (("A", probs_a), ("B", probs_b)):
        for output, p in probs.items():
            if len(p) != len(labels71):
                raise ValueError(f"model {name}: {output} probabilities have {len(p)} rows, labels have {len(labels71)}")
    plan = patient_bootstrap(patient_ids, n_resamples, seed) if n_resamples > 0 else None
    cache: dict = {}
    rows = []
    for task in tasks:
        y, pa, _ = task_arrays(task, labels71, probs_a)
        _, pb, _ = task_arrays(task, labels71, probs_b)
        mask = record_mask(y, drop_unlabeled)
        row: dict = {"task": task.name, "n_records": int(mask.sum())}
        if not mask.any():
            rows.append({**row, "n_labels": 0})
            continue
        scope = (f"{task.output}/{task.label_set}" if task.aggregated else task.output, np.packbits(mask).tobytes())
        (point_a, boot_a), (point_b, boot_b) = (
            _label_aurocs(cache, (model, *scope), task.targets, y, p, mask, plan) for model, p in (("a", pa), ("b", pb)))
        (a, a_boot), (b, b_boot) = _macro(point_a, boot_a), _macro(point_b, boot_b)
        row.update({"n_labels": int(np.isfinite(point_a).sum()), "a": a, "b": b, "diff": a - b})
        # the minimum number of cases of bootstrap.py: some label needs enough positive and negative patients
        defined = plan is not None and bool(interval_defined(*class_patient_counts(y[mask], plan.record_patient[mask])).any())
        row["ci_too_few"] = plan is not None and not defined
        for name, samples in (("a", a_boot), ("b", b_boot), ("diff", None if a_boot is None else a_boot - b_boot)):
            lo, hi = (np.nan, np.nan) if samples is None else percentile_ci(samples, level, defined)
            row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
