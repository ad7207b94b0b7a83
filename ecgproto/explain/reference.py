"""What a page needs besides the model: a record's reference labels, and label sets rarely seen together.

Reference labels are looked up when the record sits in a PTB-XL-layout archive (a
``ptbxl_database.csv`` up to four folders above the record whose ``filename_lr``/``filename_hr``
names it): its ``scp_codes`` (statement → likelihood). Unusual combinations are predicted label
pairs that the training labels almost never show together: observed together in at most 10 % of
the records expected if they were independent, with at least 5 expected (counts stored in the
checkpoint as ``meta["label_stats"]`` at training time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.data.ptbxl import DATABASE, parse_scp_codes
from ecgproto.data.wfdb_io import record_stem

MAX_LEVELS = 4
RARE_RATIO = 0.1
MIN_EXPECTED = 5.0


def unusual_pairs(predicted: list[str], codes: list[str], stats: dict[str, Any] | None) -> list[str]:
    """One sentence per predicted pair that training almost never showed together (see module doc)."""
    if not stats or len(predicted) < 2:
        return []
    pos = {c: i for i, c in enumerate(codes)}
    n, positives, pairs = float(stats["n"]), np.asarray(stats["positives"], float), np.asarray(stats["pairs"], float)
    out = []
    for a_i, a in enumerate(predicted):
        for b in predicted[a_i + 1:]:
            i, j = pos[a], pos[b]
            expected = positives[i] * positives[j] / max(n, 1.0)
            if expected >= MIN_EXPECTED and pairs[i, j] <= RARE_RATIO * expected:
                out.append(f"{a} and {b} are predicted together but appear together in {int(pairs[i, j])} of "
                           f"{int(n)} training records ({expected:.0f} expected if unrelated): check both")
    return out


@dataclass
class ReferenceLookup:
    """Finds PTB-XL reference labels of record paths; databases are read once per archive."""

    _databases: dict[Path, pd.DataFrame] = field(default_factory=dict)

    def _database(self, root: Path) -> pd.DataFrame:
        if root not in self._databases:
            db = pd.read_csv(root / DATABASE, usecols=["ecg_id", "scp_codes", "filename_lr", "filename_hr"])
            long = pd.concat([db[["ecg_id", "scp_codes", c]].rename(columns={c: "file"}) for c in ("filename_lr", "filename_hr")])
            self._databases[root] = long.dropna(subset=["file"]).drop_duplicates("file").set_index("file")
        return self._databases[root]

    def labels(self, record: str | Path) -> tuple[dict[str, float], str] | None:
        """(scp_codes, "PTB-XL ecg_id N (DATABASE path)") of ``record``, or None when not in a PTB-XL archive."""
        stem = Path(record_stem(str(record))).resolve()
        for root in list(stem.parents)[:MAX_LEVELS]:
            if not (root / DATABASE).is_file():
                continue
            try:
                db = self._database(root)
            except (OSError, ValueError, KeyError, pd.errors.ParserError):
                return None
            rel = stem.relative_to(root).as_posix()
            if rel in db.index:
                row = db.loc[rel]
                return parse_scp_codes(row["scp_codes"], row["ecg_id"], root / DATABASE), f"PTB-XL ecg_id {int(row['ecg_id'])} ({root / DATABASE})"
        return None


__all__ = ["ReferenceLookup", "unusual_pairs"]
