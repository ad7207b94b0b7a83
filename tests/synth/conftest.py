"""Tiny synthetic archives shared by the synth tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgproto.synth.config import SynthConfig
from ecgproto.synth import write_synthetic_archive
from ecgproto.synth.archive import build_ptbxl

TINY = SynthConfig(n_records=50, n_mimic_subjects=120, seed=3)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A written archive: 50 PTB-XL-shaped records, 120 MIMIC-shaped subjects."""
    out = tmp_path_factory.mktemp("synth") / "archive"
    summary = write_synthetic_archive(out, TINY)
    return out, summary


@pytest.fixture(scope="session")
def plan_400():
    """In-memory plan of 400 records (no files) for signal-level checks."""
    table, plan, findings = build_ptbxl(SynthConfig(n_records=400, n_mimic_subjects=0, seed=11))
    return table, plan, findings


def rows_with(plan, code: str, without: tuple[str, ...] = ()) -> np.ndarray:
    """Indices of records carrying ``code`` and none of ``without``."""
    mask = plan.labels.has(code)
    for c in without:
        mask &= ~plan.labels.has(c)
    return np.flatnonzero(mask)
