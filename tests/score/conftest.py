from __future__ import annotations

from pathlib import Path

import pytest



REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthetic_archive(tmp_path_factory) -> Path:
    """A small synthetic archive (PTB-XL-shaped at 100 Hz + MIMIC-shaped at 500 Hz)."""
    from ecgproto.synth.config import SynthConfig
    from ecgproto.synth import write_synthetic_archive

    out = tmp_path_factory.mktemp("synth") / "archive"
    write_synthetic_archive(out, SynthConfig(n_records=30, n_mimic_subjects=4, seed=1))
    return out
