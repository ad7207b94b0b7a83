"""Parametric beat model: Gaussian P, Q, R, S, T (+ ST plateau) waves projected onto 12 leads.

Each beat is a sum of ``COMPONENTS``; a component has a centre (s, relative to the R
peak), a width (s) and an amplitude on the 8 independent channels ``CHANNELS``
(I, II, V1–V6, mV). Amplitudes come from a 3-D heart-vector (dipole) projection
(x = left, y = inferior/feet, z = anterior) or from explicit lead patterns; the other
limb leads are derived with Einthoven/Goldberger (III = II − I, aVR = −(I + II)/2,
aVL = I − II/2, aVF = II − I/2), so every signal obeys the same lead relations as a
real recording. Rendering is vectorised over records and beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
COMPONENTS: tuple[str, ...] = ("P", "P2", "QSEP", "QPATH", "DELTA", "R", "S", "R2", "ST", "T")
C = {name: i for i, name in enumerate(COMPONENTS)}
# exponent of the basis exp(-|x|^p / 2): Gaussian waves, a flat-topped ST plateau (p = 6)
SHAPE_POWER = np.array([2.0 if name != "ST" else 6.0 for name in COMPONENTS])
WINDOW_S: tuple[float, float] = (-0.5, 0.8)  # beat support around the R peak (s)

_PRECORDIAL_ANGLE = np.deg2rad([115.0, 95.0, 75.0, 55.0, 30.0, 5.0])
_PRECORDIAL_GAIN = np.array([1.0, 1.35, 1.45, 1.4, 1.2, 1.0])
_PRECORDIAL_Y = np.array([0.0, 0.0, 0.05, 0.1, 0.12, 0.15])


def lead_matrix() -> np.ndarray:
    """(3, 8) projection of a heart vector (x left, y inferior, z anterior; mV) onto CHANNELS."""
    m = np.zeros((3, 8))
    m[:, 0] = (1.0, 0.0, 0.0)
    m[:, 1] = (0.5, np.sqrt(3) / 2, 0.0)
    m[0, 2:] = _PRECORDIAL_GAIN * np.cos(_PRECORDIAL_ANGLE)
    m[1, 2:] = _PRECORDIAL_Y
    m[2, 2:] = _PRECORDIAL_GAIN * np.sin(_PRECORDIAL_ANGLE)
    return m


LEAD_MATRIX = lead_matrix()


def project(vec: np.ndarray) -> np.ndarray:
    """Heart vectors (..., 3) mV -> channel amplitudes (..., 8) mV."""
    return vec @ LEAD_MATRIX


def frontal(angle_deg: np.ndarray | float, mag: np.ndarray | float) -> np.ndarray:
    """Limb-lead pattern of a frontal-plane vector (angle in degrees, 0 = lead I, 90 = aVF)
    of magnitude ``mag`` (mV): (..., 8) with zero precordial entries."""
    a = np.deg2rad(np.asarray(angle_deg, dtype=float))
    mag = np.asarray(mag, dtype=float)
    shape = np.broadcast(a, mag).shape
    out = np.zeros(shape + (8,))
    out[..., 0] = mag * np.cos(a)
    out[..., 1] = mag * np.cos(a - np.pi / 3)
    return out


def precordial(pattern: tuple[float, ...], mag: np.ndarray | float) -> np.ndarray:
    """Precordial-only pattern (V1..V6 weights) times ``mag`` (mV): (..., 8)."""
    mag = np.asarray(mag, dtype=float)
    out = np.zeros(mag.shape + (8,))
    out[..., 2:] = mag[..., None] * np.asarray(pattern)
    return out


def expand_leads(x8: np.ndarray) -> np.ndarray:
    """(N, 8, T) channels I, II, V1–V6 -> (N, 12, T) in LEADS order (Einthoven/Goldberger)."""
    i, ii = x8[:, 0], x8[:, 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    return np.concatenate([limb, x8[:, 2:]], axis=1)


@dataclass
class BeatSet:
    """Per-beat wave components of N records with up to B beats each.

    r_time (N, B) s (R-peak time from the record start; beats may lie before 0 or after the
    end so that partial beats appear at the edges), valid (N, B) bool, center (N, B, K) s
    relative to R, width (N, B, K) s, amp (N, B, K, 8) mV on CHANNELS.
    """

    r_time: np.ndarray
    valid: np.ndarray
    center: np.ndarray
    width: np.ndarray
    amp: np.ndarray


def effective_width(width: np.ndarray, fs: float) -> np.ndarray:
    """Widen Gaussians by the sampling kernel so narrow waves keep their area at 100 Hz."""
    return np.sqrt(width**2 + (0.35 / fs) ** 2)


def render_beats(beats: BeatSet, fs: float, n_samples: int) -> np.ndarray:
    """Sum every beat's components into (N, 8, n_samples) float32 channels (mV)."""
    n, b = beats.r_time.shape
    lo, hi = int(np.floor(WINDOW_S[0] * fs)), int(np.ceil(WINDOW_S[1] * fs))
    offs = np.arange(lo, hi)
    w = len(offs)
    r_samp = np.where(beats.valid, beats.r_time * fs, 0.0)
    r_idx = np.floor(r_samp).astype(np.int64)
    frac = (r_samp - r_idx).astype(np.float32)
    width = effective_width(beats.width, fs).astype(np.float32)
    area_keep = (beats.width / effective_width(beats.width, fs)).astype(np.float32)
    amp = (beats.amp * area_keep[..., None] * beats.valid[:, :, None, None]).astype(np.float32)
    pad = -lo + int(np.ceil(1.5 * fs)) + w
    out = np.zeros((n, n_samples + 2 * pad, 8), dtype=np.float32)
    st_like = SHAPE_POWER != 2.0
    cube = (SHAPE_POWER[st_like] / 2.0).astype(np.float32)
    offs_s = offs.astype(np.float32) / fs
    center = beats.center.astype(np.float32)
    for j in range(b):
        rows = np.flatnonzero(beats.valid[:, j])
        if rows.size == 0:
            continue
        t_rel = offs_s[None, :] - frac[rows, j, None] / fs  # (M, W)
        x = (t_rel[:, None, :] - center[rows, j, :, None]) / width[rows, j, :, None]
        e = x * x
        e[:, st_like] = e[:, st_like] ** cube[None, :, None]
        g = np.exp(-0.5 * e)  # (M, K, W)
        wave = np.matmul(g.transpose(0, 2, 1), amp[rows, j])  # (M, W, 8)
        idx = r_idx[rows, j, None] + offs[None, :] + pad
        out[rows[:, None], idx] += wave
    return np.ascontiguousarray(out[:, pad : pad + n_samples].transpose(0, 2, 1))
