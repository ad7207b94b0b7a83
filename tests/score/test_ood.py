import numpy as np
import pandas as pd
import pytest

from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.model.ood import (LEGACY_METHODS, band_powers, calibration_problem, extract_ood_features, fit_ood,
                                ood_scores, ood_threshold, uncalibrated_scores)
from ecgproto.score.calibrate import folder_features
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.score.sources import list_records
from ecgproto.data.preprocess import Preprocessing
from ecgproto.score.worker import read_batch

from .helpers import tiny_checkpoint

BRANCHES = ["rhythm"] * 4 + ["morphology"] * 6 + ["global"] * 2


def _features(rng, n, mixing, shift=0.0):
    """Correlated, differently scaled in-distribution features (N, F)."""
    return (rng.standard_normal((n, mixing.shape[0])) @ mixing + shift) * np.linspace(0.1, 10, mixing.shape[0])


def test_flag_rate_on_held_out_in_distribution_records_is_nominal():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((60, 60)) / 8 + np.eye(60)
    calib = fit_ood(_features(rng, 1500, mixing), _features(rng, 1000, mixing), 0.05, branches=["a"], fs=100)
    fresh = ood_scores(_features(rng, 5000, mixing), calib)
    assert abs((fresh >= calib["threshold"]).mean() - 0.05) < 0.02  # records neither fit nor thresholded on
    assert 0.8 < np.median(fresh) < 1.2  # ~1 for a typical in-distribution record
    assert (ood_scores(_features(rng, 50, mixing, shift=1.0), calib) >= calib["threshold"]).all()
    assert ood_threshold(calib, 0.2) < calib["threshold"] < ood_threshold(calib, 0.01)


def test_bad_calibration_inputs():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 5))
    with pytest.raises(ValueError, match="flag_rate"):
        fit_ood(x, x, 1.5, branches=["a"], fs=100)
    with pytest.raises(ValueError, match="at least 2 validation"):
        fit_ood(x, x[:1], branches=["a"], fs=100)
    with pytest.raises(ValueError, match="not all finite"):
        fit_ood(np.where(x > 1, np.nan, x), x, branches=["a"], fs=100)
    calib = fit_ood(x, x, branches=["a"], fs=100)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        ood_scores(rng.standard_normal((3, 4)), calib)


def test_uncalibrated_score_ranks_by_similarity():
    rng = np.random.default_rng(1)
    near, far = rng.uniform(0.6, 0.9, (10, 12)), rng.uniform(0.1, 0.4, (10, 12))
    assert uncalibrated_scores(far, BRANCHES).min() > uncalibrated_scores(near, BRANCHES).max()


def test_band_powers_see_noise_and_gain():
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 100
    clean = np.sin(2 * np.pi * 1.2 * t) + rng.normal(0, 0.002, (2, 12, 1000))
    base = band_powers(clean, 100)
    noisy = band_powers(clean + rng.normal(0, 0.1, clean.shape), 100)
    assert base.shape == (2, 12 * 8) and (noisy[:, 7::8] > base[:, 7::8] + 2).all()  # 40-50 Hz band
    np.testing.assert_allclose(band_powers(10 * clean, 100), base + 2, atol=1e-6)  # x10 gain = +2 decades


@pytest.fixture(scope="module")
def synthetic_150(tmp_path_factory):
    from ecgproto.synth.config import SynthConfig
    from ecgproto.synth import write_synthetic_archive

    out = tmp_path_factory.mktemp("synth150") / "archive"
    write_synthetic_archive(out, SynthConfig(n_records=150, n_mimic_subjects=0, seed=1))
    return out / "ptbxl"


def test_shifted_records_score_higher_under_a_model(checkpoint, synthetic_150):
    """Fitted on 100 synthetic records through a real (tiny) model and thresholded on 30 more: noisy or
    rescaled copies of 20 held-out records score above their originals and are flagged."""
    model, meta = load_checkpoint(checkpoint)
    prep = Preprocessing.from_meta(meta)
    paths = list_records(synthetic_150, prep.fs, "ptbxl").frame["path"].tolist()
    feats, n_bad = folder_features(model, prep, paths)
    assert n_bad == 0 and len(feats) == 150
    calib = fit_ood(feats[:100], feats[100:130], 0.1, branches=list(model.branches), fs=prep.fs)
    assert calibration_problem(calib, model) is None
    held_out = ood_scores(feats[130:], calib)
    assert (held_out >= calib["threshold"]).mean() <= 0.3

    signals = read_batch(paths[130:], prep).signals
    noisy = signals + np.random.default_rng(0).normal(0, 0.5, signals.shape).astype(np.float32)
    for shifted in (noisy, 10 * signals, 0.1 * signals):
        scores = ood_scores(extract_ood_features(model, shifted), calib)
        assert (scores > held_out).all() and (scores >= calib["threshold"]).all()


def test_calibration_checks_and_legacy_calibration(checkpoint, ptbxl_small, tmp_path):
    model, _ = load_checkpoint(checkpoint)
    x = np.random.default_rng(0).standard_normal((30, 5))
    assert "n_features" in calibration_problem(fit_ood(x, x, branches=list(model.branches), fs=100), model)
    assert "branches" in calibration_problem(fit_ood(x, x, branches=["rhythm"], fs=100), model)
    legacy = {"method": LEGACY_METHODS[0], "branches": ["rhythm", "morphology", "global"], "mean": [0.1] * 3,
              "std": [1.0] * 3, "quantiles": [0.0] * 1001, "threshold": 1.0, "flag_rate": 0.05}
    old = tiny_checkpoint(tmp_path / "old.pt", ood=legacy)  # loads: the legacy calibration is ignored with a note
    summary = score_archive(old, ptbxl_small, tmp_path / "out", ScoreOptions(workers=0, threads=1))
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert scores["ood_flag"].isna().all() and np.isfinite(scores["ood_score"]).all()
    assert sum("predates the feature-space detector" in n for n in summary.notes) == 1
