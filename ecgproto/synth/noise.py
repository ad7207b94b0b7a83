"""Recording noise: baseline wander, EMG-like noise, bursts, electrode problems, mains hum.

Every record gets mild wander (0.02–0.08 mV, 0.05–0.4 Hz) and EMG-like white noise
(4–12 µV). On top, as in PTB-XL's quality columns: ``baseline_drift`` (~12 %: 0.2–0.5 mV
wander on some leads), ``static_noise`` (~15 %: 20–50 µV noise), ``burst_noise`` (~4 %:
0.3–1.5 s of 0.08–0.25 mV noise), ``electrodes_problems`` (~1 %: one chest lead with a
large artefact). The flag columns name the affected leads the way PTB-XL does
(``" , V1,V2"``, ``" , I-AVF"`` for all limb leads, ``" , alles"`` for all leads).
Noise is drawn on the independent channels (I, II, V1–V6), so limb-lead noise spreads to
the derived leads as it does on a real cart. Sample noise is seeded per record, so the
output does not depend on how records are batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")


@dataclass
class NoisePlan:
    """Per-record noise parameters (N records, 8 channels I, II, V1–V6; amplitudes mV)."""

    wander_amp: np.ndarray  # (N, 8)
    wander_freq: np.ndarray  # (N, 3) Hz
    wander_phase: np.ndarray  # (N, 8, 3)
    emg_std: np.ndarray  # (N, 8)
    burst_amp: np.ndarray  # (N, 8), 0 = no burst
    burst_start: np.ndarray  # (N,) s
    burst_len: np.ndarray  # (N,) s
    electrode: np.ndarray  # (N,) channel index with an electrode problem, -1 = none
    powerline_amp: np.ndarray  # (N,)
    powerline_hz: float
    scale: float  # SynthConfig.noise_scale (also scales the electrode artefact)
    flags: dict[str, list[str]]  # PTB-XL quality columns -> (N,) strings ("" = none)


def _affected(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    """Random affected channel sets (N, 8) bool and their PTB-XL lead descriptions."""
    kind = rng.choice(3, size=n, p=[0.35, 0.25, 0.4])  # limb, all, chest subset
    chest = rng.random((n, 6)) < 0.3
    chest[np.arange(n), rng.integers(0, 6, n)] = True
    mask = np.zeros((n, 8), dtype=bool)
    mask[kind == 0, :2] = True
    mask[kind == 1] = True
    mask[kind == 2, 2:] = chest[kind == 2]
    text = []
    for i in range(n):
        if kind[i] == 0:
            text.append(" , I-AVF")
        elif kind[i] == 1:
            text.append(" , alles")
        else:
            text.append(" , " + ",".join(c for c, m in zip(_CHEST, chest[i]) if m))
    return mask, text


def draw_noise_plan(rng: np.random.Generator, n: int, scale: float = 1.0, powerline_hz: float = 0.0) -> NoisePlan:
    """Draw noise parameters and the matching PTB-XL quality flags for N records."""
    wander_amp = rng.uniform(0.02, 0.08, (n, 8))
    drift = rng.random(n) < 0.12
    mask, drift_text = _affected(rng, n)
    wander_amp = wander_amp + np.where(drift[:, None] & mask, rng.uniform(0.2, 0.5, (n, 1)), 0.0)
    emg = rng.uniform(0.004, 0.012, (n, 1)) * np.ones((1, 8))
    static = rng.random(n) < 0.15
    mask_s, static_text = _affected(rng, n)
    emg = np.where(static[:, None] & mask_s, rng.uniform(0.02, 0.05, (n, 1)), emg)
    burst = rng.random(n) < 0.04
    mask_b, burst_text = _affected(rng, n)
    burst_amp = np.where(burst[:, None] & mask_b, rng.uniform(0.08, 0.25, (n, 1)), 0.0)
    s = float(scale)
    electrode = np.where((rng.random(n) < 0.01) & (s > 0), rng.integers(2, 8, n), -1)
    flags = {
        "baseline_drift": [t if d and s > 0 else "" for t, d in zip(drift_text, drift)],
        "static_noise": [t if d and s > 0 else "" for t, d in zip(static_text, static)],
        "burst_noise": [t.replace(" , ", "") if d and s > 0 else "" for t, d in zip(burst_text, burst)],
        "electrodes_problems": [_CHEST[e - 2] if e >= 0 and s > 0 else "" for e in electrode],
    }
    return NoisePlan(
        wander_amp=wander_amp * s, wander_freq=rng.uniform(0.05, 0.4, (n, 3)),
        wander_phase=rng.uniform(0, 2 * np.pi, (n, 8, 3)), emg_std=emg * s, burst_amp=burst_amp * s,
        burst_start=rng.uniform(0.0, 8.5, n), burst_len=rng.uniform(0.3, 1.5, n), electrode=electrode,
        powerline_amp=rng.uniform(0.01, 0.04, n) * s * (powerline_hz > 0), powerline_hz=float(powerline_hz),
        scale=s, flags=flags,
    )


def render_noise(plan: NoisePlan, rows: np.ndarray, fs: float, n_samples: int, seed: int, stream: int) -> np.ndarray:
    """(len(rows), 8, T) float32 noise (mV) for the records ``rows`` of ``plan``.

    White-noise parts come from a generator seeded by (seed, stream, record index).
    """
    t = np.arange(n_samples, dtype=np.float32) / np.float32(fs)
    rows = np.asarray(rows)
    out = np.zeros((len(rows), 8, n_samples), dtype=np.float32)
    amp = (plan.wander_amp[rows] / np.sqrt(3)).astype(np.float32)[:, :, None]
    for j in range(plan.wander_freq.shape[1]):
        omega = (2 * np.pi * plan.wander_freq[rows, j]).astype(np.float32)[:, None, None]
        out += np.sin(omega * t + plan.wander_phase[rows, :, j, None].astype(np.float32)) * amp
    if plan.powerline_hz > 0 and plan.powerline_hz < fs / 2:
        hum = np.sin(2 * np.pi * plan.powerline_hz * t).astype(np.float32)
        out += plan.powerline_amp[rows, None, None].astype(np.float32) * hum
    in_burst = (t[None, :] >= plan.burst_start[rows, None]) & (t[None, :] < (plan.burst_start + plan.burst_len)[rows, None])
    for k, i in enumerate(rows):
        rng = np.random.default_rng([seed, stream, int(i)])
        white = rng.standard_normal((8, n_samples), dtype=np.float32)
        out[k] += white * plan.emg_std[i, :, None].astype(np.float32)
        if plan.burst_amp[i].any():
            burst = rng.standard_normal((8, n_samples), dtype=np.float32)
            out[k] += burst * plan.burst_amp[i, :, None].astype(np.float32) * in_burst[k]
        e = plan.electrode[i]
        if e >= 0:
            walk = np.cumsum(rng.standard_normal(n_samples)) / np.sqrt(fs)
            out[k, e] += (plan.scale * (0.4 * walk + 0.1 * rng.standard_normal(n_samples))).astype(np.float32)
    return out
