"""MIMIC-IV-ECG and MIMIC-IV ``hosp/`` table readers.

MIMIC-IV-ECG (``root/``): ``record_list.csv`` (subject_id, study_id, ecg_time, path relative to
``root``; WFDB records at 500 Hz, 10 s, leads I, II, III, aVR, aVF, aVL, V1–V6 — read them with
:func:`ecgproto.data.wfdb_io.read_record`, which maps leads by name) and
``machine_measurements.csv`` (``report_0`` … ``report_17``: free-text machine statements).

MIMIC-IV hosp (``hosp_dir/``): ``patients.csv``, ``admissions.csv``, ``diagnoses_icd.csv``.
Every table may also be gzip-compressed (``name.csv.gz``, as PhysioNet ships the full hosp module).
Required columns are checked (the error names the file and the missing columns); date-time
columns are parsed; ICD codes are kept as strings exactly as stored (undotted, leading zeros kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ecgproto.errors import InputNotFoundError, UserError

N_REPORTS = 18
RECORD_LIST_COLUMNS = ("subject_id", "study_id", "ecg_time", "path")
MEASUREMENT_COLUMNS = ("subject_id", "study_id", "ecg_time")
PATIENT_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year")
ADMISSION_COLUMNS = ("subject_id", "hadm_id", "admittime", "dischtime")
DIAGNOSIS_COLUMNS = ("subject_id", "hadm_id", "icd_code", "icd_version")
ADMISSION_TIMES = ("admittime", "dischtime", "deathtime", "edregtime", "edouttime")


@dataclass(frozen=True)
class HospTables:
    """The three MIMIC-IV hosp tables used for phenotype cohorts."""

    patients: pd.DataFrame  # subject_id, gender, anchor_age, anchor_year, [anchor_year_group, dod], ...
    admissions: pd.DataFrame  # subject_id, hadm_id, admittime, dischtime (datetime64), [deathtime, edregtime, ...]
    diagnoses: pd.DataFrame  # subject_id, hadm_id, [seq_num], icd_code (str), icd_version (int)


def find_table(folder: str | Path, name: str) -> Path:
    """``folder/name.csv`` or ``folder/name.csv.gz``; FileNotFoundError naming both otherwise."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFoundError(f"folder {folder} does not exist (expected {name}.csv inside)")
    for candidate in (folder / f"{name}.csv", folder / f"{name}.csv.gz"):
        if candidate.is_file():
            return candidate
    raise InputNotFoundError(f"{folder / (name + '.csv')} (or .csv.gz) not found")


def read_table(path: str | Path, required: tuple[str, ...], dtype: dict[str, object] | None = None) -> pd.DataFrame:
    """Read a CSV and check its required columns (ValueError naming the file and the missing columns)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)} "
                         f"(found: {', '.join(map(str, frame.columns))})")
    return frame


def _ids(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().argmax())
            raise UserError(f"{path}: column {col} must hold integer ids; row {row + 2} has {frame[col].iloc[row]!r}")
        frame[col] = values.astype("int64")


def _times(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    for col in columns:
        if col not in frame.columns:
            continue
        parsed = pd.to_datetime(frame[col], errors="coerce")
        bad = parsed.isna() & frame[col].notna() & (frame[col].astype(str).str.strip() != "")
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise UserError(f"{path}: column {col}: cannot parse {frame[col].iloc[row]!r} (row {row + 2}) as a date-time")
        frame[col] = parsed.astype("datetime64[ns]")


def load_record_list(root: str | Path) -> pd.DataFrame:
    """``root/record_list.csv`` → DataFrame(subject_id, study_id, ecg_time datetime64, path).

    ``path`` is the absolute record path without extension (``root/files/p1000/p10000032/s4…/4…``).
    """
    root = Path(root).expanduser().resolve()
    path = find_table(root, "record_list")
    frame = read_table(path, RECORD_LIST_COLUMNS, dtype={"path": str})
    _ids(frame, ("subject_id", "study_id"), path)
    _times(frame, ("ecg_time",), path)
    if frame["path"].isna().any():
        row = int(frame["path"].isna().to_numpy().argmax())
        raise UserError(f"{path}: empty path in row {row + 2}")
    stems = frame["path"].str.strip().str.replace(r"\.(hea|dat)$", "", regex=True)
    frame["path"] = [str(root / s) for s in stems]
    return frame[list(RECORD_LIST_COLUMNS)].reset_index(drop=True)


def load_machine_statements(root: str | Path) -> pd.DataFrame:
    """``root/machine_measurements.csv`` → DataFrame(subject_id, study_id, ecg_time, statements).

    ``statements`` is the list of non-empty, whitespace-stripped ``report_0`` … ``report_17`` texts
    in column order (columns absent from the file are treated as empty).
    """
    root = Path(root).expanduser()
    path = find_table(root, "machine_measurements")
    report_cols = [f"report_{i}" for i in range(N_REPORTS)]
    frame = read_table(path, MEASUREMENT_COLUMNS, dtype={c: str for c in report_cols})
    present = [c for c in report_cols if c in frame.columns]
    if not present:
        raise UserError(f"{path}: no report_0 … report_17 columns; expected MIMIC-IV-ECG machine_measurements.csv")
    _ids(frame, ("subject_id", "study_id"), path)
    _times(frame, ("ecg_time",), path)
    texts = frame[present].fillna("").apply(lambda col: col.str.strip()).to_numpy()
    out = frame[list(MEASUREMENT_COLUMNS)].copy()
    out["statements"] = [[t for t in row if t] for row in texts]
    return out.reset_index(drop=True)


def load_patients(path: str | Path) -> pd.DataFrame:
    """MIMIC-IV ``patients.csv``: subject_id, gender, anchor_age, anchor_year (+ dod parsed when present)."""
    path = Path(path)
    frame = read_table(path, PATIENT_COLUMNS, dtype={"gender": str})
    _ids(frame, ("subject_id",), path)
    for col in ("anchor_age", "anchor_year"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    _times(frame, ("dod",), path)
    return frame


def load_admissions(path: str | Path) -> pd.DataFrame:
    """MIMIC-IV ``admissions.csv``: subject_id, hadm_id, admittime, dischtime (+ deathtime, edregtime, edouttime)."""
    path = Path(path)
    frame = read_table(path, ADMISSION_COLUMNS)
    _ids(frame, ("subject_id", "hadm_id"), path)
    _times(frame, ADMISSION_TIMES, path)
    return frame


def load_diagnoses(path: str | Path) -> pd.DataFrame:
    """MIMIC-IV ``diagnoses_icd.csv``: subject_id, hadm_id, icd_code (str, as stored), icd_version (int)."""
    path = Path(path)
    frame = read_table(path, DIAGNOSIS_COLUMNS, dtype={"icd_code": str})
    _ids(frame, ("subject_id", "hadm_id"), path)
    if frame["icd_code"].isna().any():
        row = int(frame["icd_code"].isna().to_numpy().argmax())
        raise UserError(f"{path}: empty icd_code in row {row + 2}")
    frame["icd_code"] = frame["icd_code"].str.strip()
    version = pd.to_numeric(frame["icd_version"], errors="coerce")
    if version.isna().any():
        row = int(version.isna().to_numpy().argmax())
        raise UserError(f"{path}: icd_version {frame['icd_version'].iloc[row]!r} in row {row + 2} is not a number")
    frame["icd_version"] = version.astype("int64")
    if "seq_num" in frame.columns:
        frame["seq_num"] = pd.to_numeric(frame["seq_num"], errors="coerce").astype("Int64")
    return frame


def load_hosp(hosp_dir: str | Path) -> HospTables:
    """Read ``patients``, ``admissions`` and ``diagnoses_icd`` (``.csv`` or ``.csv.gz``) from ``hosp_dir``."""
    return HospTables(
        patients=load_patients(find_table(hosp_dir, "patients")),
        admissions=load_admissions(find_table(hosp_dir, "admissions")),
        diagnoses=load_diagnoses(find_table(hosp_dir, "diagnoses_icd")),
    )
