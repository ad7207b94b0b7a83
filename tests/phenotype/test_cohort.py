"""Cohort builder: admission linking, flow counts, exclusions, sex-specific phecodes, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ecgproto.phenotype.cohort import build_cohort, link_ecgs
from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.phecodes import load_phecode_map

T = pd.Timestamp
CFG = PhenotypeConfig(min_cases=1, min_controls=1)


def _admissions() -> pd.DataFrame:
    return pd.DataFrame({
        "subject_id": [1, 1, 2, 3, 4],
        "hadm_id": [11, 12, 21, 31, 41],
        "admittime": [T("2180-07-23 12:35"), T("2180-09-01 10:00"), T("2150-01-01 10:00"), T("2160-05-05 08:00"),
                      T("2170-01-01 08:00")],
        "dischtime": [T("2180-07-25 17:55"), T("2180-09-05 10:00"), T("2150-01-03 10:00"), T("2160-05-09 08:00"),
                      T("2170-01-02 08:00")],
        "edregtime": [T("2180-07-23 05:54"), pd.NaT, pd.NaT, pd.NaT, pd.NaT],
    })


def test_link_uses_ed_registration_tolerance_and_lookback() -> None:
    adm = _admissions()
    ecgs = pd.DataFrame({"record_id": ["a", "b", "c", "d"], "subject_id": [1, 1, 2, 2],
                         "ecg_time": [T("2180-07-23 08:44"),  # 3 h 51 min before admittime, after ED registration
                                      T("2180-09-01 09:30"),  # 30 min before admission: within 1 h tolerance
                                      T("2149-12-30 10:00"),  # 2 days before: outside unless lookback
                                      T("2150-01-04 10:00")]})  # after discharge
    linked = link_ecgs(ecgs, adm, CFG).set_index("record_id")
    assert linked.loc["a", "hadm_id"] == 11 and linked.loc["b", "hadm_id"] == 12
    assert np.isnan(linked.loc["c", "hadm_id"]) and np.isnan(linked.loc["d", "hadm_id"])
    wide = link_ecgs(ecgs, adm, dataclasses.replace(CFG, lookback_days=7)).set_index("record_id")
    assert wide.loc["c", "hadm_id"] == 21


def test_overlapping_windows_prefer_containing_admission() -> None:
    adm = pd.DataFrame({"subject_id": [1, 1], "hadm_id": [1, 2],
                        "admittime": [T("2100-01-01 00:00"), T("2100-01-03 00:30")],
                        "dischtime": [T("2100-01-03 01:00"), T("2100-01-05 00:00")], "edregtime": [pd.NaT, pd.NaT]})
    ecgs = pd.DataFrame({"record_id": ["x", "y"], "subject_id": [1, 1],
                         "ecg_time": [T("2100-01-03 00:15"), T("2100-01-03 00:45")]})
    linked = link_ecgs(ecgs, adm, CFG).set_index("record_id")
    assert linked.loc["x", "hadm_id"] == 1  # inside admission 1, only in the pre-window of admission 2
    assert linked.loc["y", "hadm_id"] == 1  # inside both: earliest containing admission


def _cohort_inputs():
    adm = _admissions()
    patients = pd.DataFrame({"subject_id": [1, 2, 3, 4], "gender": ["F", "M", "F", "M"],
                             "anchor_age": [52, 91, 40, 70], "anchor_year": [2180, 2150, 2160, 2170]})
    diagnoses = pd.DataFrame({
        "subject_id": [1, 1, 1, 2, 2, 3, 3, 4],
        "hadm_id": [11, 11, 12, 21, 21, 31, 31, 41],
        "icd_code": ["42731", "V1582", "4280", "I509", "I4891", "N926", "I10", "4019"],
        "icd_version": [9, 9, 9, 10, 10, 10, 10, 9],
    })
    ecgs = pd.DataFrame({
        "record_id": ["e1", "e2", "e3", "e4", "e5", "e6", "e7"],
        "subject_id": [1, 1, 1, 2, 3, 9, 4],
        "ecg_time": [T("2180-07-23 08:44"), T("2180-07-23 09:00"), T("2180-09-02 09:00"), T("2150-01-01 11:00"),
                     T("2160-05-06 08:00"), T("2100-01-01"), T("2171-01-01 08:00")],
        "status": ["ok", "ok", "ok", "ok", "ok", "ok", "ok"],
    })
    ecgs.loc[len(ecgs)] = ["e8", 3, T("2160-05-06 09:00"), "nan"]
    return ecgs, patients, adm, diagnoses


def test_build_cohort_flow_first_ecg_first_admission_and_covariates() -> None:
    ecgs, patients, adm, dx = _cohort_inputs()
    c = build_cohort(ecgs, patients, adm, dx, load_phecode_map(), CFG)
    f = c.flow
    assert f["ecgs_scored"] == 8 and f["ecgs_status_not_ok"] == 1
    assert f["ecgs_subject_without_admissions"] == 1  # subject 9
    assert f["ecgs_outside_admission_windows"] == 1  # subject 4, one year late
    assert f["ecgs_linked"] == 5 and f["admissions_not_first_of_patient"] == 1
    assert f["ecgs_not_first_in_admission"] == 1 and f["units"] == 3
    assert f["admissions_subject_not_in_patients"] == 0
    c2 = build_cohort(ecgs, patients[patients.subject_id != 3], adm, dx, load_phecode_map(), CFG)
    assert c2.flow["admissions_subject_not_in_patients"] == 1 and c2.flow["units"] == 2
    u = c.units.set_index("subject_id")
    assert u.loc[1, "first_record_id"] == "e1" and u.loc[1, "hadm_id"] == 11
    assert u.loc[2, "age"] == 91 and bool(u.loc[2, "age_capped"]) and u.loc[2, "sex"] == 1
    by_unit = c.ecg_units.groupby("unit").size()
    assert by_unit.sum() == 4  # e1, e2 (same admission), e4, e5
    codes = list(c.phecodes["phecode"])
    assert "427.21" in codes and "428" in codes


def test_exclusions_and_sex_specific_phecodes() -> None:
    ecgs, patients, adm, dx = _cohort_inputs()
    pmap = load_phecode_map()
    c = build_cohort(ecgs, patients, adm, dx, pmap, CFG)
    codes = list(c.phecodes["phecode"])
    # 427.21 (AF) cases: subjects 1 and 2; subject 3 has 401.1 (hypertension) only -> control
    k = codes.index("427.21")
    sid = c.units["subject_id"].to_numpy()
    assert set(sid[c.Y[:, k] == 1]) == {1, 2}
    # female-only phecode from N92.6 (irregular menstruation): tested in women only
    fem = c.phecodes.index[c.phecodes["sex"] == "Female"]
    assert len(fem) > 0
    for kk in fem:
        assert not c.population[c.units["sex"].to_numpy() == 1, kk].any()
    # exclusion: subject 3 has SVT (I47.1 -> 427.1, 427), in the exclusion range of 427.21
    ecgs.loc[ecgs["record_id"] == "e7", "ecg_time"] = T("2170-01-01 09:00")  # subject 4 (401.1) links: a control
    dx3 = pd.concat([dx, pd.DataFrame({"subject_id": [3], "hadm_id": [31], "icd_code": ["I471"], "icd_version": [10]})])
    c3 = build_cohort(ecgs, patients, adm, dx3, pmap, CFG)
    k3 = list(c3.phecodes["phecode"]).index("427.21")
    row3 = int(np.flatnonzero(c3.units["subject_id"].to_numpy() == 3)[0])
    assert "427.1" in pmap.exclusions("427.21")
    assert not c3.mask[row3, k3] and c3.phecodes.loc[k3, "n_excluded"] == 1
    c4 = build_cohort(ecgs, patients, adm, dx3, pmap, dataclasses.replace(CFG, use_exclusions=False))
    assert c4.mask[row3, k3] and c4.phecodes.loc[k3, "n_excluded"] == 0


def test_min_counts_and_missing_columns() -> None:
    ecgs, patients, adm, dx = _cohort_inputs()
    strict = dataclasses.replace(CFG, min_cases=2, min_controls=1)
    c = build_cohort(ecgs, patients, adm, dx, load_phecode_map(), strict)
    assert (c.phecodes["n_cases"] >= 2).all()
    assert c.flow["phecodes_below_min_counts"] == c.flow["phecodes_observed"] - c.flow["phecodes_tested"] > 0
    with pytest.raises(ValueError, match=r"hosp/admissions.*dischtime"):
        build_cohort(ecgs, patients, adm.drop(columns="dischtime"), dx, load_phecode_map(), CFG)
    with pytest.raises(ValueError, match=r"hosp/patients.*anchor_year"):
        build_cohort(ecgs, patients.drop(columns="anchor_year"), adm, dx, load_phecode_map(), CFG)
    with pytest.raises(ValueError, match="hosp/diagnoses_icd.*icd_version"):
        build_cohort(ecgs, patients, adm, dx.drop(columns="icd_version"), load_phecode_map(), CFG)


def test_unknown_icd_version_is_counted() -> None:
    ecgs, patients, adm, dx = _cohort_inputs()
    dx.loc[len(dx)] = [1, 11, "XYZ", 11]
    c = build_cohort(ecgs, patients, adm, dx, load_phecode_map(), CFG)
    assert c.mapping_counts["rows_unknown_version"] == 1
    assert c.mapping_counts["rows_unmapped"] >= 1  # V15.82


def test_age_cap_flags_only_ages_recorded_above_89() -> None:
    """MIMIC records anchor ages above 89 as 91: an anchor age of 89 is a real age, not capped."""
    ecgs, patients, adm, dx = _cohort_inputs()
    patients = patients.assign(anchor_age=[89, 91, 90, 70])
    u = build_cohort(ecgs, patients, adm, dx, load_phecode_map(), CFG).units.set_index("subject_id")
    assert not bool(u.loc[1, "age_capped"]) and bool(u.loc[2, "age_capped"]) and bool(u.loc[3, "age_capped"])
