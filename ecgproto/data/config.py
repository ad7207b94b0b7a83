"""Configuration of the data layer (readers, preprocessing, cache) and the synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class DataConfig:
    """Where the training archive is and how records are turned into model input."""

    source: Literal["ptbxl", "synthetic"] = "ptbxl"
    root: str = ""  # PTB-XL folder (for `synthetic`: the folder written by `ecgproto synth`)
    sampling_rate: int = 100  # Hz the model runs at; records at other rates are resampled
    duration_s: float = 10.0
    min_likelihood: float | None = None  # None = benchmark rule (any scp_codes key is positive)
    highpass_hz: float = 0.5
    highpass_order: int = 1
    standardize: bool = False  # per-lead, fitted on the training folds only
    cache_dir: str = ".ecgproto_cache"
    train_folds: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    val_folds: tuple[int, ...] = (9,)
    test_folds: tuple[int, ...] = (10,)
    num_workers: int = 2


@dataclass(frozen=True)
class SynthConfig:
    """Size and randomness of the synthetic PTB-XL- and MIMIC-shaped archives."""

    n_records: int = 2000
    n_mimic_subjects: int = 300
    seed: int = 0
    write_500hz: bool = False
    extra: dict[str, float] = field(default_factory=dict)
