"""Fixtures of the device tests: a tiny checkpoint (with and without an OOD calibration) and 40 PTB-XL records."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..score.helpers import ptbxl_subset, tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def ptbxl_40(ptbxl_sample, tmp_path_factory) -> Path:
    return ptbxl_subset(ptbxl_sample, tmp_path_factory.mktemp("ptbxl") / "ptbxl", 40)


@pytest.fixture(scope="session")
def calibrated_ckpt(tiny_ckpt, ptbxl_40, tmp_path_factory) -> Path:
    """The tiny checkpoint with an OOD calibration fitted on the 40 records (so scoring computes OOD features)."""
    from ecgproto.model.checkpoint import load_checkpoint
    from ecgproto.model.ood import fit_ood
    from ecgproto.score.calibrate import folder_features
    from ecgproto.score.sources import list_records
    from ecgproto.score.worker import Preprocessing

    model, meta = load_checkpoint(tiny_ckpt)
    prep = Preprocessing.from_meta(meta)
    paths = list_records(ptbxl_40, prep.fs, "ptbxl").frame["path"].tolist()
    feats, _ = folder_features(model, prep, paths)
    calib = fit_ood(feats[:25], feats[25:], 0.2, branches=list(model.branches), fs=prep.fs)
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt_ood") / "tiny_ood.pt", ood=calib)
