"""Conflicting patient metadata in a PTB-XL database is kept but named: a warning and the prepare summary."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from ecgproto.data.cache import prepare_cache, summary_text
from ecgproto.data.config import DataConfig
from ecgproto.data.ptbxl import load_ptbxl, patient_conflicts

from .ptbxl_subset import copy_ptbxl_subset

IDS = [1, 2, 5, 6, 8, 9, 17, 38]


@pytest.fixture()
def conflicting(ptbxl_sample: Path, tmp_path: Path) -> Path:
    """8 real records; four conflicts written into the database, one consistent two-record patient."""
    root = tmp_path / "ptbxl"
    db = copy_ptbxl_subset(ptbxl_sample, root, {i: ("lr",) for i in IDS}).set_index("ecg_id")
    same = ["patient_id", "age", "recording_date", "strat_fold", "sex"]
    db.loc[[1, 2], same] = [[900, 40.0, "1990-01-01 10:00:00", 3, 0], [900, 40.0, "1990-02-01 10:00:00", 3, 1]]  # sexes
    db.loc[[5, 6], same] = [[901, 40.0, "1990-01-01 10:00:00", 1, 0], [901, 40.0, "1990-02-01 10:00:00", 10, 0]]  # folds
    db.loc[[8, 9], same] = [
        [902, 50.0, "1990-01-01 10:00:00", 9, 0], [902, 70.0, "1991-01-01 10:00:00", 9, 0]]  # +20 y in 1 y
    db.loc[38, "filename_lr"] = db.loc[17, "filename_lr"]  # two ecg_ids, one signal file
    db.loc[[17, 38], same] = [
        [903, 60.0, "1990-01-01 10:00:00", 9, 1], [903, 61.0, "1991-02-01 10:00:00", 9, 1]]  # consistent patient
    db.reset_index().to_csv(root / "ptbxl_database.csv", index=False)
    return root


def test_conflicts_are_named_in_a_warning(conflicting: Path) -> None:
    with pytest.warns(UserWarning, match=r"8 record\(s\) have conflicting patient metadata") as caught:
        index = load_ptbxl(conflicting)
    message = str(caught[0].message)
    for part in ("patient 900 (ecg_id 1, 2): sex differs", "patient 901 (ecg_id 5, 6): records in strat_folds [1, 10]",
                 "patient 902 (ecg_id 8, 9): ages [50.0, 70.0]", "ecg_id 17, 38): different ecg_ids read the same"):
        assert part in message, message
    assert len(index.conflicts) == 4 and index.n_conflicting_records == 8
    assert len(index.meta) == len(IDS)  # kept, not dropped


def test_consistent_patients_give_no_warning(ptbxl_sample: Path) -> None:
    meta = load_ptbxl(ptbxl_sample).meta  # real data: patients with several records, all consistent
    assert meta["patient_id"].duplicated().any()
    assert patient_conflicts(meta).empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ptbxl(ptbxl_sample)


def test_prepare_summary_counts_the_conflicting_records(conflicting: Path, tmp_path: Path) -> None:
    cfg = DataConfig(root=str(conflicting), cache_dir=str(tmp_path / "cache"), num_workers=1)
    with pytest.warns(UserWarning, match="conflicting patient metadata"):
        archive = prepare_cache(cfg)
    text = summary_text(archive)
    assert "patient metadata conflicts: 8 record(s)" in text
    listed = pd.read_csv(archive.path / "patient_conflicts.csv")
    assert sorted(listed["ecg_ids"]) == sorted(["1;2", "5;6", "8;9", "17;38"])
