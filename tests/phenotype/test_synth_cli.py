"""`ecgproto phenotype` on the synthetic MIMIC-shaped archive (real readers, planted truth).

Scores are "oracle" stand-ins built from the archive's truth labels (no trained model is
needed): prototypes 0 and 1 of a class track the class label, prototype 2 is noise.
"""

from __future__ import annotations

import ast
import json
import os

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.synth.config import SynthConfig
from ecgproto.synth import write_synthetic_archive
from ecgproto.phenotype.cohort import link_ecgs
from ecgproto.phenotype.config import PhenotypeConfig

from ..checks import resolved_config

CLASSES = ("AFIB", "AFLT", "CLBBB", "LVOLT", "IMI", "ASMI", "LVH", "SR", "NORM")
BACKGROUND_PHECODES = {"038", "994.2", "585.1", "250.2", "272.1", "496", "585.3"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_archive(root, SynthConfig(n_records=10, n_mimic_subjects=120, seed=3))
    return root / "mimic"


def _oracle_scores(mimic, out) -> None:
    rl = pd.read_csv(mimic / "record_list.csv")
    truth = pd.read_csv(mimic / "truth" / "ecg_labels.csv").set_index("study_id").reindex(rl["study_id"])
    lab = np.array([[c in ast.literal_eval(s) for c in CLASSES] for s in truth["scp_codes"]], dtype=float)
    rng = np.random.default_rng(0)
    n = len(rl)
    sims = {}
    for c_i, _ in enumerate(CLASSES):
        for k in range(3):
            signal = lab[:, c_i] if k < 2 else 0.0
            sims[f"sim__{3 * c_i + k:04d}"] = (signal + rng.normal(0, 0.25, n)).astype(np.float32)
    rid = rl["study_id"].astype(str)
    status = np.where(np.arange(n) == 0, "unreadable_signal", "ok")  # one bad record: counted, not used
    scores = pd.DataFrame({"record_id": rid, "subject_id": rl["subject_id"], "study_id": rl["study_id"],
                           "path": rl["path"], "status": status, "error": ""})
    for c_i, c in enumerate(CLASSES):
        scores[f"prob__{c}"] = 1 / (1 + np.exp(-(3 * lab[:, c_i] - 1.5 + rng.normal(0, 1, n))))
    out.mkdir()
    scores.to_parquet(out / "scores.parquet", index=False)
    pd.DataFrame({"record_id": rid, **sims}).to_parquet(out / "similarities.parquet", index=False)


def test_linking_matches_synthetic_truth(archive) -> None:
    from ecgproto.data.mimic import load_hosp, load_record_list

    rl = load_record_list(archive)
    hosp = load_hosp(archive / "hosp")
    truth = pd.read_csv(archive / "truth" / "ecg_labels.csv")
    ecgs = rl.assign(record_id=rl["study_id"].astype(str))
    linked = link_ecgs(ecgs, hosp.admissions, PhenotypeConfig()).merge(truth, on=["subject_id", "study_id"])
    got = linked["hadm_id_x"].fillna(0).astype(int)
    inside = linked["ecg_kind"].isin(["admission", "ed", "clock_skew"])
    assert (got[inside] == linked.loc[inside, "hadm_id_y"]).mean() > 0.99
    assert (got[linked["ecg_kind"].isin(["outpatient", "lookback"])] == 0).all()
    wide = link_ecgs(ecgs, hosp.admissions, PhenotypeConfig(lookback_days=7)).merge(truth, on=["subject_id", "study_id"])
    assert wide.loc[wide["ecg_kind"] == "lookback", "hadm_id_x"].notna().all()


def _run_cli(archive, tmp_path, *extra: str):
    scores_dir = tmp_path / "scores"
    _oracle_scores(archive, scores_dir)
    out = tmp_path / "phenotype"
    rc = main(["phenotype", str(scores_dir), "--mimic", str(archive), "--hosp", str(archive / "hosp"),
               "--out", str(out), "--min-cases", "8", "--permutations", "1",
               "--set", "phenotype.auroc_phecodes=[\"427.2\"]", "--set", "phenotype.auroc_bootstrap=50",
               "--set", "phenotype.firth_below_cases=20", *extra])
    assert rc == 0
    return out


def test_phenotype_cli_on_synthetic_archive(archive, tmp_path) -> None:
    out = _run_cli(archive, tmp_path, "--threads", "2")
    assoc = pd.read_parquet(out / "associations.parquet")
    assert len(assoc) > 0 and len(pd.read_csv(out / "associations.csv")) == len(assoc)
    assert set(pd.read_csv(out / "auroc.csv", dtype={"phecode": str})["phecode"]) == {"427.2"}
    assert len(pd.read_csv(out / "family_comparison.csv")) > 0
    assert resolved_config(out).phenotype.permutations == 1 and resolved_config(out).phenotype.threads == 2
    meta = json.loads((out / "run_metadata.json").read_text())
    flow = meta["cohort_flow"]
    assert flow["ecgs_status_not_ok"] == 1 and flow["ecgs_outside_admission_windows"] > 0
    assert flow["ecgs_scored"] == flow["ecgs_status_not_ok"] + flow["ecgs_subject_without_admissions"] + \
        flow["ecgs_outside_admission_windows"] + flow["ecgs_linked"]
    assert meta["diagnosis_mapping"]["rows_unmapped"] > 0
    assert set(meta["families"]) == {"prototype", "class", "nlp_concept"}
    html = (out / "report.html").read_text()
    assert "Manhattan" in html and "no --checkpoint given" in html


@pytest.mark.slow
def test_planted_associations_on_larger_synthetic_archive(tmp_path) -> None:
    os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")
    write_synthetic_archive(tmp_path / "a", SynthConfig(n_records=10, n_mimic_subjects=600, seed=4))
    out = _run_cli(tmp_path / "a" / "mimic", tmp_path, "--min-cases", "20")
    a = pd.read_parquet(out / "associations.parquet")
    proto = a[(a["family"] == "prototype") & (a["q_bh"] < 0.05)]
    af_hits = set(proto.loc[proto["phecode"] == "427.2", "feature_id"])
    assert {"P0000", "P0001"} <= af_hits  # AFIB-tracking prototypes
    assert "P0002" not in af_hits  # the noise prototype of the AFIB class
    assert len(proto[proto["phecode"].isin(BACKGROUND_PHECODES)]) <= 1  # ECG-independent phenotypes


def test_phenotype_cli_bad_inputs(archive, tmp_path, capsys) -> None:
    rc = main(["phenotype", str(tmp_path / "nope"), "--mimic", str(archive), "--hosp", str(archive / "hosp"),
               "--out", str(tmp_path / "o")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    scores_dir = tmp_path / "scores"
    _oracle_scores(archive, scores_dir)
    (scores_dir / "similarities.parquet").unlink()
    rc = main(["phenotype", str(scores_dir), "--mimic", str(archive), "--hosp", str(archive / "hosp"),
               "--out", str(tmp_path / "o")])
    assert rc == 1 and "--save-similarities" in capsys.readouterr().err
