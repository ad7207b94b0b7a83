"""Evaluate prediction arrays: every task, per label, with patient-level bootstrap intervals.

Works on arrays alone (labels, probabilities, patient ids, optional per-record info
for subgroups), so it serves the ``evaluate`` command and any external prediction file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels, label_table
from ecgproto.evaluate.bootstrap import (MIN_CI_PATIENTS, TOO_FEW_TEXT, BootstrapPlan, class_patient_counts,
                                         fill_undefined, interval_defined, patient_bootstrap, percentile_ci)
from ecgproto.evaluate.calibration import expected_calibration_error, reliability_bins
from ecgproto.evaluate.compare import Comparison
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.evaluate.metrics import (
    auroc_weighted,
    average_precision_weighted,
    brier_weighted,
    confusion_weighted,
    fmax_weighted,
    nanmean_rows,
    threshold_metrics_weighted,
    weighted_mean_rows,
)
from ecgproto.evaluate.resampled import auroc_resamples, fmax_resamples, label_metric_resamples
from ecgproto.evaluate.subgroups import subgroup_masks
from ecgproto.evaluate.tasks import Task, default_tasks, record_mask, task_arrays
from ecgproto.progress import progress

LABEL_METRICS = ("auroc", "auprc", "f1", "sensitivity", "specificity", "ppv", "brier")
CI_LABEL_METRICS = ("auroc", "auprc", "f1", "sensitivity", "specificity")
FEW_POSITIVES = 10


@dataclass
class Predictions:
    """Model outputs on one split, aligned by record (N rows).

    ``labels`` (N, 71) uint8 in ``all_labels()`` order; ``probs`` maps ``"fused"`` to
    (N, 71) and each branch name to its (N, C_group) probabilities; ``thresholds`` maps
    an output to its (C_output,) decision thresholds (missing = no threshold metrics);
    ``info`` holds per-record columns used for subgroups (sex, age, quality flags);
    ``threshold_rules`` says how each threshold was chosen: one row per output × label with
    ``output``, ``label`` and the columns of :func:`~ecgproto.model.thresholds.threshold_table`
    (None = unknown, e.g. thresholds read from a checkpoint).
    """

    ecg_ids: np.ndarray
    patient_ids: np.ndarray
    labels: np.ndarray
    probs: dict[str, np.ndarray]
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)
    threshold_source: str = "none"
    info: pd.DataFrame | None = None
    threshold_rules: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        n = len(self.ecg_ids)
        if self.labels.shape != (n, len(all_labels())):
            raise ValueError(f"labels must be (N={n}, {len(all_labels())}), got {self.labels.shape}")
        for name, p in self.probs.items():
            if len(p) != n:
                raise ValueError(f"probabilities of {name!r} have {len(p)} rows, expected {n}")
        if len(self.patient_ids) != n:
            raise ValueError(f"patient_ids has {len(self.patient_ids)} entries, expected {n}")


@dataclass
class Evaluation:
    """Everything the report shows; every table is plain data."""

    summary: pd.DataFrame
    per_label: pd.DataFrame
    subgroups: pd.DataFrame
    calibration: dict[str, pd.DataFrame]
    settings: dict[str, Any]
    plan: BootstrapPlan | None
    predictions: Predictions
    comparison: Comparison | None = None  # another model on the same records (``evaluate --compare``)


def _mask_key(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


class _Scorer:
    """Per-label point estimates and bootstrap samples, cached per (output, target, records)."""

    def __init__(self, cfg: EvaluateConfig, plan: BootstrapPlan | None) -> None:
        self.cfg = cfg
        self.plan = plan
        self._cache: dict[tuple[str, str, str], dict[str, Any]] = {}

    def labels(self, namespace: str, targets: tuple[str, ...], y: np.ndarray, p: np.ndarray,
               th: np.ndarray | None, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Point values (C,) and bootstrap samples (B, C) for each label metric.

        ``namespace`` names the probability source (output, or output/label set for
        aggregated targets) so cached per-label results are shared only when identical.
        """
        key_mask = _mask_key(mask)
        todo = [j for j, t in enumerate(targets) if (namespace, t, key_mask) not in self._cache]
        if todo:
            cols = np.array(todo)
            patients = None if self.plan is None else self.plan.record_patient[mask]
            fresh = self._compute(y[mask][:, cols], p[mask][:, cols], None if th is None else th[cols], patients)
            for k, j in enumerate(todo):
                self._cache[(namespace, targets[j], key_mask)] = {m: v[..., k] for m, v in fresh.items()}
        rows = [self._cache[(namespace, t, key_mask)] for t in targets]
        return {m: np.stack([r[m] for r in rows], axis=-1) for m in rows[0]}

    def _compute(self, y: np.ndarray, p: np.ndarray, th: np.ndarray | None,
                 patients: np.ndarray | None = None) -> dict[str, np.ndarray]:
        ones = np.ones((1, len(y)))
        out: dict[str, np.ndarray] = {
            "n_pos": y.sum(0).astype(np.float64), "n_neg": (~y).sum(0).astype(np.float64),
            "auroc": auroc_weighted(y, p, ones)[0],
            "auprc": average_precision_weighted(y, p, ones)[0],
            "brier": brier_weighted(y, p, ones)[0],
            "ece": np.array([expected_calibration_error(
                reliability_bins(y[:, c], p[:, c], self.cfg.calibration_bins)) for c in range(y.shape[1])]),
        }
        if th is not None:
            for m, v in threshold_metrics_weighted(y, p, th, ones).items():
                out[m] = v[0]
            for m, v in confusion_weighted(y, p, th, ones).items():  # counts at the threshold
                out[m] = v[0]
            out["threshold"] = np.asarray(th, dtype=np.float64)
        if self.plan is not None and patients is not None:
            pos, neg = class_patient_counts(y, patients)
            out["ci_defined"] = interval_defined(pos, neg)  # enough positive and negative patients
            for m, v in label_metric_resamples(self.plan, y, p, patients, th).items():
                out[f"boot_{m}"] = v
        return out


def _summary_values(lab: dict[str, np.ndarray], fm: np.ndarray, boot: bool = False) -> dict[str, np.ndarray]:
    """Macro/weighted aggregates of per-label values → (1,) for the point estimate or (B,) for resamples.

    The label set is fixed by the point estimate (:func:`fill_undefined`): a label undefined in
    the whole split is left out everywhere; a label defined there but undefined in a resample
    (e.g. its only positive patient not drawn) keeps its whole-split value in that resample.
    """
    defined = np.isfinite(lab["auroc"])  # a label with no positive or no negative enters no macro average

    def values(m: str) -> np.ndarray:
        v = fill_undefined(lab[f"boot_{m}"], lab[m]) if boot else np.atleast_2d(lab[m])
        return np.where(defined, v, np.nan)

    weights = np.atleast_2d(lab["n_pos"])
    out = {
        "macro_auroc": nanmean_rows(values("auroc")),
        "weighted_auroc": weighted_mean_rows(values("auroc"), np.broadcast_to(weights, values("auroc").shape)),
        "macro_auprc": nanmean_rows(values("auprc")),
        "fmax": np.atleast_1d(fm),
        "macro_brier": nanmean_rows(values("brier")),
    }
    for m in ("f1", "sensitivity", "specificity"):
        if m in lab and (not boot or f"boot_{m}" in lab):
            out[f"macro_{m}"] = nanmean_rows(values(m))
    return out


def evaluate_predictions(pred: Predictions, cfg: EvaluateConfig, seed: int = 0,
                         tasks: list[Task] | None = None) -> Evaluation:
    """Score ``pred`` on every task (default: :func:`default_tasks`) → :class:`Evaluation`."""
    n = len(pred.ecg_ids)
    plan = patient_bootstrap(pred.patient_ids, cfg.n_bootstrap, seed) if cfg.n_bootstrap > 0 else None
    tasks = tasks if tasks is not None else default_tasks(list(pred.probs), cfg.benchmark_sets)
    scorer = _Scorer(cfg, plan)
    code_group = dict(zip(label_table().frame["code"], label_table().frame["group"]))
    summary_rows, label_rows = [], []
    rules = ({} if pred.threshold_rules is None else
             dict(zip(zip(pred.threshold_rules["output"], pred.threshold_rules["label"]), pred.threshold_rules["rule"])))
    all_patients = np.asarray(plan.record_patient) if plan is not None else None
    for task in progress(tasks, desc="evaluate tasks", unit="task"):
        if task.output not in pred.probs:
            continue
        y, p, cols = task_arrays(task, pred.labels, pred.probs)
        th_out = pred.thresholds.get(task.output)
        th = None if th_out is None or task.aggregated else np.asarray(th_out, dtype=np.float64)[cols]
        mask = record_mask(y, cfg.drop_unlabeled)
        other = record_mask(y, not cfg.drop_unlabeled)
        if not mask.any():
            continue
        namespace = f"{task.output}/{task.label_set}" if task.aggregated else task.output
        lab = scorer.labels(namespace, task.targets, y, p, th, mask)
        fm_point, fm_t = fmax_weighted(y[mask], p[mask], np.ones((1, int(mask.sum()))), cfg.fmax_step)
        point = _summary_values(lab, fm_point)
        row: dict[str, Any] = {
            "task": task.name, "output": task.output, "label_set": task.label_set,
            "n_records": int(mask.sum()),
            "n_patients": int(len(np.unique(all_patients[mask]))) if all_patients is not None
            else int(len(pd.unique(pd.Series(pred.patient_ids[mask])))),
            "n_labels": len(task.targets),
            "n_labels_defined": int(np.isfinite(lab["auroc"]).sum()),
            "n_labels_few_pos": int(((lab["n_pos"] > 0) & (lab["n_pos"] < FEW_POSITIVES)).sum()),
            "fmax_threshold": float(fm_t[0]),
            "thresholds": "none" if th is None else pred.threshold_source,
        }
        if th is not None:
            row["mean_predicted_labels"] = float((p[mask] >= th[None, :]).sum(1).mean())
            row["mean_true_labels"] = float(y[mask].sum(1).mean())
        for m, v in point.items():
            row[m] = float(v[0])
        if plan is not None:
            fm_boot = fmax_resamples(plan, y[mask], p[mask], plan.record_patient[mask], cfg.fmax_step)
            boot = _summary_values(lab, fm_boot, boot=True)
            defined = bool(lab["ci_defined"].any())  # some label of the task has enough cases
            row["ci_too_few"] = not defined
            for m, v in boot.items():
                lo, hi = percentile_ci(v, cfg.ci_level, defined)
                row[f"{m}_lo"], row[f"{m}_hi"] = float(lo), float(hi)
        other_auc = _point_macro_auroc(y[other], p[other]) if other.any() else float("nan")
        row["macro_auroc_other_convention"] = other_auc
        summary_rows.append(row)
        label_rows.extend(_label_rows(task, lab, cfg, code_group, rules if th is not None else {}))
    summary = pd.DataFrame(summary_rows)
    per_label = pd.DataFrame(label_rows)
    subgroups = _subgroups(pred, cfg, scorer) if pred.info is not None else pd.DataFrame()
    calibration = _calibration(pred, cfg)
    settings = {
        "convention": "drop_unlabeled" if cfg.drop_unlabeled else "keep_all",
        "convention_text": (
            "PTB-XL benchmark: records without any label of the task are dropped"
            if cfg.drop_unlabeled else "ProtoECGNet: all records of the split are kept"),
        "ci_method": f"patient-level bootstrap, {cfg.ci_method} method" if plan is not None else "none",
        "macro_ci_label_set": ("fixed: labels defined in the whole split; a label undefined in a resample keeps "
                               "its whole-split value there"),
        "ci_level": cfg.ci_level, "n_bootstrap": cfg.n_bootstrap, "bootstrap_seed": seed,
        "n_records": n, "n_patients": plan.n_patients if plan is not None else int(len(pd.unique(pd.Series(pred.patient_ids)))),
        "threshold_source": pred.threshold_source,
        "threshold_rule": (threshold_rule_text(cfg) if pred.threshold_rules is not None
                           else "unknown (thresholds given, not tuned here)"),
        "fmax": ("sample-centric (PTB-XL benchmark / CAFA)" if cfg.drop_unlabeled else
                 "sample-centric (PTB-XL benchmark / CAFA); records without a true label count in precision "
                 "when something is predicted for them, never in recall"),
        "fmax_step": cfg.fmax_step, "n_top_curves": cfg.n_top_curves, "subgroup_min_records": cfg.subgroup_min_records, "undefined": "NaN (no positive or no negative in the scored records)",
        "ci_minimum": (f"an interval needs at least {MIN_CI_PATIENTS} positive and {MIN_CI_PATIENTS} negative "
                       f"patients (a macro interval: at least one such label); otherwise it is NaN, shown as "
                       f"'{TOO_FEW_TEXT}'"),
        "aggregated_targets": "sub/superdiagnostic targets: positive if any member code; probability = max over member codes",
    }
    return Evaluation(summary, per_label, subgroups, calibration, settings, plan, pred)


def threshold_rule_text(cfg: EvaluateConfig) -> str:
    """One sentence stating the threshold rule of ``model/thresholds.py`` with ``cfg``'s settings."""
    return (f"F1-maximising on the validation split; a label with fewer than {cfg.threshold_min_positives} "
            "validation positives gets the threshold that predicts it at its training prevalence; no threshold "
            f"predicts a label for more than {cfg.threshold_max_rate_ratio:g}× its prevalence of validation records; "
            "a label without training positives is never predicted")


def _point_macro_auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(nanmean_rows(auroc_weighted(y, p, np.ones((1, len(y)))))[0])


def _label_rows(task: Task, lab: dict[str, np.ndarray], cfg: EvaluateConfig, code_group: dict[str, str],
                rules: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    rows = []
    cis = {}
    for m in CI_LABEL_METRICS + ("brier",):
        if f"boot_{m}" in lab:
            cis[m] = percentile_ci(lab[f"boot_{m}"], cfg.ci_level, lab["ci_defined"])
    for j, target in enumerate(task.targets):
        r: dict[str, Any] = {
            "task": task.name, "output": task.output, "label_set": task.label_set, "label": target,
            "group": code_group.get(target, ""), "n_pos": int(lab["n_pos"][j]), "n_neg": int(lab["n_neg"][j]),
            "defined": bool(np.isfinite(lab["auroc"][j])),
        }
        if "ci_defined" in lab:
            r["ci_too_few"] = not bool(lab["ci_defined"][j])
        for m in LABEL_METRICS + ("ece", "threshold", "tp", "fp", "fn", "tn"):
            if m in lab:
                r[m] = float(lab[m][j])
            if m in cis:
                r[f"{m}_lo"], r[f"{m}_hi"] = float(cis[m][0][j]), float(cis[m][1][j])
        if (task.output, target) in rules:
            r["threshold_rule"] = rules[(task.output, target)]
        rows.append(r)
    return rows


def _subgroups(pred: Predictions, cfg: EvaluateConfig, scorer: _Scorer) -> pd.DataFrame:
    """Fused model on all 71 labels within each subgroup (same convention and resamples)."""
    task = Task("fused", "all71", all_labels())
    y, p, _ = task_arrays(task, pred.labels, pred.probs)
    base = record_mask(y, cfg.drop_unlabeled)
    info = pred.info.reset_index(drop=True)
    rows = []
    masks = subgroup_masks(info, cfg.age_bands)
    for (variable, level), m in progress(masks.items(), desc="subgroups", total=len(masks), unit="group"):
        mask = m & base
        row: dict[str, Any] = {"variable": variable, "level": level, "n_records": int(mask.sum())}
        row["n_patients"] = int(len(pd.unique(pd.Series(pred.patient_ids[mask]).astype(str))))
        if mask.sum() == 0:
            rows.append(row)
            continue
        ones = np.ones((1, int(mask.sum())))
        aucs = auroc_weighted(y[mask], p[mask], ones)
        row["n_labels_defined"] = int(np.isfinite(aucs).sum())
        row["macro_auroc"] = float(nanmean_rows(aucs)[0])
        row["weighted_auroc"] = float(weighted_mean_rows(aucs, ones @ y[mask])[0])
        row["macro_auprc"] = float(nanmean_rows(average_precision_weighted(y[mask], p[mask], ones))[0])
        row["fmax"] = float(fmax_weighted(y[mask], p[mask], ones, cfg.fmax_step)[0][0])
        row["macro_brier"] = float(nanmean_rows(brier_weighted(y[mask], p[mask], ones))[0])
        if cfg.subgroup_ci and scorer.plan is not None and mask.sum() < cfg.subgroup_min_records:
            row["ci_too_few"] = True  # a handful of records: no interval, however wide
            row["macro_auroc_lo"] = row["macro_auroc_hi"] = float("nan")
        elif cfg.subgroup_ci and scorer.plan is not None:
            # fixed label set (the labels defined in the subgroup), as for the main intervals
            boot_auc = auroc_resamples(scorer.plan, y[mask], p[mask], scorer.plan.record_patient[mask])
            boot = nanmean_rows(fill_undefined(boot_auc, aucs[0]))
            defined = bool(interval_defined(*class_patient_counts(y[mask], scorer.plan.record_patient[mask])).any())
            row["ci_too_few"] = not defined
            lo, hi = percentile_ci(boot, cfg.ci_level, defined)
            row["macro_auroc_lo"], row["macro_auroc_hi"] = float(lo), float(hi)
        rows.append(row)
    return pd.DataFrame(rows)


def _calibration(pred: Predictions, cfg: EvaluateConfig) -> dict[str, pd.DataFrame]:
    """Reliability tables: pooled over all 71 fused labels, then the labels with most positives."""
    task = Task("fused", "all71", all_labels())
    y, p, _ = task_arrays(task, pred.labels, pred.probs)
    mask = record_mask(y, cfg.drop_unlabeled)
    y, p = y[mask], p[mask]
    out = {"pooled (all 71 labels)": reliability_bins(y, p, cfg.calibration_bins)}
    for j in np.argsort(-y.sum(0), kind="stable")[: cfg.n_top_curves]:
        if y[:, j].any():
            out[all_labels()[j]] = reliability_bins(y[:, j], p[:, j], cfg.calibration_bins)
    return out
