"""Configuration of prototype-to-phenotype association analyses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PhenotypeConfig:
    phecode_version: Literal["1.2", "X"] = "1.2"
    phecode_map: str = ""  # optional user PheTK/pyphewas-format map (empty = shipped table)
    tolerance_hours: float = 1.0  # ECG may precede coalesce(edregtime, admittime) by this much
    lookback_days: float = 0.0  # extra look-back before admission (7 = bbj-lab window)
    unit: Literal["patient", "admission"] = "patient"
    ecg_per_admission: Literal["first", "mean"] = "first"
    use_exclusions: bool = True  # drop controls with a phecode in the exclusion range (1.2)
    min_cases: int = 100
    min_controls: int = 100
    q_threshold: float = 0.05
    screen_dtype: Literal["float32", "float64"] = "float64"
    max_refits_per_family: int = 200  # hits (q < q_threshold, smallest p first) refitted in full
    firth_below_cases: int = 100  # Firth penalised refit when fewer cases (or separation)
    min_concept_count: int = 10  # machine-statement concepts present in fewer ECGs are dropped
    permutations: int = 20  # label shuffles for the family-size null of best-feature strength
    distance_permutations: int = 10000  # shuffles of mixed/uniform labels (intra-class test)
    auroc_phecodes: tuple[str, ...] = ("427.21", "428", "038", "994.2", "585")
    auroc_folds: int = 5
    auroc_bootstrap: int = 1000
    seed: int = 0
