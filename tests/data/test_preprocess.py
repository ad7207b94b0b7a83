"""High-pass filter and standardisation statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, filtfilt

from ecgproto.data.preprocess import fit_standardization, highpass


def test_highpass_removes_baseline_keeps_shape_and_phase() -> None:
    fs, t = 100, np.arange(1000) / 100
    beat = np.sin(2 * np.pi * 5 * t)  # 5 Hz "QRS-like" content
    wander = 2.0 * np.sin(2 * np.pi * 0.05 * t) + 1.5  # drift + DC offset
    x = np.stack([beat + wander] * 12)[None]  # (1, 12, T)
    y = highpass(x, fs, 0.5, 1)
    assert y.shape == x.shape and y.dtype == np.float32
    middle = slice(200, 800)
    assert np.abs(y[0, 0, middle] - beat[middle]).max() < 0.05  # zero phase: no shift of the 5 Hz wave
    assert abs(y[0, 0].mean()) < 0.02


def test_highpass_matches_filtfilt_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 12, 500))
    b, a = butter(2, 0.5, btype="highpass", fs=100)
    expected = filtfilt(b, a, x, axis=-1)  # transfer-function form, same default odd padding
    np.testing.assert_allclose(highpass(x, 100, 0.5, 2), expected, atol=1e-5)
    reflected = filtfilt(b, a, x, axis=-1, padtype="even", padlen=200)  # 2 s mirrored at each end
    np.testing.assert_allclose(highpass(x, 100, 0.5, 2, edge="reflect"), reflected, atol=1e-5)


def test_reflected_edges_carry_no_filter_transient() -> None:
    """A record with a baseline offset: scipy's short odd extension leaves a transient at both ends,
    the 2 s reflection does not."""
    fs, t = 100, np.arange(1000) / 100
    x = np.stack([np.sin(2 * np.pi * 1.2 * t) + 0.8 + 0.3 * t] * 12)
    ends = np.r_[0:30, 970:1000]
    legacy, reflected = highpass(x, fs), highpass(x, fs, edge="reflect")
    middle = np.abs(reflected[:, 300:700]).mean()
    assert np.abs(legacy[:, ends]).mean() > 1.2 * middle
    assert np.abs(reflected[:, ends]).mean() < 1.1 * middle
    with pytest.raises(ValueError, match="edge"):
        highpass(x, fs, edge="zero")


def test_highpass_disabled_and_bad_arguments() -> None:
    x = np.ones((12, 100))
    assert np.array_equal(highpass(x, 100, 0.0), x)
    with pytest.raises(ValueError, match="Nyquist"):
        highpass(x, 100, 60.0)
    with pytest.raises(ValueError, match="order"):
        highpass(x, 100, 0.5, 0)


def test_fit_standardization_matches_numpy_in_chunks() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(37, 12, 50)) * np.arange(1, 13)[None, :, None] + 3).astype(np.float32)
    x[:, 5] = 0.0  # constant lead → std 1
    stats = fit_standardization(x, chunk=8)
    np.testing.assert_allclose(stats["mean"], x.astype(np.float64).mean(axis=(0, 2)), atol=1e-6)
    expected_std = x.astype(np.float64).std(axis=(0, 2))
    expected_std[5] = 1.0
    np.testing.assert_allclose(stats["std"], expected_std, rtol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        fit_standardization(np.zeros((0, 12, 10)))


@pytest.mark.parametrize("fs", [100, 500])
def test_first_order_float32_highpass_is_within_a_hundredth_of_a_microvolt_step(fs: int) -> None:
    """The float32 first-order path stays within 1e-5 mV of float64 on ECG-sized input (offsets, waves)."""
    from scipy.signal import sosfiltfilt

    rng = np.random.default_rng(1)
    t = np.arange(10 * fs) / fs
    x = (rng.normal(0, 0.3, (8, 12, 10 * fs)) + 2 * np.sin(2 * np.pi * 1.2 * t)
         + rng.uniform(-5, 5, (8, 12, 1))).astype(np.float32)
    sos = butter(1, 0.5, btype="highpass", fs=fs, output="sos")
    reference = sosfiltfilt(sos, x.astype(np.float64), axis=-1)
    assert np.abs(highpass(x, fs, 0.5, 1) - reference).max() < 1e-5
    reference = sosfiltfilt(sos, x.astype(np.float64), axis=-1, padtype="even", padlen=2 * fs)
    assert np.abs(highpass(x, fs, 0.5, 1, edge="reflect") - reference).max() < 1e-5
