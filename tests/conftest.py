"""Shared pytest fixtures: the real-data samples in ../shared/data and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (or $ECGPROTO_SHARED_DATA)."""
    env = os.environ.get("ECGPROTO_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real PTB-XL / CinC 2021 / MIMIC-IV demo samples; skips if absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real-data samples not found at {path} (clone with ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def ptbxl_sample(shared_data: Path) -> Path:
    return shared_data / "ptbxl-sample"


@pytest.fixture(scope="session")
def cinc_sample(shared_data: Path) -> Path:
    return shared_data / "cinc2021-sample" / "cinc2021"


@pytest.fixture(scope="session")
def mimic_demo_diagnoses(shared_data: Path) -> Path:
    return shared_data / "mimic-iv-demo-hosp" / "diagnoses_icd.csv"


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    """Tests run on 2-core CI machines: keep torch to one thread and deterministic."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny seeded checkpoint for the scoring and device tests (tests/score/helpers.py)."""
    from tests.score.helpers import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def ptbxl_small(ptbxl_sample, tmp_path_factory) -> Path:
    """First 40 PTB-XL sample records as a PTB-XL folder."""
    from tests.score.helpers import ptbxl_subset

    return ptbxl_subset(ptbxl_sample, tmp_path_factory.mktemp("ptbxl") / "ptbxl", 40)
