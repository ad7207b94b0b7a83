"""Configuration of evaluation reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvaluateConfig:
    """How ``ecgproto evaluate`` scores a split.

    The PTB-XL benchmark convention (Strodthoff et al. 2021) corresponds to
    ``ci_level=0.90, n_bootstrap=100, drop_unlabeled=true``.
    """

    ci_level: float = 0.95  # percentile bootstrap interval level
    n_bootstrap: int = 1000  # patient-level resamples (0 = no intervals)
    ci_method: Literal["percentile"] = "percentile"
    drop_unlabeled: bool = False  # True = PTB-XL benchmark convention; False = keep all (ProtoECGNet)
    threshold_rule: Literal["f1"] = "f1"  # F1-maximising, with the rare-label rule of model/thresholds.py
    threshold_min_positives: int = 10  # fewer validation positives: threshold at the label's prevalence
    threshold_max_rate_ratio: float = 1.5  # no threshold predicts a label above this multiple of its prevalence
    threshold_source: Literal["validation", "checkpoint"] = "validation"  # re-tune on the val split, or use meta thresholds
    benchmark_sets: tuple[str, ...] = ("diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
    age_bands: tuple[int, ...] = (40, 60, 80)  # band edges in years: <40, 40–59, 60–79, ≥80
    subgroup_ci: bool = True  # bootstrap intervals for subgroup macro AUROC
    subgroup_min_records: int = 20  # smaller subgroups get no interval (plotted as a hollow point) and no ranking
    fmax_step: float = 0.01  # threshold grid of Fmax
    calibration_bins: int = 10
    n_top_curves: int = 8  # ROC/PR/calibration panels for the labels with most positives
    near_duplicate_cosine: float = 0.99  # prototype pairs above this cosine are near-duplicates
    gallery_size: int = 12  # prototype thumbnails in the report (0 = none)
    batch_size: int = 256
