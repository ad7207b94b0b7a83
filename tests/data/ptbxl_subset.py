"""A small PTB-XL-shaped folder copied from the real sample (for the reader and cache tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd


def copy_ptbxl_subset(sample: Path, root: Path, files: dict[int, tuple[str, ...]]) -> pd.DataFrame:
    """Copy the CSVs (rows of ``files``' ecg_ids) and, per ecg_id, the records of the given rates
    (``"lr"`` 100 Hz, ``"hr"`` 500 Hz) from ``sample`` into ``root``; returns the database rows."""
    root.mkdir(parents=True)
    shutil.copy(sample / "scp_statements.csv", root)
    db = pd.read_csv(sample / "ptbxl_database.csv")
    db = db[db["ecg_id"].isin(list(files))]
    db.to_csv(root / "ptbxl_database.csv", index=False)
    for row in db.itertuples():
        for rate in files[row.ecg_id]:
            rel = getattr(row, f"filename_{rate}")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            for ext in (".hea", ".dat"):
                shutil.copy(sample / (rel + ext), root / (rel + ext))
    return db
