"""A MIMIC-IV-ECG record list that files one study under two patients is warned about."""

import pandas as pd
import pytest

from ecgproto.score.sources import list_records


def test_study_under_two_subjects_warns(tmp_path):
    pd.DataFrame({"subject_id": [10, 11, 12], "study_id": [500, 500, 501], "ecg_time": ["2180-01-01 10:00:00"] * 3,
                  "path": ["files/a/500", "files/b/500", "files/c/501"]}).to_csv(tmp_path / "record_list.csv", index=False)
    with pytest.warns(UserWarning, match=r"study 500 under subjects \[10, 11\]"):
        records = list_records(tmp_path, 100)
    assert len(records) == 3
