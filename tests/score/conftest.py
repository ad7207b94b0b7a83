from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import ptbxl_subset, tiny_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def ptbxl_small(ptbxl_sample, tmp_path_factory) -> Path:
    """First 40 PTB-XL sample records as a PTB-XL folder."""
    return ptbxl_subset(ptbxl_sample, tmp_path_factory.mktemp("ptbxl") / "ptbxl", 40)


REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthetic_archive(tmp_path_factory) -> Path:
    """A small synthetic archive (PTB-XL-shaped at 100 Hz + MIMIC-shaped at 500 Hz)."""
    from ecgproto.synth.config import SynthConfig
    from ecgproto.synth import write_synthetic_archive

    out = tmp_path_factory.mktemp("synth") / "archive"
    write_synthetic_archive(out, SynthConfig(n_records=30, n_mimic_subjects=4, seed=1))
    return out
