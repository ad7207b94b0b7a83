"""Rhythm: R-peak schedules (RR series with ectopic beats) and atrial activity (f / F waves).

Rates: SR 60–99 bpm, SBRAD 42–58, STACH 102–145, SVTAC 150–210 (regular, no P),
SARRH 55–90 with 12–22 % respiratory
RR modulation, AFIB 65–140 bpm with irregular (log-normal, CV 15–30 %) RR and 4.5–8 Hz
fibrillatory waves, AFLT 260–320/min sawtooth flutter waves with 2:1, 3:1, 4:1 or variable
conduction. PVC: coupling 55–70 % of RR with a full compensatory pause; PAC: coupling
65–80 %, the sinus node is reset. BIGU: every other beat is a PVC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgproto.synth.labels_sampler import LabelSample

MAX_BEATS = 48
MAX_P = 24  # atrial (P) waves per record when they are dissociated from the QRS (2AVB, 3AVB)
MARGIN_S = 0.8  # beats are scheduled from -MARGIN_S so the record starts mid-cycle
KIND_NORMAL, KIND_PVC, KIND_PAC = 0, 1, 2
# channel weights (I, II, V1..V6) of atrial activity
F_WAVE_WEIGHTS = np.array([0.3, 0.8, 1.0, 0.7, 0.4, 0.3, 0.2, 0.2])
FLUTTER_WEIGHTS = np.array([0.1, -1.0, 0.7, 0.4, 0.15, 0.15, 0.1, 0.1])


@dataclass
class Schedule:
    """r_time (N, B) s, rr_prev (N, B) s (interval ending at the beat), kind (N, B) int8
    (0 normal, 1 PVC, 2 PAC), valid (N, B) bool, plus atrial parameters per record:
    f_freq (N, 3) Hz, f_phase (N, 3), f_amp (N,) mV, flutter_hz (N,), flutter_phase (N,),
    flutter_amp (N,) mV, resp_hz (N,), resp_phase (N,); for AV block (2AVB, 3AVB) the P waves
    are scheduled on their own: p_time (N, MAX_P) s (P-wave centre), p_valid (N, MAX_P) bool."""

    r_time: np.ndarray
    rr_prev: np.ndarray
    kind: np.ndarray
    valid: np.ndarray
    f_freq: np.ndarray
    f_phase: np.ndarray
    f_amp: np.ndarray
    flutter_hz: np.ndarray
    flutter_phase: np.ndarray
    flutter_amp: np.ndarray
    resp_hz: np.ndarray
    resp_phase: np.ndarray
    p_time: np.ndarray
    p_valid: np.ndarray

    @property
    def heart_rate(self) -> np.ndarray:
        """(N,) mean ventricular rate (bpm) over the valid beats."""
        rr = np.where(self.valid[:, 1:], self.rr_prev[:, 1:], np.nan)
        return 60.0 / np.nanmean(rr, axis=1)


def _choose_ectopic(rng: np.random.Generator, approx_t: np.ndarray, count: np.ndarray, duration: float) -> np.ndarray:
    """(N, B) bool: up to ``count`` beats per record, spaced >= 3 beats, inside the record."""
    n, b = approx_t.shape
    offset = rng.integers(0, 3, n)
    cand = ((np.arange(b)[None, :] - offset[:, None]) % 3 == 0) & (approx_t > 0.6) & (approx_t < duration - 1.2)
    score = np.where(cand, rng.random((n, b)), -1.0)
    order = np.argsort(-score, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(b)[None, :].repeat(n, 0), axis=1)
    return cand & (rank < count[:, None])


def _av_block(
    rng: np.random.Generator, lab: LabelSample, p_to_r: np.ndarray, duration: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Atrial P-wave times and the conducted/escape R times of AV-block records.

    2AVB: regular sinus P waves (60–95/min); P waves conduct after ``p_to_r`` s except every
    n-th (n = 2, 3 or 4: 2:1 or Mobitz II). 3AVB: P waves at 60–95/min and an independent
    regular escape rhythm at 30–45 bpm. Returns p_time, p_valid (N, MAX_P) and r_time,
    r_valid (N, MAX_BEATS) (meaningful only for AV-block rows).
    """
    n = lab.labels.shape[0]
    pp = 60.0 / rng.uniform(60.0, 95.0, n)
    p_first = -MARGIN_S + rng.random(n) * pp
    k = np.arange(MAX_P)[None, :]
    p_time = p_first[:, None] + k * pp[:, None] * (1.0 + rng.normal(0.0, 0.01, (n, MAX_P)))
    p_valid = p_time <= duration + 0.6
    drop_every = rng.choice([2, 3, 4], size=n, p=[0.4, 0.3, 0.3])
    conducted = (k % drop_every[:, None]) != drop_every[:, None] - 1
    r2 = np.sort(np.where(conducted & p_valid, p_time + p_to_r[:, None], np.inf), axis=1)
    r2 = np.concatenate([r2, np.full((n, MAX_BEATS - MAX_P), np.inf)], axis=1)
    rr3 = 60.0 / rng.uniform(30.0, 45.0, n)
    r3 = -MARGIN_S + rng.random(n)[:, None] * rr3[:, None] + np.arange(MAX_BEATS)[None, :] * rr3[:, None]
    r_time = np.where(lab.has("3AVB")[:, None], r3, r2)
    r_valid = np.isfinite(r_time) & (r_time <= duration + 0.6)
    return p_time, p_valid, np.where(np.isfinite(r_time), r_time, duration + 5.0), r_valid


def draw_schedule(
    rng: np.random.Generator, lab: LabelSample, duration: float = 10.0, p_to_r: np.ndarray | None = None,
) -> Schedule:
    """R-peak times and atrial activity parameters for N records of ``duration`` seconds.

    ``p_to_r`` (N,) s from the P-wave centre to the R peak (needed for 2AVB conduction).
    """
    n, b = lab.labels.shape[0], MAX_BEATS
    u = lambda lo, hi, size=n: rng.uniform(lo, hi, size)  # noqa: E731
    h = lab.has
    hr = np.clip(rng.normal(74.0, 9.0, n), 60.0, 99.0)
    hr = np.where(h("SBRAD"), u(42.0, 58.0), hr)
    hr = np.where(h("STACH"), u(102.0, 145.0), hr)
    hr = np.where(h("SARRH"), u(55.0, 90.0), hr)
    hr = np.where(h("AFIB"), u(65.0, 140.0), hr)
    hr = np.where(h("SVTAC"), u(150.0, 210.0), hr)
    rr0 = 60.0 / hr
    resp_hz, resp_phase = u(0.15, 0.3), u(0.0, 2 * np.pi)
    beat_t = np.arange(b)[None, :] * rr0[:, None]
    rr = rr0[:, None] * (1.0 + rng.normal(0.0, 0.012, (n, b)))
    sarrh_amp = u(0.12, 0.22) * h("SARRH")
    rr *= 1.0 + sarrh_amp[:, None] * np.sin(2 * np.pi * resp_hz[:, None] * beat_t + resp_phase[:, None])
    af_cv = u(0.15, 0.3)
    af_rr = rr0[:, None] * rng.lognormal(0.0, af_cv[:, None], (n, b))
    rr = np.where(h("AFIB")[:, None], np.clip(af_rr, 0.3, 2.0), rr)
    flutter_hz = u(4.3, 5.3)
    ratio = rng.choice([2, 3, 4, 0], size=n, p=[0.4, 0.1, 0.3, 0.2])
    per_beat = np.where(ratio[:, None] == 0, rng.choice([2, 3, 4], size=(n, b)), ratio[:, None])
    rr = np.where(h("AFLT")[:, None], per_beat / flutter_hz[:, None], rr)

    approx_t = np.cumsum(rr, axis=1) - MARGIN_S
    n_pvc = np.where(h("PVC"), rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2]), 0)
    n_pac = np.where(h("PAC"), rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1]), 0)
    ectopic = _choose_ectopic(rng, approx_t, n_pvc + n_pac, duration)
    # the first n_pvc chosen beats (in time order) are PVCs, the rest PACs
    order_in_record = np.cumsum(ectopic, axis=1)
    kind = np.where(ectopic, np.where(order_in_record <= n_pvc[:, None], KIND_PVC, KIND_PAC), KIND_NORMAL)
    bigu = h("BIGU")[:, None]  # ventricular bigeminy: every other beat is a PVC
    kind = np.where(bigu, np.where(np.arange(b)[None, :] % 2 == 1, KIND_PVC, KIND_NORMAL), kind).astype(np.int8)
    coupling = np.where(kind == KIND_PVC, u(0.55, 0.7, (n, b)), u(0.65, 0.8, (n, b)))
    base = rr.copy()
    rr = np.where(kind != KIND_NORMAL, coupling * base, rr)
    after_pvc = np.zeros_like(ectopic)
    after_pvc[:, 1:] = kind[:, :-1] == KIND_PVC
    rr[:, 1:] = np.where(after_pvc[:, 1:], rr[:, 1:] + (1.0 - coupling[:, :-1]) * base[:, :-1], rr[:, 1:])

    first = -MARGIN_S + rng.random(n) * rr[:, 0]
    r_time = first[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(rr[:, 1:], axis=1)], axis=1)
    valid = r_time <= duration + 0.6
    p_to_r = np.full(n, 0.2) if p_to_r is None else p_to_r
    p_time, p_valid, r_av, valid_av = _av_block(rng, lab, p_to_r, duration)
    avb = (lab.has("2AVB") | lab.has("3AVB"))[:, None]
    r_time = np.where(avb, r_av, r_time)
    valid = np.where(avb, valid_av, valid)
    rr_av = np.concatenate([r_av[:, 1:2] - r_av[:, :1], np.diff(r_av, axis=1)], axis=1)
    rr = np.where(avb, np.clip(rr_av, 0.3, 3.0), rr)
    kind = np.where(avb, KIND_NORMAL, kind).astype(np.int8)
    return Schedule(
        r_time=r_time, rr_prev=rr, kind=kind, valid=valid, p_time=p_time, p_valid=p_valid & avb,
        f_freq=rng.uniform(4.5, 8.0, (n, 3)), f_phase=rng.uniform(0, 2 * np.pi, (n, 3)),
        f_amp=u(0.03, 0.08) * h("AFIB"), flutter_hz=flutter_hz, flutter_phase=u(0.0, 1.0),
        flutter_amp=u(0.1, 0.2) * h("AFLT"), resp_hz=resp_hz, resp_phase=resp_phase,
    )


def atrial_activity(s: Schedule, fs: float, n_samples: int) -> np.ndarray:
    """(N, 8, T) fibrillatory (AFIB) and flutter (AFLT) waves on CHANNELS, mV."""
    t = np.arange(n_samples, dtype=np.float32) / fs
    mod = 0.7 + 0.3 * np.sin(2 * np.pi * 0.3 * t[None, :] + s.f_phase[:, :1])
    f = np.zeros((len(s.f_amp), n_samples), dtype=np.float32)
    for j in range(s.f_freq.shape[1]):
        f += np.sin(2 * np.pi * s.f_freq[:, j, None] * t[None, :] + s.f_phase[:, j, None]).astype(np.float32) / 2
    f *= (s.f_amp[:, None] * mod).astype(np.float32)
    cyc = (s.flutter_hz[:, None] * t[None, :] + s.flutter_phase[:, None]) % 1.0
    saw = np.where(cyc < 0.8, cyc / 0.8, (1.0 - cyc) / 0.2) - 0.5  # slow rise, fast fall
    fl = (saw * s.flutter_amp[:, None]).astype(np.float32)
    return f[:, None, :] * F_WAVE_WEIGHTS[None, :, None].astype(np.float32) + fl[:, None, :] * FLUTTER_WEIGHTS[
        None, :, None
    ].astype(np.float32)
