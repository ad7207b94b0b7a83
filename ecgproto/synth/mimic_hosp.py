"""Synthetic MIMIC-IV ``hosp`` tables (patients, admissions, diagnoses_icd) with planted
ECG-finding -> diagnosis associations.

Each subject carries chronic ECG findings (drawn by ``labels_sampler`` for the subject's
first ECG). An admission's discharge diagnoses are drawn per phenotype with
``logit p = logit(base_rate) + sum(log(odds_ratio) * exposure) + age effect``; the planted
associations are ``ASSOCIATIONS`` (AF -> I48.x / 427.31, LBBB and low QRS voltage -> heart
failure I50.x / 428.x, IMI/ASMI -> old MI I25.2 / 412, LVH -> hypertension I10 / 401.9).
``BACKGROUND`` phenotypes (sepsis, acute kidney failure, diabetes, ...) do not depend on
the ECG (null controls) but do depend on age, as in real data. Codes are stored undotted;
admissions whose de-shifted year is before October 2015 use ICD-9, later ones ICD-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Phenotype:
    """A diagnosis group: ICD-9 / ICD-10 codes (undotted), base rate per admission at age 60,
    log-odds change per year of age, and planted odds ratios per ECG exposure."""

    name: str
    icd9: tuple[str, ...]
    icd10: tuple[str, ...]
    base_rate: float
    age_logodds_per_year: float
    odds_ratios: tuple[tuple[str, float], ...] = ()


# ECG exposures: name -> SCP statements (any present on the subject's ECGs = exposed)
EXPOSURES: dict[str, tuple[str, ...]] = {
    "af": ("AFIB", "AFLT"),
    "lbbb": ("CLBBB",),
    "low_voltage": ("LVOLT",),
    "old_mi": ("IMI", "ASMI"),
    "lvh": ("LVH",),
}
ASSOCIATIONS: tuple[Phenotype, ...] = (
    Phenotype("atrial fibrillation/flutter", ("42731", "42732"), ("I480", "I481", "I4891", "I4892", "I482"),
              0.07, 0.04, (("af", 30.0),)),
    Phenotype("heart failure", ("4280", "42822", "42832", "42833"), ("I5022", "I5032", "I509", "I5023", "I5042"),
              0.10, 0.03, (("lbbb", 5.0), ("low_voltage", 4.0))),
    Phenotype("old myocardial infarction", ("412",), ("I252",), 0.05, 0.02, (("old_mi", 10.0),)),
    Phenotype("hypertension", ("4019",), ("I10",), 0.35, 0.03, (("lvh", 3.0),)),
)
BACKGROUND: tuple[Phenotype, ...] = (
    Phenotype("sepsis", ("0389",), ("A419",), 0.08, 0.02),
    Phenotype("acute kidney failure", ("5849",), ("N179",), 0.12, 0.02),
    Phenotype("type 2 diabetes", ("25000",), ("E119",), 0.20, 0.01),
    Phenotype("hyperlipidemia", ("2724",), ("E785",), 0.30, 0.02),
    Phenotype("chronic kidney disease", ("5853", "5859"), ("N183", "N189"), 0.10, 0.03),
    Phenotype("copd", ("496",), ("J449",), 0.08, 0.02),
    Phenotype("anemia", ("2859",), ("D649",), 0.15, 0.01),
    Phenotype("urinary tract infection", ("5990",), ("N390",), 0.10, 0.01),
    Phenotype("gerd", ("53081",), ("K219",), 0.15, 0.0),
    Phenotype("depression", ("311",), ("F329",), 0.10, -0.01),
    Phenotype("tobacco use history", ("V1582",), ("Z87891",), 0.15, 0.0),
    Phenotype("obesity", ("27800",), ("E669",), 0.08, -0.01),
)
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
ED_TYPES = ("EW EMER.", "EU OBSERVATION", "OBSERVATION ADMIT", "URGENT")
OTHER_TYPES = ("ELECTIVE", "SURGICAL SAME DAY ADMISSION", "DIRECT EMER.")


def _minutes(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype("datetime64[m]").astype("datetime64[s]")


def _fmt(x: np.ndarray) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS' strings; NaT -> ''."""
    s = pd.Series(pd.to_datetime(x))
    return [v.strftime("%Y-%m-%d %H:%M:%S") if not pd.isna(v) else "" for v in s]


def draw_subjects(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Subjects (subject_id, gender, anchor_age, anchor_year, anchor_year_group, group_start)."""
    ids = 10_000_000 + np.sort(rng.choice(9_000_000, size=n, replace=False))
    age = np.clip(np.round(rng.normal(62.0, 17.0, n)), 18, 95).astype(int)
    group = rng.integers(0, len(YEAR_GROUPS), n)
    return pd.DataFrame({
        "subject_id": ids,
        "gender": np.where(rng.random(n) < 0.52, "M", "F"),
        "anchor_age": np.where(age > 89, 91, age),
        "true_age": age,
        "anchor_year": rng.integers(2110, 2190, n),
        "anchor_year_group": np.array(YEAR_GROUPS)[group],
        "group_start": 2008 + 3 * group,
    })


def draw_admissions(rng: np.random.Generator, subjects: pd.DataFrame) -> pd.DataFrame:
    """1-5 admissions per subject (mean 1.7) with ED times for emergency admissions (datetime64 columns)."""
    counts = 1 + np.minimum(rng.poisson(0.7, len(subjects)), 4)
    sub = np.repeat(np.arange(len(subjects)), counts)
    m = len(sub)
    first = np.r_[True, sub[1:] != sub[:-1]]
    start = np.array(subjects["anchor_year"].astype(str).to_numpy()[sub], dtype="datetime64[D]").astype("datetime64[s]")
    start = start + (rng.random(m) * 2.5 * 365 * 86400).astype("timedelta64[s]")
    los = np.maximum(rng.lognormal(np.log(4 * 24), 0.7, m), 6.0) * 3600  # seconds
    gap = rng.exponential(200.0, m) * 86400 + 86400
    admit = np.empty(m, dtype="datetime64[s]")
    disch = np.empty(m, dtype="datetime64[s]")
    for i in range(m):  # sequential per subject (a few hundred rows)
        admit[i] = start[i] if first[i] else disch[i - 1] + np.timedelta64(int(gap[i]), "s")
        disch[i] = admit[i] + np.timedelta64(int(los[i]), "s")
    admit, disch = _minutes(admit), _minutes(disch)
    ed = rng.random(m) < 0.7
    edreg = admit - (rng.uniform(1.0, 10.0, m) * 3600).astype("timedelta64[s]")
    edout = admit + (rng.uniform(-0.5, 1.0, m) * 3600).astype("timedelta64[s]")
    nat = np.datetime64("NaT", "s")
    age = subjects["true_age"].to_numpy()[sub] + (admit.astype("datetime64[Y]").astype(int) + 1970
                                                   - subjects["anchor_year"].to_numpy()[sub])
    return pd.DataFrame({
        "subject_id": subjects["subject_id"].to_numpy()[sub],
        "hadm_id": 20_000_000 + np.sort(rng.choice(9_000_000, size=m, replace=False)),
        "admittime": admit,
        "dischtime": disch,
        "edregtime": np.where(ed, _minutes(edreg), nat),
        "edouttime": np.where(ed, _minutes(edout), nat),
        "admission_type": np.where(ed, rng.choice(ED_TYPES, m, p=[0.55, 0.15, 0.15, 0.15]),
                                   rng.choice(OTHER_TYPES, m, p=[0.4, 0.3, 0.3])),
        "admission_location": np.where(ed, "EMERGENCY ROOM", rng.choice(["PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"], m)),
        "age_at_admission": age,
        "real_year": subjects["group_start"].to_numpy()[sub] + rng.integers(0, 3, m)
        + (admit.astype("datetime64[Y]").astype(int) + 1970 - subjects["anchor_year"].to_numpy()[sub]),
        "real_month": admit.astype("datetime64[M]").astype(int) % 12 + 1,
    })


def icd_version(admissions: pd.DataFrame) -> np.ndarray:
    """9 before October 2015 (de-shifted), else 10."""
    y, mth = admissions["real_year"].to_numpy(), admissions["real_month"].to_numpy()
    return np.where((y > 2015) | ((y == 2015) & (mth >= 10)), 10, 9)


def draw_diagnoses(rng: np.random.Generator, admissions: pd.DataFrame, exposure: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """diagnoses_icd rows and an (admission x phenotype) 0/1 case table.

    ``exposure``: one row per admission (same order) with a 0/1 column per EXPOSURES key.
    """
    m = len(admissions)
    version = icd_version(admissions)
    age = admissions["age_at_admission"].to_numpy(dtype=float)
    rows_h, rows_c, cases = [], [], {}
    for ph in ASSOCIATIONS + BACKGROUND:
        logit = np.log(ph.base_rate / (1 - ph.base_rate)) + ph.age_logodds_per_year * (age - 60.0)
        for exp_name, odds in ph.odds_ratios:
            logit = logit + np.log(odds) * exposure[exp_name].to_numpy()
        hit = rng.random(m) < 1.0 / (1.0 + np.exp(-logit))
        cases[ph.name] = hit.astype(int)
        pick9 = np.array(ph.icd9)[rng.integers(0, len(ph.icd9), m)]
        pick10 = np.array(ph.icd10)[rng.integers(0, len(ph.icd10), m)]
        code = np.where(version == 10, pick10, pick9)
        idx = np.flatnonzero(hit)
        rows_h.append(idx)
        rows_c.append(code[idx])
    adm_idx = np.concatenate(rows_h)
    codes = np.concatenate(rows_c)
    order = np.lexsort((rng.random(len(adm_idx)), adm_idx))
    adm_idx, codes = adm_idx[order], codes[order]
    seq = np.arange(len(adm_idx)) - np.searchsorted(adm_idx, adm_idx) + 1
    diagnoses = pd.DataFrame({
        "subject_id": admissions["subject_id"].to_numpy()[adm_idx],
        "hadm_id": admissions["hadm_id"].to_numpy()[adm_idx],
        "seq_num": seq,
        "icd_code": codes,
        "icd_version": version[adm_idx],
    })
    case_table = pd.DataFrame({"subject_id": admissions["subject_id"], "hadm_id": admissions["hadm_id"], **cases})
    return diagnoses, case_table


def finish_tables(rng: np.random.Generator, subjects: pd.DataFrame, admissions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """patients.csv and admissions.csv frames in MIMIC-IV column order (times as strings)."""
    m = len(admissions)
    died = rng.random(m) < 0.03
    last = np.r_[admissions["subject_id"].to_numpy()[1:] != admissions["subject_id"].to_numpy()[:-1], True]
    died &= last  # only a subject's last admission can end in death
    nat = np.datetime64("NaT", "s")
    deathtime = np.where(died, admissions["dischtime"].to_numpy(), nat)
    adm = pd.DataFrame({
        "subject_id": admissions["subject_id"],
        "hadm_id": admissions["hadm_id"],
        "admittime": _fmt(admissions["admittime"]),
        "dischtime": _fmt(admissions["dischtime"]),
        "deathtime": _fmt(deathtime),
        "admission_type": admissions["admission_type"],
        "admit_provider_id": [f"P{v:05X}" for v in rng.integers(0, 0xFFFFF, m)],
        "admission_location": admissions["admission_location"],
        "discharge_location": np.where(died, "DIED", rng.choice(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY"], m)),
        "insurance": rng.choice(["Medicare", "Medicaid", "Other"], m, p=[0.45, 0.15, 0.4]),
        "language": "ENGLISH",
        "marital_status": rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"], m),
        "race": rng.choice(["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER"], m,
                           p=[0.65, 0.15, 0.07, 0.05, 0.08]),
        "edregtime": _fmt(admissions["edregtime"]),
        "edouttime": _fmt(admissions["edouttime"]),
        "hospital_expire_flag": died.astype(int),
    })
    dod = pd.Series(pd.NaT, index=subjects.index, dtype="datetime64[s]")
    died_subjects = admissions.loc[died, ["subject_id", "dischtime"]]
    pos = subjects.reset_index().set_index("subject_id").loc[died_subjects["subject_id"], "index"].to_numpy()
    dod.iloc[pos] = died_subjects["dischtime"].to_numpy().astype("datetime64[D]")
    patients = pd.DataFrame({
        "subject_id": subjects["subject_id"],
        "gender": subjects["gender"],
        "anchor_age": subjects["anchor_age"],
        "anchor_year": subjects["anchor_year"],
        "anchor_year_group": subjects["anchor_year_group"],
        "dod": [v.strftime("%Y-%m-%d") if not pd.isna(v) else "" for v in dod],
    })
    return patients, adm
