"""Subgroup definitions: sex, age bands and the PTB-XL signal-quality flags."""

from __future__ import annotations

import numpy as np
import pandas as pd

QUALITY_FLAGS: tuple[str, ...] = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems")
_SEX_NAMES = {0: "male", 1: "female", "0": "male", "1": "female", "m": "male", "f": "female",
              "male": "male", "female": "female"}
PTBXL_AGE_CAP = 300  # PTB-XL stores ages above 89 as 300


def sex_levels(sex: pd.Series) -> pd.Series:
    """PTB-XL sex codes (0 = male, 1 = female; strings accepted) → 'male'/'female'/'unknown'."""
    def name(v: object) -> str:
        if pd.isna(v):
            return "unknown"
        key = int(v) if isinstance(v, (int, float, np.integer, np.floating)) else str(v).strip().lower()
        return _SEX_NAMES.get(key, "unknown")
    return sex.map(name)


def age_levels(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    """Ages in years → band names like '<40', '40–59', '≥80' (PTB-XL's 300 counts as ≥ the last edge)."""
    if list(edges) != sorted(edges) or not edges:
        raise ValueError(f"age band edges must be a non-empty increasing list, got {edges}")
    a = pd.to_numeric(age, errors="coerce").to_numpy(dtype=np.float64)
    names = [f"<{edges[0]}"] + [f"{lo}–{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])] + [f"≥{edges[-1]}"]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), a, side="right")
    out = np.array(names, dtype=object)[np.clip(idx, 0, len(names) - 1)]
    out[~np.isfinite(a)] = "unknown"
    return pd.Series(out, index=age.index)


def flag_present(values: pd.Series) -> pd.Series:
    """A PTB-XL quality column (free text naming the affected leads, or empty) → 'present'/'absent'."""
    text = values.astype("string").fillna("").str.strip()
    return pd.Series(np.where(text.str.len() > 0, "present", "absent"), index=values.index)


def subgroup_masks(info: pd.DataFrame, age_bands: tuple[int, ...]) -> dict[tuple[str, str], np.ndarray]:
    """Boolean record masks keyed by (variable, level) from per-record ``info`` (N rows).

    Uses the columns present among ``sex``, ``age`` and the quality flags; a missing
    column is simply skipped (e.g. quality flags outside PTB-XL).
    """
    levels: dict[str, pd.Series] = {}
    if "sex" in info:
        levels["sex"] = sex_levels(info["sex"])
    if "age" in info:
        levels["age"] = age_levels(info["age"], age_bands)
    for flag in QUALITY_FLAGS:
        if flag in info:
            levels[flag] = flag_present(info[flag])
    masks: dict[tuple[str, str], np.ndarray] = {}
    for variable, series in levels.items():
        for level in sorted(series.unique(), key=_level_order):
            masks[(variable, str(level))] = (series == level).to_numpy()
    return masks


def _level_order(level: str) -> tuple[int, float, str]:
    """Sort key: age bands by their lower edge, 'unknown' last, other levels alphabetically."""
    text = str(level)
    if text == "unknown":
        return (2, 0.0, text)
    if text.startswith("<"):
        return (0, -np.inf, text)
    if text.startswith("≥"):
        return (0, float(text[1:]), text)
    head = text.split("–")[0]
    return (0, float(head), text) if head.isdigit() else (1, 0.0, text)
