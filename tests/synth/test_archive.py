"""The written archive: PTB-XL and MIMIC-IV layouts, determinism, joins, atomic writes."""

from __future__ import annotations

import ast
import datetime as dt
import filecmp
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgproto.cli import main
from ecgproto.config import load_config
from ecgproto.errors import ConfigError
from ecgproto.synth.config import SynthConfig
from ecgproto.data.labels import all_labels
from ecgproto.synth import write_synthetic_archive
from ecgproto.synth.beats import LEADS
from ecgproto.synth.labels_sampler import RHYTHMS
from ecgproto.synth.writers import MIMIC_SIG_NAMES, PTBXL_SIG_NAMES, write_record, write_record_wfdb

ICD9 = re.compile(r"^(V\d{2,4}|E\d{3,4}|\d{3,5})$")
ICD10 = re.compile(r"^[A-Z]\d[0-9A-Z]{1,5}$")


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = SynthConfig(n_records=20, n_mimic_subjects=8, seed=7)
    first, again = tmp_path / "first", tmp_path / "again"
    write_synthetic_archive(first, cfg)
    write_synthetic_archive(again, cfg)
    files = _files(first)
    assert files == _files(again) and len(files) > 60
    match, mismatch, errors = filecmp.cmpfiles(first, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    other = tmp_path / "other"
    write_synthetic_archive(other, SynthConfig(n_records=20, n_mimic_subjects=8, seed=8))
    for rel in ("ptbxl/ptbxl_database.csv", "ptbxl/records100/00000/00001_lr.dat", "mimic/hosp/diagnoses_icd.csv"):
        assert (other / rel).read_bytes() != (first / rel).read_bytes()


def test_ptbxl_csvs_match_the_real_format(tiny_archive, ptbxl_sample):
    root, _ = tiny_archive
    real = pd.read_csv(ptbxl_sample / "ptbxl_database.csv")
    syn = pd.read_csv(root / "ptbxl/ptbxl_database.csv")
    assert list(syn.columns) == list(real.columns)
    for col in ("ecg_id", "patient_id", "age", "sex", "strat_fold"):
        assert syn[col].dtype.kind == real[col].dtype.kind, col
    assert (root / "ptbxl/scp_statements.csv").read_bytes() == (ptbxl_sample / "scp_statements.csv").read_bytes()
    assert set(syn["sex"]) <= {0, 1} and syn["strat_fold"].between(1, 10).all()
    assert syn.groupby("patient_id")["strat_fold"].nunique().max() == 1
    codes = set(all_labels())
    for text in syn["scp_codes"]:
        parsed = ast.literal_eval(text)
        assert parsed and set(parsed) <= codes and all(isinstance(v, float) for v in parsed.values())
    assert syn["filename_lr"].str.match(r"records100/\d{5}/\d{5}_lr$").all()


def test_ptbxl_records_read_like_the_real_ones(tiny_archive, ptbxl_sample):
    root, _ = tiny_archive
    real = wfdb.rdheader(str(ptbxl_sample / "records100/00000/00001_lr"))
    syn = pd.read_csv(root / "ptbxl/ptbxl_database.csv")
    for rel in syn["filename_lr"]:
        sig, fields = wfdb.rdsamp(str(root / "ptbxl" / rel))
        assert sig.shape == (1000, 12) and np.isfinite(sig).all()
        assert fields["sig_name"] == real.sig_name and fields["fs"] == real.fs and fields["units"] == real.units
        np.testing.assert_allclose(sig[:, 2], sig[:, 1] - sig[:, 0], atol=2e-3)  # III = II - I
    head = wfdb.rdheader(str(root / "ptbxl" / syn["filename_lr"].iat[0]))
    assert head.fmt == real.fmt and head.adc_gain == real.adc_gain and head.baseline == real.baseline


def test_fast_writer_is_byte_identical_to_wfdb_wrsamp(tmp_path):
    x = np.random.default_rng(0).normal(0, 1.5, (12, 700)).astype(np.float32)
    cases = ((PTBXL_SIG_NAMES, 1000.0, None, 100), (MIMIC_SIG_NAMES, 200.0, dt.datetime(2180, 7, 23, 8, 44), 500))
    for names, gain, when, fs in cases:
        write_record(tmp_path / "a" / "rec", x, fs, names, gain, base_datetime=when)
        write_record_wfdb(tmp_path / "b" / "rec", x, fs, names, gain, base_datetime=when)
        for ext in (".hea", ".dat"):
            assert (tmp_path / "a" / f"rec{ext}").read_bytes() == (tmp_path / "b" / f"rec{ext}").read_bytes()


def test_findings_table_is_consistent_with_labels(tiny_archive):
    root, _ = tiny_archive
    db = pd.read_csv(root / "ptbxl/ptbxl_database.csv")
    f = pd.read_csv(root / "ptbxl/findings.csv")
    assert list(f.columns) == ["ecg_id", "code", "leads", "start_s", "end_s"]
    assert ((f["start_s"] >= 0) & (f["end_s"] <= 10.0) & (f["end_s"] > f["start_s"])).all()
    assert all(set(leads.split(";")) <= set(LEADS) for leads in f["leads"].unique())
    labels = {r.ecg_id: set(ast.literal_eval(r.scp_codes)) for r in db.itertuples()}
    found = f.groupby("ecg_id")["code"].agg(set)
    for ecg_id, codes in found.items():
        assert codes <= labels[ecg_id]
    localised = {"IMI", "ASMI", "CLBBB", "CRBBB", "AFIB", "SR", "NORM", "LVH", "NDT"}
    for ecg_id, codes in labels.items():
        assert codes & localised <= found.get(ecg_id, set())
    imi = f[f["code"] == "IMI"]
    assert (imi["leads"] == "II;III;aVF").all() and ((imi["end_s"] - imi["start_s"]) < 0.2).all()


def test_mimic_tables_join_and_look_real(tiny_archive):
    root, summary = tiny_archive
    m = root / "mimic"
    rl = pd.read_csv(m / "record_list.csv", parse_dates=["ecg_time"])
    assert list(rl.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert rl["study_id"].is_unique
    mm = pd.read_csv(m / "machine_measurements.csv")
    assert list(mm.columns[:4]) == ["subject_id", "study_id", "cart_id", "ecg_time"]
    assert [f"report_{j}" for j in range(18)] == list(mm.columns[4:22]) and len(mm.columns) == 33
    assert set(mm["study_id"]) == set(rl["study_id"])
    assert mm["report_0"].isin(["Sinus rhythm", "Atrial fibrillation", "Atrial flutter", "Sinus tachycardia",
                                "Sinus bradycardia", "Sinus arrhythmia", "Supraventricular tachycardia",
                                "Complete heart block"]).all()
    patients = pd.read_csv(m / "hosp/patients.csv")
    adm = pd.read_csv(m / "hosp/admissions.csv", parse_dates=["admittime", "dischtime", "edregtime"])
    dx = pd.read_csv(m / "hosp/diagnoses_icd.csv", dtype={"icd_code": str})
    assert list(patients.columns) == ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
    assert {"subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "edregtime",
            "edouttime"} <= set(adm.columns)
    assert list(dx.columns) == ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
    assert set(rl["subject_id"]) <= set(patients["subject_id"]) and set(dx["hadm_id"]) <= set(adm["hadm_id"])
    assert set(dx["icd_version"]) == {9, 10}
    assert dx.loc[dx["icd_version"] == 9, "icd_code"].str.match(ICD9).all()
    assert dx.loc[dx["icd_version"] == 10, "icd_code"].str.match(ICD10).all()
    assert not dx["icd_code"].str.contains(r"\.").any()
    assert patients["anchor_age"].max() <= 91
    for rel in rl["path"].iloc[:20]:
        sig, fields = wfdb.rdsamp(str(m / rel))
        assert sig.shape == (5000, 12) and fields["fs"] == 500 and tuple(fields["sig_name"]) == MIMIC_SIG_NAMES
    # ECG times: those linked to an admission fall in [edregtime or admittime - 1 h, dischtime]; others outside
    truth = pd.read_csv(m / "truth/ecg_labels.csv").merge(rl[["study_id", "ecg_time"]], on="study_id")
    linked = truth[truth["hadm_id"] > 0].merge(adm, on=["subject_id", "hadm_id"])
    start = linked["edregtime"].fillna(linked["admittime"]) - pd.Timedelta(hours=1)
    assert ((linked["ecg_time"] >= start) & (linked["ecg_time"] <= linked["dischtime"])).all()
    outside = truth[truth["hadm_id"] == 0].merge(adm, on="subject_id")
    assert len(outside) > 0
    assert not ((outside["ecg_time"] >= outside["admittime"]) & (outside["ecg_time"] <= outside["dischtime"])).any()


def test_planted_associations_are_recoverable(tiny_archive):
    root, _ = tiny_archive
    assoc = pd.read_csv(root / "mimic/truth/associations.csv")
    assert {"af", "lbbb", "low_voltage", "old_mi", "lvh"} == set(assoc["exposure"])
    af = assoc[assoc["exposure"] == "af"].iloc[0]
    assert af["n_exposed"] >= 10 and af["empirical_odds_ratio"] > 5
    # the same association, recomputed from the released tables (ECG statements x ICD codes)
    m = root / "mimic"
    mm = pd.read_csv(m / "machine_measurements.csv", dtype={f"report_{j}": str for j in range(18)})
    reports = mm[[f"report_{j}" for j in range(18)]].fillna("").agg(" ".join, axis=1)
    af_subjects = set(mm.loc[reports.str.contains("Atrial fib|Atrial flutter"), "subject_id"])
    dx = pd.read_csv(m / "hosp/diagnoses_icd.csv", dtype={"icd_code": str})
    af_dx = set(dx.loc[dx["icd_code"].str.startswith(("I48", "4273")), "subject_id"])
    subjects = set(pd.read_csv(m / "hosp/patients.csv")["subject_id"])
    p_exposed = len(af_subjects & af_dx) / max(len(af_subjects), 1)
    p_other = len(af_dx - af_subjects) / max(len(subjects - af_subjects), 1)
    assert p_exposed > 3 * p_other


def test_label_coverage_and_consistency(plan_400):
    table, plan, _ = plan_400
    y = plan.labels.labels
    codes = all_labels()
    present = {codes[j] for j in np.flatnonzero(y.sum(axis=0) >= 3)}
    assert len(present) >= 20
    prev = dict(zip(codes, y.mean(axis=0)))
    assert 0.2 < prev["NORM"] < 0.6 and 0.03 < prev["AFIB"] < 0.15 and prev["SR"] > 0.6
    rhythm = y[:, [codes.index(c) for c in RHYTHMS]]
    assert (rhythm.sum(axis=1) == 1).all()
    norm = y[:, codes.index("NORM")] == 1
    abnormal = [codes.index(c) for c in ("IMI", "CLBBB", "AFIB", "LVH", "PVC", "1AVB")]
    assert not (norm[:, None] & (y[:, abnormal] == 1)).any()
    assert not ((y[:, codes.index("AFIB")] == 1) & (y[:, codes.index("PAC")] == 1)).any()
    assert (y[y[:, codes.index("BIGU")] == 1, codes.index("PVC")] == 1).all()


def test_cli_writes_refuses_and_forces(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["synth", "--out", str(out), "--n-records", "12", "--n-mimic-subjects", "3", "--seed", "5"]
    assert main(args) == 0
    assert (out / "config.resolved.yaml").exists() and (out / "ptbxl/ptbxl_database.csv").exists()
    assert "n_records: 12" in (out / "config.resolved.yaml").read_text()
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert not list(tmp_path.glob(".out.tmp-*"))
    assert main(["synth", "--out", str(tmp_path / "x"), "--n-records", "0"]) == 1


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="n_records"):
        SynthConfig(n_records=0)
    with pytest.raises(ValueError, match="seed"):
        SynthConfig(seed=-1)
    with pytest.raises(ConfigError, match="synth"):
        load_config(None, ["synth.noise_scale=-1"])
    with pytest.raises(ConfigError, match="extra_key"):
        load_config(None, ["synth.extra_key=1"])


def test_500hz_records_match_the_100hz_ones(tmp_path):
    out = tmp_path / "a"
    write_synthetic_archive(out, SynthConfig(n_records=6, n_mimic_subjects=0, seed=2, write_500hz=True))
    db = pd.read_csv(out / "ptbxl/ptbxl_database.csv")
    for lr, hr in zip(db["filename_lr"], db["filename_hr"]):
        lo, _ = wfdb.rdsamp(str(out / "ptbxl" / lr))
        hi, fields = wfdb.rdsamp(str(out / "ptbxl" / hr))
        assert hi.shape == (5000, 12) and fields["fs"] == 500
        down = hi.reshape(1000, 5, 12).mean(axis=1)
        corr = [np.corrcoef(lo[:, j], down[:, j])[0, 1] for j in range(12)]
        assert np.median(corr) > 0.85  # same beats; only the white noise differs between rates


def test_rendering_does_not_depend_on_batching(plan_400):
    from ecgproto.synth.simulator import simulate

    _, plan, _ = plan_400
    whole = simulate(plan, np.arange(20), 100)
    parts = np.concatenate([simulate(plan, np.arange(0, 7), 100), simulate(plan, np.arange(7, 20), 100)])
    np.testing.assert_array_equal(whole, parts)
