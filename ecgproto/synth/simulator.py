"""Vectorised 12-lead ECG simulator: statements -> per-record plan -> beats -> signals (mV).

``plan_records`` draws everything random for N records up front (statements,
morphology, rhythm, noise parameters); ``simulate`` renders any subset of them at any
sampling rate, so the 100 Hz and 500 Hz versions of a record share the same beats and
the output does not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgproto.synth.beats import C, BeatSet, expand_leads, render_beats
from ecgproto.synth.labels_sampler import LabelSample, sample_labels
from ecgproto.synth.morphology import QRS_ONSET_S, Morphology, draw_morphology
from ecgproto.synth.noise import NoisePlan, draw_noise_plan, render_noise
from ecgproto.synth.rhythm import KIND_PAC, KIND_PVC, Schedule, atrial_activity, draw_schedule

DURATION_S = 10.0


@dataclass
class SynthPlan:
    """Everything random about N records, drawn once (see module docstring)."""

    labels: LabelSample
    morph: Morphology
    schedule: Schedule
    noise: NoisePlan
    seed: int
    duration: float = DURATION_S

    @property
    def n(self) -> int:
        return self.labels.labels.shape[0]


def plan_records(
    rng: np.random.Generator,
    age: np.ndarray,
    *,
    seed: int,
    labels: LabelSample | None = None,
    rare_label_floor: float = 0.02,
    noise_scale: float = 1.0,
    powerline_hz: float = 0.0,
) -> SynthPlan:
    """Draw statements (unless given), morphology, rhythm and noise for len(age) records."""
    lab = labels if labels is not None else sample_labels(rng, age, rare_label_floor)
    morph = draw_morphology(rng, lab)
    schedule = draw_schedule(rng, lab, DURATION_S, p_to_r=-morph.center[:, C["P"]])
    noise = draw_noise_plan(rng, lab.labels.shape[0], noise_scale, powerline_hz)
    return SynthPlan(labels=lab, morph=morph, schedule=schedule, noise=noise, seed=seed)


def qt_timing(plan: SynthPlan, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T-wave centre, T width) per beat (len(rows), B) in s relative to R (Bazett QT)."""
    m, s = plan.morph, plan.schedule
    qt = m.qtc[rows, None] * np.sqrt(np.clip(s.rr_prev[rows], 0.3, 2.0))
    tw = np.broadcast_to(m.t_width[rows, None], qt.shape)
    return QRS_ONSET_S + qt - 2.5 * tw, tw


def build_beats(plan: SynthPlan, rows: np.ndarray) -> BeatSet:
    """Per-beat components of the records ``rows`` (deterministic given the plan)."""
    m, s = plan.morph, plan.schedule
    rows = np.asarray(rows)
    b = s.r_time.shape[1]
    center = np.repeat(m.center[rows, None, :], b, axis=1)
    width = np.repeat(m.width[rows, None, :], b, axis=1)
    amp = np.repeat(m.amp[rows, None], b, axis=1)
    r_time = s.r_time[rows]
    # beat-to-beat variability: amplitude jitter and respiratory modulation (deterministic per record)
    phase = 2 * np.pi * s.resp_hz[rows, None] * r_time + s.resp_phase[rows, None]
    jitter = 1.0 + 0.04 * np.sin(phase) + 0.02 * np.sin(2.7 * np.arange(b)[None, :] + 7 * s.resp_phase[rows, None])
    amp = amp * jitter[:, :, None, None]
    t_c, t_w = qt_timing(plan, rows)
    center[:, :, C["T"]] = t_c
    width[:, :, C["T"]] = t_w
    j_point = m.qrs_end[rows, None]
    center[:, :, C["ST"]] = (j_point + t_c - t_w) / 2
    width[:, :, C["ST"]] = np.maximum((t_c - t_w - j_point) / 2, 0.02) * 0.9
    kind = s.kind[rows]
    pvc = kind == KIND_PVC
    center = np.where(pvc[..., None], m.pvc_center[rows, None], center)
    width = np.where(pvc[..., None], m.pvc_width[rows, None], width)
    amp = np.where(pvc[..., None, None], m.pvc_amp[rows, None], amp)
    pac = kind == KIND_PAC
    amp[:, :, C["P"]] = np.where(pac[..., None], m.pac_p_amp[rows, None], amp[:, :, C["P"]])
    amp[:, :, C["P2"]] *= ~pac[..., None]
    center[:, :, C["P"]] = np.where(pac, QRS_ONSET_S - 0.14 + 2.2 * width[:, :, C["P"]], center[:, :, C["P"]])
    return BeatSet(r_time=r_time, valid=s.valid[rows], center=center, width=width, amp=amp)


def _dissociated_p(plan: SynthPlan, rows: np.ndarray, fs: float, n_samples: int) -> np.ndarray:
    """(len(rows), 8, T) P waves of AV-block records, drawn at their own times (zeros elsewhere)."""
    m, s = plan.morph, plan.schedule
    out = np.zeros((len(rows), 8, n_samples), dtype=np.float32)
    sel = np.flatnonzero(s.p_valid[rows].any(axis=1))
    if sel.size == 0:
        return out
    r = rows[sel]
    bp, k = s.p_time.shape[1], m.center.shape[1]
    center = np.zeros((len(r), bp, k))
    width = np.repeat(m.width[r, None, :], bp, axis=1)
    amp = np.zeros((len(r), bp, k, 8))
    amp[:, :, C["P"]] = m.p_amp[r, None, :]
    beats = BeatSet(r_time=s.p_time[r], valid=s.p_valid[r], center=center, width=width, amp=amp)
    out[sel] = render_beats(beats, fs, n_samples)
    return out


def simulate(plan: SynthPlan, rows: np.ndarray, fs: float, *, noise: bool = True, stream: int = 0) -> np.ndarray:
    """Signals of the records ``rows``: (len(rows), 12, duration*fs) float32 mV, leads
    I, II, III, aVR, aVL, aVF, V1–V6. ``noise=False`` gives the clean signal."""
    rows = np.asarray(rows)
    n_samples = int(round(plan.duration * fs))
    x8 = render_beats(build_beats(plan, rows), fs, n_samples)
    sub = Schedule(**{k: getattr(plan.schedule, k)[rows] for k in plan.schedule.__dataclass_fields__})
    x8 += atrial_activity(sub, fs, n_samples)
    x8 += _dissociated_p(plan, rows, fs, n_samples)
    if noise:
        x8 += render_noise(plan.noise, rows, fs, n_samples, plan.seed, stream)
    return expand_leads(x8).astype(np.float32)
