"""Fixtures of the device tests: the tiny checkpoint with an OOD calibration (the plain one and the 40 PTB-XL
records are the top-level ``checkpoint`` and ``ptbxl_small`` fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..score.helpers import tiny_checkpoint


@pytest.fixture(scope="session")
def calibrated_ckpt(checkpoint, ptbxl_small, tmp_path_factory) -> Path:
    """The tiny checkpoint with an OOD calibration fitted on the 40 records (so scoring computes OOD features)."""
    from ecgproto.model.checkpoint import load_checkpoint
    from ecgproto.model.ood import fit_ood
    from ecgproto.score.calibrate import folder_features
    from ecgproto.score.sources import list_records
    from ecgproto.data.preprocess import Preprocessing

    model, meta = load_checkpoint(checkpoint)
    prep = Preprocessing.from_meta(meta)
    paths = list_records(ptbxl_small, prep.fs, "ptbxl").frame["path"].tolist()
    feats, _ = folder_features(model, prep, paths)
    calib = fit_ood(feats[:25], feats[25:], 0.2, branches=list(model.branches), fs=prep.fs)
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt_ood") / "tiny_ood.pt", ood=calib)
