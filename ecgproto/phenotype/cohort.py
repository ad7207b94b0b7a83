"""Cohort builder: scored MIMIC-IV ECGs -> hospital admissions -> phecode cases/controls.

Every step counts what it drops (``Cohort.flow``), nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.phecodes import PhecodeMap, map_diagnoses
from ecgproto.errors import UserError


def require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    """Raise a ValueError naming ``source`` and the missing columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: missing column(s) {missing}; found {list(frame.columns)[:12]}")


@dataclass(frozen=True)
class Cohort:
    """Analysis units and phecode outcomes.

    ``units``: one row per unit (patient or admission) with subject_id, hadm_id, record_ids
    (';'-joined ECGs used), first_record_id, ecg_time, admittime, age, age_capped, sex (1 = male).
    ``Y`` (n, K) uint8 case indicators, ``mask`` (n, K) bool analysed units (cases and eligible
    controls), ``population`` (n, K) bool (one sex for sex-specific phecodes); ``phecodes``
    (K rows: phecode, phecode_string, category, sex, n_cases, n_controls, n_excluded) holds only
    the tested phecodes (minimum counts met). ``ecg_units``: every linked ECG with its unit index.
    """

    units: pd.DataFrame
    ecg_units: pd.DataFrame
    Y: np.ndarray
    mask: np.ndarray
    population: np.ndarray
    phecodes: pd.DataFrame
    flow: dict
    mapping_counts: dict
    unmapped_top: pd.DataFrame

    def covariates(self) -> tuple[np.ndarray, list[str]]:
        """Z (n, 3): intercept, age (years, centred, /10), sex (1 = male); and the names."""
        age = self.units["age"].to_numpy(np.float64)
        Z = np.column_stack([np.ones(len(age)), (age - age.mean()) / 10.0, self.units["sex"].to_numpy(np.float64)])
        return Z, ["intercept", "age_per_10y", "male"]


def link_ecgs(ecgs: pd.DataFrame, admissions: pd.DataFrame, cfg: PhenotypeConfig) -> pd.DataFrame:
    """Assign each ECG (record_id, subject_id, ecg_time) to at most one admission.

    Window: [coalesce(edregtime, admittime) − tolerance − lookback, dischtime]. If several
    windows hold the ECG, the admission whose [admittime, dischtime] contains it wins, else the
    next admission. Returns ``ecgs`` with ``hadm_id`` (NaN when unlinked) and ``admittime``.
    """
    adm = admissions[["subject_id", "hadm_id", "admittime", "dischtime", "edregtime"]].copy()
    start = adm["edregtime"].where(adm["edregtime"].notna() & (adm["edregtime"] < adm["admittime"]), adm["admittime"])
    adm["win_start"] = start - pd.Timedelta(hours=cfg.tolerance_hours) - pd.Timedelta(days=cfg.lookback_days)
    cand = ecgs[["record_id", "subject_id", "ecg_time"]].merge(adm, on="subject_id", how="inner")
    cand = cand[(cand["ecg_time"] >= cand["win_start"]) & (cand["ecg_time"] <= cand["dischtime"])]
    cand = cand.assign(contained=(cand["ecg_time"] >= cand["admittime"]).astype(int))
    cand = cand.sort_values(["record_id", "contained", "admittime"], ascending=[True, False, True], kind="mergesort")
    best = cand.drop_duplicates("record_id")[["record_id", "hadm_id", "admittime"]]
    return ecgs.merge(best, on="record_id", how="left")


def _parse_times(frame: pd.DataFrame, cols: list[str], source: str) -> pd.DataFrame:
    frame = frame.copy()
    for c in cols:
        try:
            frame[c] = pd.to_datetime(frame[c])
        except (ValueError, TypeError) as exc:
            raise UserError(f"{source}: column {c!r} has unparseable timestamps ({exc})") from exc
    return frame


def build_cohort(ecgs: pd.DataFrame, patients: pd.DataFrame, admissions: pd.DataFrame, diagnoses: pd.DataFrame,
                 pmap: PhecodeMap, cfg: PhenotypeConfig) -> Cohort:
    """Build the analysis cohort.

    ``ecgs``: scored records with record_id, subject_id, ecg_time and status ("ok" kept);
    ``patients`` (subject_id, gender, anchor_age, anchor_year), ``admissions`` (subject_id,
    hadm_id, admittime, dischtime, optional edregtime), ``diagnoses`` (subject_id, hadm_id,
    icd_code, icd_version). Unit = first eligible admission per patient (``cfg.unit ==
    "patient"``) or every admission (``"admission"``). Controls exclude patients carrying a
    phecode of the target's exclusion range (``cfg.use_exclusions``); sex-specific phecodes use
    one sex; phecodes with fewer than ``cfg.min_cases`` / ``cfg.min_controls`` are not tested.
    """
    require_columns(ecgs, ["record_id", "subject_id", "ecg_time", "status"], "scores + record_list")
    require_columns(patients, ["subject_id", "gender", "anchor_age", "anchor_year"], "hosp/patients")
    require_columns(admissions, ["subject_id", "hadm_id", "admittime", "dischtime"], "hosp/admissions")
    if "edregtime" not in admissions.columns:
        admissions = admissions.assign(edregtime=pd.NaT)
    admissions = _parse_times(admissions, ["admittime", "dischtime", "edregtime"], "hosp/admissions")
    ecgs = _parse_times(ecgs, ["ecg_time"], "MIMIC-IV-ECG record_list")
    flow: dict = {"ecgs_scored": int(len(ecgs))}
    ok = ecgs["status"].astype(str).eq("ok")
    flow["ecgs_status_not_ok"] = int((~ok).sum())
    ecgs = ecgs[ok]
    no_time = ecgs["ecg_time"].isna()
    flow["ecgs_without_ecg_time"] = int(no_time.sum())
    ecgs = ecgs[~no_time]
    known_subject = ecgs["subject_id"].isin(admissions["subject_id"])
    flow["ecgs_subject_without_admissions"] = int((~known_subject).sum())
    linked = link_ecgs(ecgs[known_subject], admissions, cfg)
    flow["ecgs_outside_admission_windows"] = int(linked["hadm_id"].isna().sum())
    linked = linked[linked["hadm_id"].notna()].copy()
    linked["hadm_id"] = linked["hadm_id"].astype(np.int64)
    flow["ecgs_linked"] = int(len(linked))
    flow["admissions_with_ecg"] = int(linked["hadm_id"].nunique())

    mapped = map_diagnoses(diagnoses, pmap, source="hosp/diagnoses_icd")
    coded = set(diagnoses["hadm_id"].unique())
    has_dx = linked["hadm_id"].isin(coded)
    flow["admissions_without_diagnoses"] = int(linked.loc[~has_dx, "hadm_id"].nunique())
    linked = linked[has_dx]

    pats = patients.drop_duplicates("subject_id").set_index("subject_id")
    in_patients = linked["subject_id"].isin(pats.index)
    flow["admissions_subject_not_in_patients"] = int(linked.loc[~in_patients, "hadm_id"].nunique())
    linked = linked[in_patients]
    sex = pats["gender"].reindex(linked["subject_id"]).astype(str).str.upper().str[0].to_numpy()
    bad_sex = ~np.isin(sex, ["M", "F"])
    flow["admissions_unknown_sex"] = int(linked.loc[bad_sex, "hadm_id"].nunique())
    linked = linked[~bad_sex].sort_values(["admittime", "ecg_time", "record_id"], kind="mergesort")
    linked["unit_key"] = linked["subject_id"] if cfg.unit == "patient" else linked["hadm_id"]
    if cfg.unit == "patient":  # first eligible admission per patient
        first_adm = linked.drop_duplicates("subject_id")[["subject_id", "hadm_id"]]
        keep = linked.merge(first_adm, on=["subject_id", "hadm_id"], how="left", indicator=True)["_merge"].eq("both")
        flow["admissions_not_first_of_patient"] = int(linked.loc[~keep.to_numpy(), "hadm_id"].nunique())
        linked = linked[keep.to_numpy()]
    first = linked.drop_duplicates("hadm_id")
    flow["ecgs_not_first_in_admission"] = int(len(linked) - len(first))
    units = first[["subject_id", "hadm_id", "record_id", "ecg_time", "admittime"]].rename(
        columns={"record_id": "first_record_id"}).reset_index(drop=True)
    p = pats.reindex(units["subject_id"])
    units["age"] = (p["anchor_age"].to_numpy(np.float64)
                    + units["admittime"].dt.year.to_numpy() - p["anchor_year"].to_numpy(np.float64))
    units["age_capped"] = p["anchor_age"].to_numpy(np.float64) > 89  # MIMIC records ages above 89 as 91
    units["sex"] = (p["gender"].astype(str).str.upper().str[0].to_numpy() == "M").astype(np.int8)
    units["n_ecgs_in_window"] = linked.groupby("hadm_id").size().reindex(units["hadm_id"]).to_numpy()
    flow["units"] = int(len(units))
    ecg_units = linked[["record_id", "subject_id", "hadm_id", "ecg_time"]].merge(
        units[["hadm_id"]].reset_index().rename(columns={"index": "unit"}), on="hadm_id")
    Y, mask, pop, table = _outcomes(units, mapped.pairs, pmap, cfg, flow)
    return Cohort(units=units, ecg_units=ecg_units, Y=Y, mask=mask, population=pop, phecodes=table, flow=flow,
                  mapping_counts=mapped.counts, unmapped_top=mapped.unmapped_top)


def _outcomes(units: pd.DataFrame, pairs: pd.DataFrame, pmap: PhecodeMap, cfg: PhenotypeConfig,
              flow: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Case matrix, analysed-unit mask and per-phecode counts, restricted to testable phecodes."""
    pairs = pairs[pairs["hadm_id"].isin(units["hadm_id"])]
    flow["units_without_mapped_phecode"] = int((~units["hadm_id"].isin(pairs["hadm_id"])).sum())
    observed = np.array(sorted(pairs["phecode"].unique()), dtype=object)
    row = pd.Index(units["hadm_id"]).get_indexer(pairs["hadm_id"])
    col = pd.Index(observed).get_indexer(pairs["phecode"])
    P = np.zeros((len(units), len(observed)), dtype=bool)
    P[row, col] = True
    defs = pmap.definitions.reindex(observed)
    male = units["sex"].to_numpy() == 1
    sexes = defs["sex"].fillna("Both").to_numpy()
    pop = np.ones_like(P)
    pop[:, sexes == "Male"] = male[:, None]
    pop[:, sexes == "Female"] = ~male[:, None]
    excluded = np.zeros_like(P)
    if cfg.use_exclusions and "exclude_range" in defs.columns:
        index = pd.Index(observed)
        Ex = np.zeros((len(observed), len(observed)), dtype=np.float32)
        for k, code in enumerate(observed):
            if code in pmap.definitions.index:
                cols = index.get_indexer(pmap.exclusions(code))
                Ex[k, cols[cols >= 0]] = 1.0
        excluded = ((P.astype(np.float32) @ Ex.T) > 0) & ~P
    cases = P & pop
    mask = pop & ~excluded
    n_cases, n_controls = cases.sum(0), (mask & ~P).sum(0)
    table = pd.DataFrame({
        "phecode": observed, "phecode_string": defs["phecode_string"].to_numpy(),
        "category": defs["category"].to_numpy(), "sex": sexes, "n_cases": n_cases,
        "n_controls": n_controls, "n_excluded": (excluded & pop).sum(0),
    })
    testable = (n_cases >= cfg.min_cases) & (n_controls >= cfg.min_controls)
    flow["phecodes_observed"] = int(len(observed))
    flow["phecodes_below_min_counts"] = int((~testable).sum())
    flow["phecodes_tested"] = int(testable.sum())
    return (cases[:, testable].astype(np.uint8), mask[:, testable], pop[:, testable],
            table[testable].reset_index(drop=True))
