"""A tiny MIMIC-shaped cohort with planted prototype -> diagnosis associations (tests only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = {"rhythm": ["AFIB", "SR", "SBRAD"], "morphology": ["CLBBB", "IMI"], "global": ["NORM"]}
PER_CLASS = 3


def prototype_table() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rows, vectors, rng = [], {}, np.random.default_rng(5)
    idx = 0
    for branch, classes in CLASSES.items():
        vs = []
        for c in classes:
            centre = rng.normal(size=16)
            spread = 2.0 if c == "AFIB" else 0.2  # AFIB prototypes far apart (a "mixed" class)
            for k in range(PER_CLASS):
                rows.append({"index": idx, "branch": branch, "local_index": len(vs), "class_code": c})
                vs.append(centre + spread * rng.normal(size=16))
                idx += 1
        vectors[branch] = np.array(vs)
    return pd.DataFrame(rows), vectors


def simulate(n_subjects: int = 600, seed: int = 0, effect: float = 1.2, shuffle: bool = False) -> dict:
    """Tables shaped like scores/similarities/record_list/machine statements/hosp.

    AF (ICD-10 I48.91 / ICD-9 427.31 -> phecode 427.21) depends on AFIB prototypes 0 and 1;
    heart failure (I50.9 / 428.0 -> phecode 428) on all CLBBB prototypes. ``shuffle`` permutes the
    diagnoses across admissions (no association left).
    """
    rng = np.random.default_rng(seed)
    protos, vectors = prototype_table()
    P = len(protos)
    subj = np.arange(10_000_000, 10_000_000 + n_subjects)
    sex = rng.integers(0, 2, n_subjects)
    anchor_age = rng.integers(20, 92, n_subjects)
    anchor_year = rng.integers(2110, 2180, n_subjects)
    patients = pd.DataFrame({"subject_id": subj, "gender": np.where(sex == 1, "M", "F"),
                             "anchor_age": anchor_age, "anchor_year": anchor_year})
    adm_rows, ecg_rows, dx_rows = [], [], []
    hadm, study = 20_000_000, 40_000_000
    sims = []
    for i, s in enumerate(subj):
        t0 = pd.Timestamp(f"{anchor_year[i]}-03-01") + pd.Timedelta(hours=int(rng.integers(0, 2000)))
        for a in range(int(rng.integers(1, 3))):
            admit = t0 + pd.Timedelta(days=60 * a)
            ed = admit - pd.Timedelta(hours=float(rng.uniform(1, 6)))
            disch = admit + pd.Timedelta(days=float(rng.uniform(1, 8)))
            hadm += 1
            adm_rows.append((s, hadm, admit, disch, ed))
            latent = rng.normal(size=P)
            for e in range(int(rng.integers(1, 3))):
                study += 1
                when = ed + pd.Timedelta(minutes=float(rng.uniform(10, 120))) + pd.Timedelta(hours=24 * e)
                ecg_rows.append((s, study, when, hadm))
                sims.append(latent + 0.3 * rng.normal(size=P))
    admissions = pd.DataFrame(adm_rows, columns=["subject_id", "hadm_id", "admittime", "dischtime", "edregtime"])
    ecgs = pd.DataFrame(ecg_rows, columns=["subject_id", "study_id", "ecg_time", "hadm_id"])
    S = np.array(sims, dtype=np.float32)
    first = ecgs.groupby("hadm_id").head(1).index.to_numpy()
    age = (anchor_age[np.searchsorted(subj, admissions.subject_id)] - 60) / 10
    af_lin = -2.5 + effect * (S[first, 0] + S[first, 1]) / 2 + 0.3 * age
    hf_lin = -2.0 + 2 * effect * S[first, 9:12].mean(1)
    af = rng.random(len(first)) < 1 / (1 + np.exp(-af_lin))
    hf = rng.random(len(first)) < 1 / (1 + np.exp(-hf_lin))
    htn = rng.random(len(first)) < 0.4  # unrelated
    if shuffle:
        af, hf = rng.permutation(af), rng.permutation(hf)
    icd10 = rng.random(len(first)) < 0.5
    for j, h in enumerate(admissions.hadm_id):
        s = admissions.subject_id.iloc[j]
        codes = [("E119", 10) if icd10[j] else ("25000", 9)]
        if af[j]:
            codes.append(("I4891", 10) if icd10[j] else ("42731", 9))
        if hf[j]:
            codes.append(("I509", 10) if icd10[j] else ("4280", 9))
        if htn[j]:
            codes.append(("I10", 10) if icd10[j] else ("4019", 9))
        codes.append(("Z66", 10) if icd10[j] else ("V1582", 9))  # unmapped supplementary code
        dx_rows += [(s, h, n + 1, c, v) for n, (c, v) in enumerate(codes)]
    diagnoses = pd.DataFrame(dx_rows, columns=["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"])
    rid = ecgs.study_id.astype(str)
    sim_df = pd.DataFrame(S, columns=[f"sim__{j:04d}" for j in range(P)]).assign(record_id=rid.to_numpy())
    probs = {f"prob__{c}": 1 / (1 + np.exp(-S[:, protos.class_code.eq(c).to_numpy()].mean(1)))
             for c in ["AFIB", "SR", "SBRAD", "CLBBB", "IMI", "NORM"]}
    scores = pd.DataFrame({"record_id": rid, "subject_id": ecgs.subject_id, "study_id": ecgs.study_id,
                           "status": "ok", **probs})
    stmts = [["Atrial fibrillation"] if S[k, 0] > 0.5 else ["Sinus rhythm", "Possible left atrial enlargement"]
             for k in range(len(S))]
    statements = pd.DataFrame({"subject_id": ecgs.subject_id, "study_id": ecgs.study_id, "ecg_time": ecgs.ecg_time,
                               "statements": stmts})
    return {"scores": scores, "similarities": sim_df, "ecg_times": ecgs[["subject_id", "study_id", "ecg_time"]],
            "statements": statements, "patients": patients, "admissions": admissions, "diagnoses": diagnoses,
            "prototypes": protos, "vectors": vectors}
