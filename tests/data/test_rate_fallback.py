"""A record missing at the model rate is read from the other rate's file and resampled; the shared summary."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.data.cache import CachedArchive, open_cache, prepare_cache, summary_text
from ecgproto.data.config import DataConfig
from ecgproto.data.preprocess import highpass
from ecgproto.data.ptbxl import other_rate_of
from ecgproto.data.wfdb_io import read_record

from .ptbxl_subset import copy_ptbxl_subset

# ecg_id → which of its files are copied (the sample has both rates for ecg_id 1-20)
FILES = {1: ("lr", "hr"), 2: ("lr",), 3: ("hr",), 4: ("hr",), 5: ()}


@pytest.fixture()
def mixed_ptbxl(ptbxl_sample: Path, tmp_path: Path) -> Path:
    """A 5-record PTB-XL folder: both rates, only 100 Hz, only 500 Hz (twice), neither."""
    root = tmp_path / "ptbxl"
    copy_ptbxl_subset(ptbxl_sample, root, FILES)
    return root


def _cfg(root: Path, tmp_path: Path, **changes) -> DataConfig:
    return dataclasses.replace(DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"), num_workers=1), **changes)


def test_500hz_only_record_is_resampled_and_matches_official_100hz(mixed_ptbxl: Path, ptbxl_sample: Path,
                                                                   tmp_path: Path) -> None:
    archive = prepare_cache(_cfg(mixed_ptbxl, tmp_path))
    records = archive.records.set_index("ecg_id")
    assert dict(records["source_fs"]) == {1: 100, 2: 100, 3: 500, 4: 500, 5: 0}
    assert records.loc[3, "path"] == "records500/00000/00003_hr" and records.loc[3, "status"] == "ok"
    assert list(archive.index["ecg_id"]) == [1, 2, 3, 4] and archive.meta["n_other_rate"] == 2
    for ecg_id in (3, 4):
        row = int(records.loc[ecg_id, "row"])
        resampled = read_record(mixed_ptbxl / f"records500/00000/{ecg_id:05d}_hr", 100, 1000)
        np.testing.assert_array_equal(archive.signals[row], highpass(resampled.signal, 100, 0.5, 1))
        official = read_record(ptbxl_sample / f"records100/00000/{ecg_id:05d}_lr", 100, 1000)
        reference = highpass(official.signal, 100, 0.5, 1)
        # The 500 Hz file of ecg_id 4 holds a constant value over its last ~0.1 s where the 100 Hz one
        # goes on; the high-pass spreads that difference, so the last 0.5 s are left out.
        corr = [np.corrcoef(archive.signals[row, lead, :950], reference[lead, :950])[0, 1] for lead in range(12)]
        assert min(corr) > 0.95, (ecg_id, corr)


def test_record_with_neither_file_is_excluded_with_reason(mixed_ptbxl: Path, tmp_path: Path) -> None:
    archive = prepare_cache(_cfg(mixed_ptbxl, tmp_path))
    bad = archive.records.set_index("ecg_id").loc[5]
    assert bad["status"] == "missing_file" and bad["row"] == -1
    assert "neither records100/00000/00005_lr.hea (100 Hz) nor records500/00000/00005_hr.hea" in bad["message"]
    assert list(pd.read_csv(archive.path / "rejected.csv")["ecg_id"]) == [5]


def test_500hz_model_reads_100hz_file_when_500hz_is_missing(mixed_ptbxl: Path, tmp_path: Path) -> None:
    archive = prepare_cache(_cfg(mixed_ptbxl, tmp_path, sampling_rate=500))
    assert dict(archive.records.set_index("ecg_id")["source_fs"]) == {1: 500, 2: 100, 3: 500, 4: 500, 5: 0}
    assert archive.signals.shape == (4, 12, 5000) and archive.meta["n_other_rate"] == 1


def test_key_changes_when_the_preferred_file_appears(mixed_ptbxl: Path, ptbxl_sample: Path, tmp_path: Path) -> None:
    cfg = _cfg(mixed_ptbxl, tmp_path)
    first = prepare_cache(cfg)
    assert prepare_cache(cfg).reused
    for ext in (".hea", ".dat"):
        shutil.copy(ptbxl_sample / ("records100/00000/00003_lr" + ext), mixed_ptbxl / ("records100/00000/00003_lr" + ext))
    second = prepare_cache(cfg)
    assert second.key != first.key and not second.reused
    assert second.records.set_index("ecg_id").loc[3, "source_fs"] == 100 and second.meta["n_other_rate"] == 1


def test_other_rate_of() -> None:
    assert (other_rate_of(100), other_rate_of(500)) == (500, 100)
    with pytest.raises(ValueError, match="100 or 500 Hz, not 250 Hz"):
        other_rate_of(250)


def _archive(meta: dict, reused: bool = False) -> CachedArchive:
    empty = np.zeros((0, 12, 1000), dtype=np.float32)
    return CachedArchive(path=Path("/c/0123"), signals=empty, labels=np.zeros((0, 71), np.uint8), index=pd.DataFrame(),
                         records=pd.DataFrame(), fs=100, key="0123abcd", standardization=None, meta=meta, reused=reused)


def test_summary_text() -> None:
    meta = {"seconds": 2.46, "n_records": 10, "n_ok": 7, "n_samples": 1000, "n_other_rate": 2,
            "split_counts": {"val": 1, "train": 5, "": 1}, "status_counts": {"ok": 7, "nan": 1, "missing_file": 2},
            "settings": {"source_rate": 100}}
    assert summary_text(_archive(meta)).splitlines() == [
        "cache /c/0123 (written in 2.5 s); key 0123abcd",
        "records: 10 read, 7 cached as (7, 12, 1000) float32 at 100 Hz",
        "used per split: train 5, val 1, test 0, in no split 1",
        "excluded (listed with reasons in /c/0123/rejected.csv): missing_file 2, nan 1",
        "other rate: 2 record(s) had no 100 Hz file (filename_lr) and were read from the 500 Hz file "
        "(filename_hr), resampled to 100 Hz (column source_fs in records.parquet)",
    ]
    clean = {**meta, "n_ok": 10, "n_other_rate": 0, "split_counts": {"train": 8, "val": 1, "test": 1},
             "status_counts": {"ok": 10}}
    text = summary_text(_archive(clean, reused=True))
    assert text.splitlines()[0] == "cache /c/0123 (reused); key 0123abcd"
    assert "used per split: train 8, val 1, test 1" in text and "excluded" not in text and "other rate" not in text


def test_prepare_command_prints_the_summary(mixed_ptbxl: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-cache"
    assert main(["prepare", "--root", str(mixed_ptbxl), "--out", str(out), "--set", "data.num_workers=1"]) == 0
    (folder,) = list(out.iterdir())
    assert capsys.readouterr().out.strip() == summary_text(open_cache(folder))


def test_train_command_prints_the_summary(tmp_path: Path, monkeypatch, capsys) -> None:
    """`train` prints the same summary as `prepare` before training (training itself stubbed out)."""
    monkeypatch.setenv("ECGPROTO_NO_PROGRESS", "1")
    synth = tmp_path / "synth"
    assert main(["synth", "--out", str(synth), "--n-records", "20", "--n-mimic-subjects", "0", "--write-500hz"]) == 0
    for ecg_id in (2, 5):  # only their 500 Hz files remain
        for path in (synth / "ptbxl" / "records100").rglob(f"{ecg_id:05d}_lr.*"):
            path.unlink()
    monkeypatch.setattr("ecgproto.train.run.train_model", lambda *args, **kwargs: None)
    capsys.readouterr()
    common = ["--set", "data.source=synthetic", "--set", f"data.cache_dir={tmp_path / 'cache'}",
              "--set", "data.num_workers=1"]
    assert main(["train", *common, "--data", str(synth), "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    cfg = _cfg(synth / "ptbxl", tmp_path, source="synthetic")
    summary = summary_text(prepare_cache(cfg)).splitlines()
    assert "other rate: 2 record(s)" in summary[-1]
    assert all(line in printed for line in summary[1:])  # the first line says "reused" here
