"""Configuration of prototype-to-phenotype association analyses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PhenotypeConfig:
    """Defaults follow ../shared/reference/phenotype_protocol.md §1.4 (docs/readme/phenotype.md)."""

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
    # the large n-sized products of the score screen and its permutation null (the protocol's §5:
    # float32 X; −log10 p within ~4e-5 of float64, refits are float64); float64 is ~2× slower
    # and uses more memory at archive scale
    screen_dtype: Literal["float32", "float64"] = "float32"
    max_refits_per_family: int = 200  # hits (q < q_threshold, smallest p first) refitted in full
    firth_below_cases: int = 100  # Firth penalised refit when fewer cases (or separation)
    # machine-statement concepts present in fewer of the cohort's analysed ECGs are dropped
    # (None = min_cases, the protocol's rule)
    min_concept_count: int | None = None
    # shuffles for the family-size null of best-feature strength (protocol: 200-1,000); under
    # unit "admission" whole patients are shuffled (see phenotype/compare.py)
    permutations: int = 200
    # shuffles screened side by side (threads; the large products release the GIL); 0 = the CPU
    # cores this process may use. Results do not depend on it.
    threads: int = 0
    distance_permutations: int = 10000  # shuffles of mixed/uniform labels (intra-class test)
    # prototypes without a source ECG (never projected: latent vectors) are left out of the
    # prototype and prototype-class families and the intra-class analysis unless this is true
    include_latent_prototypes: bool = False
    auroc_phecodes: tuple[str, ...] = ("427.21", "428", "038", "994.2", "585")
    auroc_folds: int = 5
    auroc_bootstrap: int = 1000
    seed: int = 0
