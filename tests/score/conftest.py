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
