"""End to end on a simulated MIMIC-shaped cohort: planted associations found, shuffled ones not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.features import normalize_statement
from ecgproto.phenotype.pipeline import run_analysis, write_outputs
from ecgproto.phenotype.report import write_report
from tests.phenotype.simulate import simulate

CFG = PhenotypeConfig(min_cases=20, min_controls=20, permutations=2, distance_permutations=500,
                      auroc_bootstrap=50, auroc_phecodes=("427.21",), firth_below_cases=30, min_concept_count=5)


def _run(data: dict, cfg: PhenotypeConfig = CFG):
    return run_analysis(data["scores"], data["similarities"], data["ecg_times"], data["statements"], data["patients"],
                        data["admissions"], data["diagnoses"], cfg, prototypes=data["prototypes"],
                        vectors=data["vectors"])


@pytest.fixture(scope="module")
def planted():
    return _run(simulate(400, seed=0))


def test_planted_associations_found(planted, tmp_path) -> None:
    t = planted.families["prototype"].table
    sig = t[t["q_bh"] < 0.05]
    af = set(sig.loc[sig["phecode"] == "427.21", "feature_id"])
    hf = set(sig.loc[sig["phecode"] == "428", "feature_id"])
    assert {"P0000", "P0001"} <= af  # AFIB prototypes 0 and 1 drive AF
    assert {"P0009", "P0010", "P0011"} <= hf  # all CLBBB prototypes drive heart failure
    assert not (set(sig["feature_id"]) - {"P0000", "P0001", "P0002", "P0009", "P0010", "P0011"})
    assert (sig.loc[sig["feature_id"] == "P0000", "or"].dropna() > 1).all()
    assert planted.metadata["cohort_flow"]["units"] == 400
    classes = planted.intraclass[0].set_index("prototype_class")
    assert classes.loc["CLBBB", "status"] == "uniform"
    assert set(planted.auroc) == {"427.21"}
    auc = planted.auroc["427.21"].set_index("model")["auroc"]
    assert auc["prototype"] > auc["age+sex"]
    write_outputs(planted, tmp_path)
    html = write_report(planted, tmp_path, None, "test run").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "No prototype thumbnails" in html
    assoc = pd.read_parquet(tmp_path / "associations.parquet")
    for col in ("family", "feature_id", "phecode", "phecode_category", "n_cases", "n_controls", "n_excluded", "auc",
                "p", "q_bh", "bonferroni_sig", "beta", "or", "or_ci_low", "or_ci_high", "refit_method"):
        assert col in assoc.columns
    assert set(assoc["family"]) == {"prototype", "class", "prototype_class", "nlp_concept"}
    meta = json.loads((tmp_path / "run_metadata.json").read_text())
    assert meta["phecode_map"]["version"] == "1.2" and meta["phecode_map"]["sha256"]
    assert meta["cohort_flow"]["ecgs_scored"] == len(simulate(400, seed=0)["scores"])


def test_shuffled_labels_find_nothing_beyond_chance() -> None:
    res = _run(simulate(400, seed=1, shuffle=True))
    t = pd.concat([f.table for f in res.families.values()])
    assert (t["q_bh"] < 0.05).sum() <= 2
    assert t["bonferroni_sig"].sum() == 0
    # nominal p-values of all tests stay near uniform
    assert (t["p"] < 0.05).mean() < 0.12


def test_no_testable_phecode_is_a_clear_error() -> None:
    data = simulate(60, seed=2)
    cfg = PhenotypeConfig(min_cases=1000, min_controls=1000)
    with pytest.raises(ValueError, match="min_cases"):
        _run(data, cfg)


def test_scores_missing_record_is_reported() -> None:
    data = simulate(60, seed=3)
    data["similarities"] = data["similarities"].iloc[5:]
    with pytest.raises(ValueError, match="prototype features: record"):
        _run(data, PhenotypeConfig(min_cases=3, min_controls=3, permutations=0, auroc_phecodes=()))


def test_normalize_statement() -> None:
    assert normalize_statement("Sinus rhythm.") == "sinus rhythm"
    assert normalize_statement("Possible right atrial abnormality") == "right atrial abnormality [hedged]"
    assert normalize_statement("  --  ") == ""


def test_admission_unit_with_cluster_robust_tests_and_mean_ecg() -> None:
    cfg = PhenotypeConfig(min_cases=20, min_controls=20, permutations=0, auroc_phecodes=(), unit="admission",
                          ecg_per_admission="mean", firth_below_cases=30, min_concept_count=5)
    res = _run(simulate(300, seed=6), cfg)
    assert res.metadata["cohort_flow"]["units"] > 300  # several admissions per patient
    assert "admissions_not_first_of_patient" not in res.metadata["cohort_flow"]
    t = res.families["prototype"].table
    assert t["covariates"].str.contains("cluster-robust").all()
    hits = t[(t["q_bh"] < 0.05) & (t["phecode"] == "427.21")]
    assert {"P0000", "P0001"} <= set(hits["feature_id"])
    assert set(hits["refit_method"]) <= {"wald_cluster", "firth"}
