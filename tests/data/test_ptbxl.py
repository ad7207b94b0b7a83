"""PTB-XL reader on the real 500-record sample, checked against ptbxl_database.csv directly."""

from __future__ import annotations

import ast
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgproto.data.labels import all_labels
from ecgproto.data.ptbxl import assign_split, load_ptbxl


@pytest.fixture(scope="module")
def raw_db(ptbxl_sample: Path) -> pd.DataFrame:
    return pd.read_csv(ptbxl_sample / "ptbxl_database.csv")


def test_label_counts_equal_scp_code_keys(ptbxl_sample: Path, raw_db: pd.DataFrame) -> None:
    index = load_ptbxl(ptbxl_sample)
    assert index.labels.shape == (500, 71) and index.labels.dtype == np.uint8
    counts = Counter(code for text in raw_db["scp_codes"] for code in ast.literal_eval(text))
    expected = np.array([counts.get(code, 0) for code in all_labels()])
    np.testing.assert_array_equal(index.labels.sum(axis=0), expected)
    assert counts["NORM"] > 0 and index.labels[:, all_labels().index("NORM")].sum() == counts["NORM"]


def test_min_likelihood_thresholds_diagnostic_statements(ptbxl_sample: Path, raw_db: pd.DataFrame) -> None:
    base = load_ptbxl(ptbxl_sample)
    strict = load_ptbxl(ptbxl_sample, min_likelihood=100)
    codes = all_labels()
    imi = codes.index("IMI")
    expected_imi = sum(ast.literal_eval(t).get("IMI", -1) >= 100 for t in raw_db["scp_codes"])
    assert strict.labels[:, imi].sum() == expected_imi < base.labels[:, imi].sum()
    sr = codes.index("SR")  # rhythm statement, likelihood always 0.0 in PTB-XL: kept
    assert strict.labels[:, sr].sum() == base.labels[:, sr].sum() > 0
    assert (strict.labels <= base.labels).all()
    with pytest.raises(ValueError, match="min_likelihood"):
        load_ptbxl(ptbxl_sample, min_likelihood=150)


def test_meta_folds_age_sex_and_paths(ptbxl_sample: Path, raw_db: pd.DataFrame) -> None:
    index = load_ptbxl(ptbxl_sample)
    meta = index.meta
    assert meta.index.name == "ecg_id" and list(meta.index) == list(raw_db["ecg_id"])
    np.testing.assert_array_equal(meta["strat_fold"], raw_db["strat_fold"])
    np.testing.assert_array_equal(meta["age"].to_numpy(), raw_db["age"].to_numpy())
    np.testing.assert_array_equal(meta["sex"].to_numpy(dtype=int), raw_db["sex"].to_numpy())
    assert meta.loc[1, "patient_id"] == 15709 and meta.loc[1, "age"] == 56 and meta.loc[1, "sex"] == 1
    assert meta.loc[4, "baseline_drift"] == ", II,III,AVF" and meta.loc[1, "baseline_drift"] == ""
    assert set(meta["strat_fold"]) == set(range(1, 11))
    split = assign_split(meta["strat_fold"])
    assert Counter(split) == {"train": int((meta["strat_fold"] <= 8).sum()), "val": int((meta["strat_fold"] == 9).sum()),
                              "test": int((meta["strat_fold"] == 10).sum())}
    paths = index.record_paths(100)
    assert paths[0] == str(ptbxl_sample.resolve() / "records100/00000/00001_lr")
    assert Path(paths[0] + ".hea").is_file() and Path(index.record_paths(500)[0] + ".dat").is_file()
    with pytest.raises(ValueError, match="100 or 500"):
        index.record_paths(250)


def test_assign_split_rejects_overlap() -> None:
    with pytest.raises(ValueError, match="both the train and val"):
        assign_split(np.array([1, 9]), train_folds=(1, 9), val_folds=(9,))
    assert list(assign_split(np.array([1, 9, 10, 11]))) == ["train", "val", "test", ""]


def _copy_meta(ptbxl_sample: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ptbxl"
    root.mkdir()
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        shutil.copy(ptbxl_sample / name, root / name)
    return root


def test_missing_and_malformed_folders(ptbxl_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ptbxl(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="ptbxl_database.csv"):
        load_ptbxl(tmp_path)
    root = _copy_meta(ptbxl_sample, tmp_path)
    (root / "scp_statements.csv").unlink()
    with pytest.raises(FileNotFoundError, match="scp_statements.csv"):
        load_ptbxl(root)
    shutil.copy(ptbxl_sample / "scp_statements.csv", root)
    db = pd.read_csv(root / "ptbxl_database.csv")
    db.drop(columns=["strat_fold"]).to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(ValueError, match=r"ptbxl_database.csv: missing column\(s\) strat_fold"):
        load_ptbxl(root)
    bad = db.copy()
    bad.loc[2, "scp_codes"] = "{'NORM': 100"
    bad.to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(ValueError, match="ecg_id 3: scp_codes"):
        load_ptbxl(root)
    bad.loc[2, "scp_codes"] = "{'XYZ': 100.0}"
    bad.to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(ValueError, match="unknown SCP code"):
        load_ptbxl(root)
