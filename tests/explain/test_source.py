"""Reading records with a checkpoint's preprocessing and prototype source ECGs by ecg_id."""

from __future__ import annotations

import numpy as np
import pytest

from ecgproto.data.preprocess import highpass
from ecgproto.data.wfdb_io import read_record
from ecgproto.data.preprocess import Preprocessing
from ecgproto.explain.source import SourceArchive

META = {"sampling_rate": 100, "n_samples": 1000, "highpass": {"cutoff_hz": 0.5, "order": 1}}


def test_preprocessing_matches_reader_plus_highpass(ptbxl_sample):
    prep = Preprocessing.from_meta(META)
    path = ptbxl_sample / "records100" / "00000" / "00001_lr"
    res = prep.read(path)
    assert res.status == "ok" and res.signal.shape == (12, 1000) and res.signal.dtype == np.float32
    raw = read_record(path, 100, 1000).signal
    np.testing.assert_allclose(res.signal, highpass(raw, 100, 0.5, 1, edge="scipy"))  # meta without an edge rule
    reflect = Preprocessing.from_meta({**META, "highpass": {**META["highpass"], "edge": "reflect"}}).read(path)
    np.testing.assert_allclose(reflect.signal, highpass(raw, 100, 0.5, 1, edge="reflect"))
    bad = prep.read(ptbxl_sample / "records100" / "00000" / "nope")
    assert bad.status == "missing_file" and bad.signal is None


def test_source_archive_reads_by_ecg_id(ptbxl_sample):
    src = SourceArchive.resolve(META, ptbxl_sample)
    assert src.available
    sig, msg = src.signal(2)
    expected = highpass(read_record(ptbxl_sample / "records100/00000/00002_lr", 100, 1000).signal, 100, 0.5, 1, edge="scipy")
    np.testing.assert_allclose(sig, expected)
    assert msg == ""
    sig, msg = src.signal(99_999_999)
    assert sig is None and "99999999" in msg and "ptbxl_database.csv" in msg


def test_source_archive_from_checkpoint_config(ptbxl_sample, tmp_path):
    stored = dict(META, config={"data": {"root": str(ptbxl_sample)}})
    assert SourceArchive.resolve(stored).available
    # synthetic layout: <root>/ptbxl/ptbxl_database.csv
    (tmp_path / "ptbxl").mkdir()
    (tmp_path / "ptbxl" / "ptbxl_database.csv").write_text("ecg_id,filename_lr,filename_hr\n")
    assert SourceArchive.resolve(dict(META, config={"data": {"root": str(tmp_path)}})).root == (tmp_path / "ptbxl").resolve()
    gone = SourceArchive.resolve(dict(META, config={"data": {"root": str(tmp_path / "elsewhere")}}))
    assert not gone.available and "--source-data" in gone.reason
    sig, msg = gone.signal(1)
    assert sig is None and "not available" in msg
    assert not SourceArchive.resolve(dict(META, config={"data": {"root": ""}})).available


def test_bad_source_data_flag_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--source-data"):
        SourceArchive.resolve(META, tmp_path)


def test_falls_back_to_the_training_cache(ptbxl_sample, tmp_path):
    from ecgproto.data.cache import prepare_cache
    from ecgproto.data.config import DataConfig

    cache = prepare_cache(DataConfig(root=str(ptbxl_sample), cache_dir=str(tmp_path / "cache"), num_workers=1))
    meta = dict(META, data_key=cache.key,
                config={"data": {"root": str(tmp_path / "moved"), "cache_dir": str(tmp_path / "cache")}})
    src = SourceArchive.resolve(meta)
    assert src.available and src.root is None and "not available" in src.reason
    ecg_id = int(cache.index["ecg_id"].iloc[3])
    sig, msg = src.signal(ecg_id)
    np.testing.assert_array_equal(sig, cache.signals[3])
    assert src.signal(10**9)[0] is None
    # a cache built with other settings is not used
    assert not SourceArchive.resolve(dict(meta, sampling_rate=500, n_samples=5000)).available
