"""MIMIC-IV-ECG and hosp readers: the real demo diagnoses table and small hand-made CSVs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgproto.data.mimic import (
    load_admissions,
    load_diagnoses,
    load_hosp,
    load_machine_statements,
    load_record_list,
)


def test_real_demo_diagnoses(mimic_demo_diagnoses: Path) -> None:
    frame = load_diagnoses(mimic_demo_diagnoses)
    raw = pd.read_csv(mimic_demo_diagnoses, dtype=str)
    assert len(frame) == len(raw) == 4506
    assert frame["subject_id"].nunique() == 100 and frame["hadm_id"].nunique() == 275
    assert frame["icd_code"].map(type).eq(str).all()
    assert list(frame["icd_code"]) == list(raw["icd_code"].str.strip())  # "V707", "4139" unchanged
    assert set(frame["icd_version"]) == {9, 10} and frame["icd_version"].dtype == np.int64
    assert frame.loc[0, "icd_code"] == "4139" and frame.loc[1, "icd_code"] == "V707"


def _hosp(tmp_path: Path, diagnoses: Path, gz: bool = False) -> Path:
    hosp = tmp_path / "hosp"
    hosp.mkdir()
    pd.DataFrame({
        "subject_id": [10035185, 10039708], "gender": ["M", "F"], "anchor_age": [70, 45],
        "anchor_year": [2150, 2160], "anchor_year_group": ["2008 - 2010", "2011 - 2013"], "dod": ["", "2162-01-03"],
    }).to_csv(hosp / "patients.csv", index=False)
    pd.DataFrame({
        "subject_id": [10035185, 10039708], "hadm_id": [22580999, 20000001],
        "admittime": ["2150-03-01 10:00:00", "2160-05-02 08:30:00"], "dischtime": ["2150-03-05 12:00:00", "2160-05-09 15:00:00"],
        "deathtime": ["", ""], "edregtime": ["2150-03-01 07:12:00", ""],
    }).to_csv(hosp / "admissions.csv", index=False)
    if gz:
        with open(diagnoses, "rb") as src, gzip.open(hosp / "diagnoses_icd.csv.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copy(diagnoses, hosp / "diagnoses_icd.csv")
    return hosp


@pytest.mark.parametrize("gz", [False, True])
def test_load_hosp(mimic_demo_diagnoses: Path, tmp_path: Path, gz: bool) -> None:
    tables = load_hosp(_hosp(tmp_path, mimic_demo_diagnoses, gz))
    assert len(tables.diagnoses) == 4506 and tables.diagnoses["icd_code"].map(type).eq(str).all()
    adm = tables.admissions
    assert adm["admittime"].dtype.kind == "M" and adm["edregtime"].dtype.kind == "M"
    assert adm.loc[0, "dischtime"] == pd.Timestamp("2150-03-05 12:00:00") and pd.isna(adm.loc[1, "edregtime"])
    assert tables.patients["dod"].dtype.kind == "M" and tables.patients.loc[1, "gender"] == "F"


def test_icd_leading_zeros_kept(tmp_path: Path) -> None:
    path = tmp_path / "diagnoses_icd.csv"
    path.write_text("subject_id,hadm_id,seq_num,icd_code,icd_version\n1,2,1,0389,9\n1,2,2,E8497,9\n1,2,3,I480,10\n")
    assert list(load_diagnoses(path)["icd_code"]) == ["0389", "E8497", "I480"]


def test_hosp_errors_name_file_and_columns(mimic_demo_diagnoses: Path, tmp_path: Path) -> None:
    hosp = _hosp(tmp_path, mimic_demo_diagnoses)
    pd.read_csv(hosp / "admissions.csv").drop(columns=["dischtime"]).to_csv(hosp / "admissions.csv", index=False)
    with pytest.raises(ValueError, match=r"admissions.csv: missing required column\(s\) dischtime"):
        load_hosp(hosp)
    (hosp / "patients.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"patients.csv \(or .csv.gz\) not found"):
        load_hosp(hosp)
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,hadm_id,admittime,dischtime\n1,2,not-a-date,2150-01-01\n")
    with pytest.raises(ValueError, match="admittime: cannot parse 'not-a-date'"):
        load_admissions(bad)
    bad.write_text("subject_id,hadm_id,icd_code,icd_version\nx1,2,I10,10\n")
    with pytest.raises(ValueError, match="subject_id must hold integer ids; row 2"):
        load_diagnoses(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hosp(tmp_path / "nowhere")


@pytest.fixture()
def mimic_ecg(tmp_path: Path) -> Path:
    root = tmp_path / "mimic-iv-ecg"
    root.mkdir()
    pd.DataFrame({
        "subject_id": [10000032, 10000032, 10000117],
        "study_id": [40689238, 44458630, 45090959],
        "file_name": ["40689238", "44458630", "45090959"],
        "ecg_time": ["2180-07-23 08:44:00", "2180-07-23 09:54:00", "2181-03-04 17:14:00"],
        "path": ["files/p1000/p10000032/s40689238/40689238", "files/p1000/p10000032/s44458630/44458630",
                 "files/p1000/p10000117/s45090959/45090959"],
    }).to_csv(root / "record_list.csv", index=False)
    reports = {f"report_{i}": [None, None, None] for i in range(18)}
    reports["report_0"] = ["Sinus rhythm", "  Atrial fibrillation ", None]
    reports["report_1"] = ["Possible right atrial abnormality", "", None]
    reports["report_4"] = ["Borderline ECG", None, None]
    reports["report_17"] = [None, "Abnormal ECG", None]
    pd.DataFrame({
        "subject_id": [10000032, 10000032, 10000117], "study_id": [40689238, 44458630, 45090959],
        "cart_id": [6848296, 6848296, 6848296],
        "ecg_time": ["2180-07-23 08:44:00", "2180-07-23 09:54:00", "2181-03-04 17:14:00"], **reports,
        "rr_interval": [659, 722, 600],
    }).to_csv(root / "machine_measurements.csv", index=False)
    return root


def test_record_list(mimic_ecg: Path) -> None:
    frame = load_record_list(mimic_ecg)
    assert list(frame.columns) == ["subject_id", "study_id", "ecg_time", "path"]
    assert frame["ecg_time"].dtype.kind == "M" and frame.loc[0, "ecg_time"] == pd.Timestamp("2180-07-23 08:44")
    assert frame.loc[0, "path"] == str(mimic_ecg.resolve() / "files/p1000/p10000032/s40689238/40689238")
    assert frame["subject_id"].dtype == np.int64


def test_machine_statements(mimic_ecg: Path) -> None:
    frame = load_machine_statements(mimic_ecg)
    assert list(frame.columns) == ["subject_id", "study_id", "ecg_time", "statements"]
    assert frame.loc[0, "statements"] == ["Sinus rhythm", "Possible right atrial abnormality", "Borderline ECG"]
    assert frame.loc[1, "statements"] == ["Atrial fibrillation", "Abnormal ECG"]
    assert frame.loc[2, "statements"] == []


def test_mimic_ecg_errors(mimic_ecg: Path) -> None:
    pd.read_csv(mimic_ecg / "record_list.csv").drop(columns=["path"]).to_csv(mimic_ecg / "record_list.csv", index=False)
    with pytest.raises(ValueError, match=r"record_list.csv: missing required column\(s\) path"):
        load_record_list(mimic_ecg)
    frame = pd.read_csv(mimic_ecg / "machine_measurements.csv")
    frame.drop(columns=[c for c in frame.columns if c.startswith("report_")]).to_csv(
        mimic_ecg / "machine_measurements.csv", index=False)
    with pytest.raises(ValueError, match="no report_0"):
        load_machine_statements(mimic_ecg)
