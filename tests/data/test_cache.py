"""The prepare cache on a handful of real PTB-XL records (one of them corrupted)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.data import cache as cache_module
from ecgproto.data.cache import CachedArchive, open_cache, prepare_cache
from ecgproto.data.config import DataConfig
from ecgproto.data.preprocess import fit_standardization, highpass
from ecgproto.data.ptbxl import load_ptbxl
from ecgproto.data.wfdb_io import read_record

from .ptbxl_subset import copy_ptbxl_subset

IDS = [1, 2, 3, 8, 9, 17, 38, 40, 5, 6]  # folds 3,2,5,9,10,9,10,10,4,4
BROKEN = 3


@pytest.fixture()
def mini_ptbxl(ptbxl_sample: Path, tmp_path: Path) -> Path:
    """A 10-record PTB-XL folder; record ecg_id 3 has a truncated .dat."""
    root = tmp_path / "ptbxl"
    db = copy_ptbxl_subset(ptbxl_sample, root, {i: ("lr",) for i in IDS})
    broken = root / (db.loc[db["ecg_id"] == BROKEN, "filename_lr"].item() + ".dat")
    broken.write_bytes(broken.read_bytes()[:1000])
    return root


def _cfg(root: Path, tmp_path: Path, **changes) -> DataConfig:
    return dataclasses.replace(DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"), num_workers=1), **changes)


def test_cache_content_matches_direct_reading(mini_ptbxl: Path, tmp_path: Path) -> None:
    archive = prepare_cache(_cfg(mini_ptbxl, tmp_path))
    assert isinstance(archive, CachedArchive) and not archive.reused
    assert isinstance(archive.signals, np.memmap) and archive.signals.dtype == np.float32
    assert archive.signals.shape == (9, 12, 1000) and archive.labels.shape == (9, 71) and archive.fs == 100
    assert list(archive.index["ecg_id"]) == [i for i in sorted(IDS) if i != BROKEN]
    ptbxl = load_ptbxl(mini_ptbxl)
    for row, ecg_id in enumerate(archive.index["ecg_id"]):
        path = str(mini_ptbxl / ptbxl.meta.loc[ecg_id, "filename_lr"])
        expected = highpass(read_record(path, 100, 1000).signal, 100, 0.5, 1)
        np.testing.assert_array_equal(archive.signals[row], expected)
        np.testing.assert_array_equal(archive.labels[row], ptbxl.labels[ptbxl.meta.index.get_loc(ecg_id)])
    assert dict(archive.index.set_index("ecg_id")["split"]) == {1: "train", 2: "train", 5: "train", 6: "train",
                                                                8: "val", 17: "val", 9: "test", 38: "test", 40: "test"}
    assert archive.index.loc[0, "age"] == 56 and archive.index.loc[0, "sex"] == 1
    # the broken record is listed with its status, and excluded from the arrays
    bad = archive.records.set_index("ecg_id").loc[BROKEN]
    assert bad["status"] == "unreadable_signal" and "truncated" in bad["message"] and bad["row"] == -1
    rejected = pd.read_csv(archive.path / "rejected.csv")
    assert list(rejected["ecg_id"]) == [BROKEN]
    assert archive.meta["status_counts"] == {"ok": 9, "unreadable_signal": 1}
    np.testing.assert_array_equal(archive.rows("val"), [4, 6])  # ecg_id 8 and 17


def test_standardization_fitted_on_train_only(mini_ptbxl: Path, tmp_path: Path) -> None:
    plain = prepare_cache(_cfg(mini_ptbxl, tmp_path))
    assert plain.standardization is None
    archive = prepare_cache(_cfg(mini_ptbxl, tmp_path, standardize=True))
    expected = fit_standardization(np.asarray(archive.signals[archive.rows("train")]))
    assert archive.standardization == expected
    everything = fit_standardization(np.asarray(archive.signals))
    assert archive.standardization["std"] != everything["std"]


def test_reuse_only_when_key_matches(mini_ptbxl: Path, tmp_path: Path) -> None:
    cfg = _cfg(mini_ptbxl, tmp_path)
    first = prepare_cache(cfg)
    again = prepare_cache(cfg)
    assert again.reused and again.key == first.key and again.path == first.path
    other = prepare_cache(dataclasses.replace(cfg, highpass_hz=1.0))
    assert other.key != first.key and not other.reused
    dat = next((mini_ptbxl / "records100").rglob("00001_lr.dat"))
    st = dat.stat()
    os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an input file changed
    changed = prepare_cache(cfg)
    assert changed.key != first.key and not changed.reused
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]
    (changed.path / "meta.json").write_text("{broken")  # damaged cache: rebuilt, not an error
    rebuilt = prepare_cache(cfg)
    assert rebuilt.key == changed.key and not rebuilt.reused


def test_failure_leaves_no_half_written_cache(mini_ptbxl: Path, tmp_path: Path, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("ecgproto.data.cache.fit_standardization", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_cache(_cfg(mini_ptbxl, tmp_path))
    assert list((tmp_path / "cache").iterdir()) == []


def test_worker_processes_give_identical_cache(mini_ptbxl: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("ecgproto.data.cache.CHUNK", 3)  # several tasks for two workers
    serial = prepare_cache(_cfg(mini_ptbxl, tmp_path))
    parallel = prepare_cache(_cfg(mini_ptbxl, tmp_path, num_workers=2), force=True)
    np.testing.assert_array_equal(parallel.signals, serial.signals)
    pd.testing.assert_frame_equal(parallel.records, serial.records)


def test_500hz_source_and_resampled_rate(ptbxl_sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "ptbxl"
    root.mkdir()
    shutil.copy(ptbxl_sample / "scp_statements.csv", root)
    db = pd.read_csv(ptbxl_sample / "ptbxl_database.csv").head(3)
    db.to_csv(root / "ptbxl_database.csv", index=False)
    for rel in db["filename_hr"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            shutil.copy(ptbxl_sample / (rel + ext), root / (rel + ext))
    archive = prepare_cache(_cfg(root, tmp_path, sampling_rate=250, duration_s=8.0))
    assert archive.signals.shape == (3, 12, 2000) and archive.fs == 250
    assert archive.records["path"].str.startswith("records500").all()


def test_open_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ecgproto prepare"):
        open_cache(tmp_path)
    with pytest.raises(ValueError, match="data.root"):
        prepare_cache(DataConfig(cache_dir=str(tmp_path)))


def test_prepare_command(mini_ptbxl: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-cache"
    assert main(["prepare", "--root", str(mini_ptbxl), "--out", str(out), "--set", "data.num_workers=1"]) == 0
    text = capsys.readouterr().out
    assert "9 cached" in text and "unreadable_signal 1" in text and "rejected.csv" in text
    (folder,) = [p for p in out.iterdir()]
    assert (folder / "config.resolved.yaml").is_file() and open_cache(folder).signals.shape[0] == 9
    assert main(["prepare", "--root", str(mini_ptbxl), "--out", str(out), "--set", "data.num_workers=1"]) == 0
    assert "(reused)" in capsys.readouterr().out
    assert main(["prepare", "--root", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_concurrent_writer_keeps_existing_complete_cache(mini_ptbxl: Path, tmp_path: Path, monkeypatch) -> None:
    """Two processes preparing the same cache at once (e.g. two training ranks): the second keeps the first's."""
    cfg = _cfg(mini_ptbxl, tmp_path)
    first = prepare_cache(cfg)
    inode = (first.path / "signals.npy").stat().st_ino
    monkeypatch.setattr("ecgproto.data.cache._stored_key", lambda folder: None)  # first lookup misses ...
    real_move = cache_module._move_into_place

    def move(tmp, final, key, force):
        monkeypatch.undo()  # ... but by the time our copy is written, the other one is in place
        real_move(tmp, final, key, force)

    monkeypatch.setattr("ecgproto.data.cache._move_into_place", move)
    second = prepare_cache(cfg)
    assert second.path == first.path and (second.path / "signals.npy").stat().st_ino == inode
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]
