"""Synthetic MIMIC-IV-ECG studies: when each ECG was taken, what it shows, and the cart's
machine statements.

Per admission 1–3 ECGs: emergency admissions get their first ECG in the ED (between
``edregtime`` and admission, often before ``admittime``), others just after admission;
5 % are stamped up to 50 min before ``admittime`` with no ED visit (cart clock skew, inside
the default 1 h tolerance). Outside any admission: outpatient ECGs 30–700 days away
from admissions, and for ~10 % of subjects one ECG 2–6 days before an admission (inside
a 7-day look-back window only). Chronic findings are shared by all ECGs of a subject;
AF is persistent (all ECGs) for 70 % of AF subjects and paroxysmal (about half) otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgproto.synth.beats import C
from ecgproto.synth.labels_sampler import CODE_INDEX, RHYTHMS, LabelSample, harmonise, sample_labels, share_chronic
from ecgproto.synth.mimic_hosp import EXPOSURES
from ecgproto.synth.morphology import Morphology
from ecgproto.synth.rhythm import Schedule

STATEMENTS: dict[str, str] = {
    "SR": "Sinus rhythm", "STACH": "Sinus tachycardia", "SBRAD": "Sinus bradycardia",
    "SARRH": "Sinus arrhythmia", "AFIB": "Atrial fibrillation", "AFLT": "Atrial flutter",
    "SVTAC": "Supraventricular tachycardia", "BIGU": "Ventricular bigeminy",
    "2AVB": "2nd degree A-V block", "3AVB": "Complete heart block",
    "LPFB": "Left posterior fascicular block", "WPW": "Wolff-Parkinson-White pattern",
    "RVH": "Right ventricular hypertrophy", "RAO/RAE": "Right atrial enlargement",
    "1AVB": "1st degree A-V block", "PVC": "Ventricular premature complex", "PAC": "Atrial premature complex",
    "CLBBB": "Left bundle branch block", "CRBBB": "Right bundle branch block",
    "IRBBB": "Incomplete right bundle branch block", "LAFB": "Left anterior fascicular block",
    "IMI": "Inferior infarct - age undetermined", "ASMI": "Anteroseptal infarct - age undetermined",
    "QWAVE": "Lateral Q waves", "ABQRS": "Abnormal QRS complex", "LVH": "Left ventricular hypertrophy",
    "HVOLT": "Prominent QRS voltages", "LVOLT": "Low QRS voltages", "LAO/LAE": "Left atrial abnormality",
    "ISC_": "Lateral ST-T changes may be due to myocardial ischemia", "STD_": "Inferolateral ST depression",
    "STE_": "Inferior ST elevation", "INJAS": "Anteroseptal injury pattern",
    "NDT": "Nonspecific T wave abnormality", "INVT": "Anterior T wave inversion", "LNGQT": "Prolonged QT interval",
}
HEDGED = ("LVH", "RVH", "LAO/LAE", "RAO/RAE", "ISC_", "IMI", "ASMI", "NDT", "LAFB", "LPFB")
BORDERLINE = ("SARRH", "SBRAD", "STACH", "IRBBB", "NDT", "PAC", "LAO/LAE")
N_REPORTS = 18
MISSING = 29999  # MIMIC-IV-ECG's value for an interval the cart could not measure


def ecg_times(rng: np.random.Generator, admissions: pd.DataFrame) -> pd.DataFrame:
    """ECG events: subject_id, hadm_id (0 = none), ecg_time (datetime64[s]), ecg_kind."""
    m = len(admissions)
    admit = admissions["admittime"].to_numpy()
    disch = admissions["dischtime"].to_numpy()
    edreg = admissions["edregtime"].to_numpy()
    has_ed = ~np.isnat(edreg)
    k = rng.choice([1, 2, 3], size=m, p=[0.65, 0.28, 0.07])
    adm = np.repeat(np.arange(m), k)
    nth = np.arange(len(adm)) - np.searchsorted(adm, adm)
    stay = (disch - admit)[adm].astype(float)
    t = admit[adm] + (rng.random(len(adm)) * stay).astype("timedelta64[s]")
    kind = np.full(len(adm), "admission", dtype=object)
    first = nth == 0
    ed_first = first & has_ed[adm]
    ed_span = (admit - edreg)[adm].astype(float) + 7200.0
    t_ed = edreg[adm] + (600 + rng.random(len(adm)) * np.maximum(ed_span - 600, 1)).astype("timedelta64[s]")
    t = np.where(ed_first, t_ed, t)
    kind[ed_first] = "ed"
    early = first & ~has_ed[adm]
    t = np.where(early, admit[adm] + (rng.random(len(adm)) * 12 * 3600).astype("timedelta64[s]"), t)
    skew = early & (rng.random(len(adm)) < 0.05 / 0.3)
    t = np.where(skew, admit[adm] - (rng.uniform(5, 50, len(adm)) * 60).astype("timedelta64[s]"), t)
    kind[skew] = "clock_skew"
    events = pd.DataFrame({"subject_id": admissions["subject_id"].to_numpy()[adm],
                           "hadm_id": admissions["hadm_id"].to_numpy()[adm], "ecg_time": t, "ecg_kind": kind})

    subj_first = admissions.groupby("subject_id", sort=True).agg(first_admit=("admittime", "min"), last_disch=("dischtime", "max"))
    n_out = rng.poisson(0.5, len(subj_first))
    sid = np.repeat(subj_first.index.to_numpy(), n_out)
    before = rng.random(len(sid)) < 0.5
    days = rng.uniform(30, 700, len(sid)) * 86400
    t_out = np.where(before, np.repeat(subj_first["first_admit"].to_numpy(), n_out) - days.astype("timedelta64[s]"),
                     np.repeat(subj_first["last_disch"].to_numpy(), n_out) + days.astype("timedelta64[s]"))
    look = rng.random(len(subj_first)) < 0.1
    t_look = subj_first["first_admit"].to_numpy()[look] - (rng.uniform(2, 6, look.sum()) * 86400).astype("timedelta64[s]")
    extra = pd.DataFrame({
        "subject_id": np.r_[sid, subj_first.index.to_numpy()[look]],
        "hadm_id": 0,
        "ecg_time": np.r_[t_out, t_look],
        "ecg_kind": ["outpatient"] * len(sid) + ["lookback"] * int(look.sum()),
    })
    # drop out-of-admission ECGs that happen to fall near another admission of the subject
    near = extra.reset_index().merge(admissions[["subject_id", "admittime", "dischtime"]], on="subject_id")
    lo = near["admittime"] - np.timedelta64(1, "D")
    bad = near.loc[(near["ecg_time"] > lo) & (near["ecg_time"] < near["dischtime"]), "index"].unique()
    extra = extra.drop(index=bad)
    events = pd.concat([events, extra], ignore_index=True)
    events["ecg_time"] = events["ecg_time"].to_numpy().astype("datetime64[m]").astype("datetime64[s]")
    return events.sort_values(["subject_id", "ecg_time"], kind="stable").reset_index(drop=True)


def ecg_labels(rng: np.random.Generator, events: pd.DataFrame, subject_age: np.ndarray, floor: float) -> tuple[LabelSample, np.ndarray]:
    """Statements for each ECG (chronic ones shared within a subject) and the (N,) bool
    flag of persistent AF per ECG's subject. ``subject_age`` (N,) age at the ECG."""
    sub = events["subject_id"].to_numpy()
    first_index = np.searchsorted(sub, sub)
    lab = sample_labels(rng, subject_age, floor)
    lab = share_chronic(rng, lab, first_index, p_keep=1.0)
    labels = lab.labels.copy()
    rhythm_cols = [CODE_INDEX[c] for c in RHYTHMS]
    atrial = labels[:, [CODE_INDEX["AFIB"], CODE_INDEX["AFLT"]]].any(axis=1)
    subj_af = atrial[first_index]
    persistent = subj_af & (rng.random(len(sub)) < 0.7)[first_index]
    parox_on = subj_af & ~persistent & (rng.random(len(sub)) < 0.5)
    copy = persistent | parox_on
    labels[np.ix_(np.flatnonzero(copy), rhythm_cols)] = labels[np.ix_(first_index[copy], rhythm_cols)]
    labels = harmonise(labels)
    lik = np.where(labels == 1, np.maximum(lab.likelihood, 0.0), 0.0).astype(np.float32)
    norm = CODE_INDEX["NORM"]
    lik[:, norm] = np.where(labels[:, norm] == 1, 100.0, 0.0)
    return LabelSample(labels=labels, likelihood=lik, severity=lab.severity), persistent


def subject_exposures(events: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per subject 0/1 exposure (any of its ECGs shows the finding), EXPOSURES columns."""
    data = {"subject_id": events["subject_id"].to_numpy()}
    for name, codes in EXPOSURES.items():
        data[name] = labels[:, [CODE_INDEX[c] for c in codes]].any(axis=1).astype(int)
    return pd.DataFrame(data).groupby("subject_id", sort=True).max().reset_index()


def machine_statements(rng: np.random.Generator, labels: np.ndarray) -> list[list[str]]:
    """Cart statements per ECG: rhythm first, findings (10 % missed, some hedged with
    'Possible'/'Probable', 3 % a spurious one), then Normal/Borderline/Abnormal ECG."""
    codes = [c for c in STATEMENTS]
    out = []
    miss = rng.random((len(labels), len(codes))) < 0.1
    hedge = rng.random((len(labels), len(codes))) < 0.2
    spurious = rng.random(len(labels)) < 0.03
    spurious_code = rng.choice(["NDT", "LAO/LAE", "ISC_", "IRBBB"], len(labels))
    for i, row in enumerate(labels):
        present = [c for c in codes if row[CODE_INDEX[c]]]
        rhythm = [STATEMENTS[c] for c in present if c in RHYTHMS]
        found = []
        for j, c in enumerate(codes):
            if c in RHYTHMS or not row[CODE_INDEX[c]] or miss[i, j]:
                continue
            text = STATEMENTS[c]
            if c in HEDGED and hedge[i, j]:
                text = ("Possible " if j % 2 else "Probable ") + text[0].lower() + text[1:]
            found.append(text)
        if spurious[i] and not row[CODE_INDEX[spurious_code[i]]]:
            found.append("Possible " + STATEMENTS[spurious_code[i]][0].lower() + STATEMENTS[spurious_code[i]][1:])
        if row[CODE_INDEX["NORM"]]:
            summary = "Normal ECG"
        elif all(c in BORDERLINE or c in ("SR",) for c in present):
            summary = "Borderline ECG"
        else:
            summary = "Abnormal ECG"
        out.append((rhythm + found + [summary])[:N_REPORTS])
    return out


def _axis(amp_i: np.ndarray, amp_ii: np.ndarray) -> np.ndarray:
    y = (amp_ii - 0.5 * amp_i) / (np.sqrt(3) / 2)
    return np.round(np.rad2deg(np.arctan2(y, amp_i))).astype(int)


def machine_measurements(
    rng: np.random.Generator, events: pd.DataFrame, study_ids: np.ndarray, lab: LabelSample,
    morph: Morphology, schedule: Schedule,
) -> pd.DataFrame:
    """machine_measurements.csv frame (33 MIMIC-IV-ECG columns)."""
    n = len(events)
    reports = machine_statements(rng, lab.labels)
    rep = {f"report_{j}": [r[j] if j < len(r) else "" for r in reports] for j in range(N_REPORTS)}
    rr = 1000.0 / (schedule.heart_rate / 60.0)
    origin = 0.25  # s before the R peak
    has_p = ~(lab.has("AFIB") | lab.has("AFLT") | lab.has("SVTAC"))
    p_on = (origin + morph.center[:, C["P"]] - 2.2 * morph.width[:, C["P"]]) * 1000
    p_end = (origin + morph.center[:, C["P"]] + 2.2 * morph.width[:, C["P"]]) * 1000
    t_end = (origin + -0.045 + morph.qtc * np.sqrt(rr / 1000.0)) * 1000
    frame = pd.DataFrame({
        "subject_id": events["subject_id"].to_numpy(),
        "study_id": study_ids,
        "cart_id": rng.choice([6848, 8519, 6872, 8429, 6701, 7390], n),
        "ecg_time": events["ecg_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        **rep,
        "bandwidth": "0.005-150 Hz",
        "filtering": "60 Hz notch Baseline filter",
        "rr_interval": np.round(rr).astype(int),
        "p_onset": np.where(has_p, np.round(p_on), MISSING).astype(int),
        "p_end": np.where(has_p, np.round(p_end), MISSING).astype(int),
        "qrs_onset": np.round((origin + morph.qrs_onset) * 1000).astype(int),
        "qrs_end": np.round((origin + morph.qrs_end) * 1000).astype(int),
        "t_end": np.round(t_end).astype(int),
        "p_axis": np.where(has_p, _axis(morph.amp[:, C["P"], 0], morph.amp[:, C["P"], 1]), MISSING),
        "qrs_axis": np.round(morph.axis).astype(int),
        "t_axis": _axis(morph.amp[:, C["T"], 0], morph.amp[:, C["T"], 1]),
    })
    return frame
