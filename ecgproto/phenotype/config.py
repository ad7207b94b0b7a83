"""Configuration of prototype-to-phenotype association analyses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PhenotypeConfig:
    phecode_version: Literal["1.2"] = "1.2"
    tolerance_hours: float = 1.0
    lookback_days: float = 0.0
    unit: Literal["patient", "admission"] = "patient"
    min_cases: int = 100
    min_controls: int = 100
    q_threshold: float = 0.05
    seed: int = 0
