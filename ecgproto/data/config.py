"""Configuration of the data layer (readers, preprocessing, cache); the simulator's is ``ecgproto.synth.config``."""

from __future__ import annotations

from dataclasses import dataclass
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
    highpass_edge: Literal["scipy", "reflect"] = "scipy"  # record ends: scipy's default extension, or 2 s mirrored (no transient)
    standardize: bool = False  # per-lead, fitted on the training folds only
    cache_dir: str = ".ecgproto_cache"
    train_folds: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    val_folds: tuple[int, ...] = (9,)
    test_folds: tuple[int, ...] = (10,)
    num_workers: int = 2
