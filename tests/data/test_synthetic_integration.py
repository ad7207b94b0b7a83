"""The data layer on the synthetic archive written by ``ecgproto.synth`` (PTB-XL and MIMIC shapes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgproto.data.cache import prepare_cache
from ecgproto.data.config import DataConfig
from ecgproto.synth.config import SynthConfig
from ecgproto.data.mimic import load_hosp, load_machine_statements, load_record_list
from ecgproto.data.ptbxl import load_ptbxl
from ecgproto.synth import write_synthetic_archive
from ecgproto.data.wfdb_io import read_record


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "archive"
    write_synthetic_archive(out, SynthConfig(n_records=30, n_mimic_subjects=6, seed=3))
    return out


def test_prepare_synthetic_source(archive: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="synthetic", root=str(archive), cache_dir=str(tmp_path / "cache"), num_workers=1)
    cached = prepare_cache(cfg)  # root is the synth output; its ptbxl/ folder is read
    ptbxl = load_ptbxl(archive / "ptbxl")
    assert cached.meta["status_counts"] == {"ok": 30} and cached.signals.shape == (30, 12, 1000)
    np.testing.assert_array_equal(cached.labels, ptbxl.labels)
    assert set(cached.index["split"]) <= {"train", "val", "test"} and (cached.index["split"] == "train").any()
    assert np.isfinite(np.asarray(cached.signals)).all()
    assert prepare_cache(dataclasses.replace(cfg)).reused


def test_mimic_readers_on_synthetic(archive: Path) -> None:
    records = load_record_list(archive / "mimic")
    assert len(records) > 0 and records["ecg_time"].dtype.kind == "M"
    results = [read_record(p, 100, 1000) for p in records["path"]]
    assert [r.status for r in results] == ["ok"] * len(results)  # 500 Hz, MIMIC lead order, resampled
    statements = load_machine_statements(archive / "mimic")
    assert len(statements) == len(records) and statements["statements"].map(len).gt(0).all()
    keys = ["subject_id", "study_id"]
    assert pd.merge(records[keys], statements[keys], on=keys).shape[0] == len(records)
    hosp = load_hosp(archive / "mimic" / "hosp")
    assert set(hosp.diagnoses["icd_version"]) <= {9, 10} and hosp.admissions["admittime"].dtype.kind == "M"
    assert set(hosp.diagnoses["subject_id"]) <= set(hosp.patients["subject_id"])
