"""Where each simulated finding is: one row per (record, statement, beat occurrence).

Columns: ``<id column>, code, leads, start_s, end_s``. ``leads`` is a ';'-joined list in
canonical order (I, II, III, aVR, aVL, aVF, V1–V6) of the leads on which the finding is
drawn; ``start_s``/``end_s`` bound the segment in seconds from the record start (clipped
to the record). Beat-level findings get one row per normal (non-ectopic) beat whose R
peak lies inside the record: QRS findings span QRS onset–offset, ST findings the J point
to the T peak, T findings the T wave (±2 widths), LNGQT the QT interval, LAO/LAE the P
wave, 1AVB the PR interval, WPW from P onset to the R peak (short PR + delta wave);
PVC/PAC get one row per ectopic beat (all 12 leads). Rhythm
statements, BIGU, 2AVB, 3AVB and NORM get one row spanning the whole record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgproto.synth.beats import C, LEADS
from ecgproto.synth.rhythm import KIND_NORMAL, KIND_PAC, KIND_PVC
from ecgproto.synth.simulator import SynthPlan, qt_timing

ALL = ";".join(LEADS)
BEAT_LEADS: dict[str, tuple[str, str]] = {  # code -> (segment kind, leads)
    "CLBBB": ("qrs", "I;aVL;V1;V2;V3;V5;V6"),
    "CRBBB": ("qrs", "I;aVR;V1;V2;V5;V6"),
    "IRBBB": ("qrs", "V1;V2"),
    "LAFB": ("qrs", "I;II;III;aVL;aVF"),
    "LPFB": ("qrs", "I;II;III;aVL;aVF"),
    "RVH": ("qrs", "I;V1;V2;V5;V6"),
    "WPW": ("pre", ALL),
    "IMI": ("qrs", "II;III;aVF"),
    "ASMI": ("qrs", "V1;V2;V3"),
    "QWAVE": ("qrs", "I;aVL;V5;V6"),
    "ABQRS": ("qrs", ALL),
    "LVH": ("qrs", "I;aVL;V1;V2;V5;V6"),
    "HVOLT": ("qrs", ALL),
    "LVOLT": ("qrs", ALL),
    "ISC_": ("st", "I;aVL;V4;V5;V6"),
    "STD_": ("st", "II;III;aVF;V4;V5;V6"),
    "STE_": ("st", "II;III;aVF"),
    "INJAS": ("st", "V1;V2;V3;V4"),
    "NDT": ("t", "I;aVL;V4;V5;V6"),
    "INVT": ("t", "V1;V2;V3;V4"),
    "LNGQT": ("qt", ALL),
    "LAO/LAE": ("p", "II;V1"),
    "RAO/RAE": ("p", "II;III;aVF"),
    "1AVB": ("pr", "II;V1"),
}
RECORD_LEADS: dict[str, str] = {
    "SR": ALL, "STACH": ALL, "SBRAD": ALL, "SARRH": ALL, "NORM": ALL,
    "AFIB": "II;III;aVF;V1", "AFLT": "II;III;aVF;V1", "SVTAC": ALL, "BIGU": ALL,
    "2AVB": ALL, "3AVB": ALL,
}
COLUMNS = ("code", "leads", "start_s", "end_s")


def _segments(plan: SynthPlan, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) relative to R, each (N, B) s, of one segment kind for normal beats."""
    m = plan.morph
    rows = np.arange(plan.n)
    t_c, t_w = qt_timing(plan, rows)
    shape = t_c.shape
    on = np.broadcast_to(m.qrs_onset[:, None], shape)
    end = np.broadcast_to(m.qrs_end[:, None], shape)
    if kind == "qrs":
        return on, end
    if kind == "st":
        return end, t_c
    if kind == "t":
        return t_c - 2 * t_w, t_c + 2 * t_w
    if kind == "qt":
        return on, t_c + 2.5 * t_w
    p_on = np.broadcast_to((m.center[:, C["P"]] - 2.5 * m.width[:, C["P"]])[:, None], shape)
    if kind == "p":
        return p_on, np.broadcast_to((m.center[:, C["P2"]] + 2.5 * m.width[:, C["P2"]])[:, None], shape)
    if kind == "pr":
        return p_on, on
    if kind == "pre":
        return p_on, np.zeros(shape)
    raise ValueError(f"unknown segment kind {kind!r}")


def localise_findings(plan: SynthPlan, ids: np.ndarray, id_column: str = "ecg_id") -> pd.DataFrame:
    """Findings table for all records of ``plan`` (``ids`` (N,) names them)."""
    s, dur = plan.schedule, plan.duration
    ids = np.asarray(ids)
    inside = s.valid & (s.r_time >= 0.0) & (s.r_time <= dur)
    frames = []

    def add(code: str, leads: str, mask: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        r, b = np.nonzero(mask)
        lo = np.clip(s.r_time[r, b] + start[r, b], 0.0, dur)
        hi = np.clip(s.r_time[r, b] + end[r, b], 0.0, dur)
        keep = hi > lo
        frames.append(pd.DataFrame({
            id_column: ids[r[keep]], "code": code, "leads": leads,
            "start_s": np.round(lo[keep], 3), "end_s": np.round(hi[keep], 3),
        }))

    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for code, (kind, leads) in BEAT_LEADS.items():
        if kind not in cache:
            cache[kind] = _segments(plan, kind)
        add(code, leads, plan.labels.has(code)[:, None] & inside & (s.kind == KIND_NORMAL), *cache[kind])
    t_c, t_w = qt_timing(plan, np.arange(plan.n))
    pvc_end = plan.morph.pvc_center[:, C["T"]] + 2.5 * plan.morph.pvc_width[:, C["T"]]
    add("PVC", ALL, inside & (s.kind == KIND_PVC), np.full(t_c.shape, -0.07), np.broadcast_to(pvc_end[:, None], t_c.shape))
    add("PAC", ALL, inside & (s.kind == KIND_PAC), np.full(t_c.shape, -0.25), t_c + 2 * t_w)
    for code, leads in RECORD_LEADS.items():
        r = np.flatnonzero(plan.labels.has(code))
        frames.append(pd.DataFrame({id_column: ids[r], "code": code, "leads": leads, "start_s": 0.0, "end_s": dur}))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([id_column, "start_s", "code"], kind="stable").reset_index(drop=True)
