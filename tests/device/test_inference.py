"""Inference and scoring with the device plumbing: the same code path on cpu (and on cuda when present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgproto.data.labels import all_labels
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.model.inference import predict_arrays
from ecgproto.model.ood import extract_ood_features
from ecgproto.score import scorer
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.data.preprocess import Preprocessing
from ecgproto.score.worker import BatchReader, BatchScorer, forward_with_ood
from ecgproto.score.sources import list_records

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
PROB = [f"prob__{c}" for c in all_labels()]


@pytest.mark.parametrize("device", DEVICES)
def test_predict_arrays_on_a_device_matches_cpu(checkpoint, device):
    model, _ = load_checkpoint(checkpoint)
    x = np.random.default_rng(0).normal(0, 0.3, (5, 12, 1000)).astype(np.float32)
    ref = predict_arrays(model, x, batch_size=2)
    got = predict_arrays(model, x, batch_size=2, device=device)
    assert next(model.parameters()).device.type == "cpu"  # moved there for the call only
    tol = 0 if device == "cpu" else 2e-3  # cuDNN (TF32) convolutions differ in the last bits
    np.testing.assert_allclose(got.probs, ref.probs, atol=tol, rtol=0)
    np.testing.assert_allclose(got.similarities, ref.similarities, atol=tol * 10, rtol=tol)
    if device == "cpu":
        for g in ref.best_windows:
            np.testing.assert_array_equal(got.best_windows[g], ref.best_windows[g])


def test_reader_band_powers_give_the_same_ood_features(calibrated_ckpt, ptbxl_small):
    """The GPU path's split (band powers in the CPU reader, latents after the forward pass) gives the
    features of the one-process path, bit for bit."""
    model, meta = load_checkpoint(calibrated_ckpt)
    prep = Preprocessing.from_meta(meta)
    edges = tuple(meta["ood"]["band_edges_hz"])
    paths = list_records(ptbxl_small, prep.fs, "ptbxl").frame["path"].tolist()[:6]
    read = BatchReader(prep, edges)(paths)
    assert read.band_powers is not None and read.band_powers.shape == (6, 12 * (len(edges) - 1))
    whole = forward_with_ood(model, read.signals, edges)
    split = forward_with_ood(model, read.signals, edges, read.band_powers)
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole[2], extract_ood_features(model, read.signals, edges=edges))
    scored = BatchScorer(model, prep, 71, model.n_prototypes, edges)
    np.testing.assert_array_equal(scored.score_read(read).ood_features, scored(paths).ood_features)


@pytest.mark.parametrize("workers", [0, 2])
def test_scoring_with_the_model_in_the_main_process(calibrated_ckpt, ptbxl_small, tmp_path, monkeypatch, workers):
    """Workers only reading (as with a GPU model) write the same scores and OOD columns as workers
    running the model themselves."""
    options = ScoreOptions(batch_size=8, chunk_size=16, workers=workers, threads=1, device="cpu")
    score_archive(calibrated_ckpt, ptbxl_small, tmp_path / "symmetric", options)
    monkeypatch.setattr(scorer, "model_in_main_process", lambda model: True)
    score_archive(calibrated_ckpt, ptbxl_small, tmp_path / "split", options)
    a = pd.read_parquet(tmp_path / "symmetric" / "scores.parquet")
    b = pd.read_parquet(tmp_path / "split" / "scores.parquet")
    assert a["ood_flag"].notna().all() and np.isfinite(a["ood_score"]).all()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_scoring_on_cuda_matches_cpu(calibrated_ckpt, ptbxl_small, tmp_path):
    base = dict(batch_size=8, chunk_size=16, workers=2, threads=1)
    score_archive(calibrated_ckpt, ptbxl_small, tmp_path / "cpu", ScoreOptions(**base, device="cpu"))
    score_archive(calibrated_ckpt, ptbxl_small, tmp_path / "gpu", ScoreOptions(**base, device="cuda"))
    a = pd.read_parquet(tmp_path / "cpu" / "scores.parquet")
    b = pd.read_parquet(tmp_path / "gpu" / "scores.parquet")
    np.testing.assert_allclose(b[PROB].to_numpy(), a[PROB].to_numpy(), atol=2e-3)
    np.testing.assert_allclose(b["ood_score"], a["ood_score"], rtol=1e-2)
