"""Configuration of evaluation reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvaluateConfig:
    ci_level: float = 0.95
    n_bootstrap: int = 1000
    drop_unlabeled: bool = False  # True = PTB-XL benchmark convention; False = keep all (ProtoECGNet)
    threshold_rule: Literal["f1"] = "f1"
