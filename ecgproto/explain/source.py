"""Read records the way a checkpoint expects, and prototypes' source training ECGs by ecg_id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.data.preprocess import Preprocessing
from ecgproto.errors import InputNotFoundError

DATABASE = "ptbxl_database.csv"


def _ptbxl_root(path: Path) -> Path | None:
    """``path`` if it holds ptbxl_database.csv, or its ``ptbxl/`` sub-folder (synthetic archive layout)."""
    for cand in (path, path / "ptbxl"):
        if (cand / DATABASE).is_file():
            return cand
    return None


def _training_cache(meta: dict[str, Any]) -> Any:
    """The prepared cache the checkpoint was trained on (``data.cache_dir``/key[:16]) if it is still here."""
    from ecgproto.data.cache import open_cache

    key = meta.get("data_key")
    cache_dir = ((meta.get("config") or {}).get("data") or {}).get("cache_dir")
    if not key or not cache_dir:
        return None
    folder = Path(cache_dir).expanduser() / str(key)[:16]
    try:
        cache = open_cache(folder)
    except (OSError, ValueError):
        return None
    if cache.key != key or cache.fs != Preprocessing.from_meta(meta).fs or cache.signals.shape[-1] != int(meta["n_samples"]):
        return None
    return cache


@dataclass
class SourceArchive:
    """Training archive (PTB-XL layout) holding the prototypes' source ECGs.

    Source ECGs are read from ``root`` (the user's ``--source-data`` or the training
    archive path stored in the checkpoint); when that folder is gone, from the prepared
    training cache if it is still present. ``reason`` says why ``root`` is unavailable.
    """

    root: Path | None
    prep: Preprocessing
    reason: str = ""
    cache: Any = None  # CachedArchive of the training data, used when ``root`` is unavailable
    _db: pd.DataFrame | None = field(default=None, repr=False)
    _cache: dict[int, tuple[np.ndarray | None, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def resolve(cls, meta: dict[str, Any], override: str | Path | None = None) -> SourceArchive:
        """The folder given by the user (``--source-data``) or the one stored in the checkpoint config."""
        prep = Preprocessing.from_meta(meta)
        if override is not None:
            root = _ptbxl_root(Path(override).expanduser())
            if root is None:
                raise InputNotFoundError(
                    f"--source-data {override}: no {DATABASE} there (nor in its ptbxl/ sub-folder); "
                    "pass the PTB-XL folder the checkpoint was trained on"
                )
            return cls(root.resolve(), prep)
        data = (meta.get("config") or {}).get("data") or {}
        stored = str(data.get("root") or "")
        root = _ptbxl_root(Path(stored).expanduser()) if stored else None
        if root is not None:
            return cls(root.resolve(), prep)
        cache = _training_cache(meta)
        if stored:
            reason = f"the training archive stored in the checkpoint ({stored}) is not available here; pass --source-data PTBXL_FOLDER"
        else:
            reason = "the checkpoint does not record its training archive; pass --source-data PTBXL_FOLDER"
        return cls(None, prep, reason, cache)

    @property
    def available(self) -> bool:
        return self.root is not None or self.cache is not None

    def _database(self) -> pd.DataFrame:
        if self._db is None:
            assert self.root is not None
            self._db = pd.read_csv(self.root / DATABASE, usecols=["ecg_id", "filename_lr", "filename_hr"]).set_index("ecg_id")
        return self._db

    def signal(self, ecg_id: int) -> tuple[np.ndarray | None, str]:
        """(signal (12, T) float32 mV preprocessed like the model input, or None; message when None)."""
        ecg_id = int(ecg_id)
        if ecg_id in self._cache:
            return self._cache[ecg_id]
        if self.root is None and self.cache is not None:
            rows = np.flatnonzero(self.cache.index["ecg_id"].to_numpy() == ecg_id)
            out: tuple[np.ndarray | None, str] = (
                (np.asarray(self.cache.signals[rows[0]], dtype=np.float32), "") if len(rows)
                else (None, f"ecg_id {ecg_id} is not in the training cache {self.cache.path}"))
        elif self.root is None:
            out = (None, self.reason)
        elif ecg_id not in self._database().index:
            out = (None, f"ecg_id {ecg_id} is not in {self.root / DATABASE}; is this the archive the checkpoint was trained on?")
        else:
            row = self._database().loc[ecg_id]
            names = ["filename_lr", "filename_hr"] if self.prep.fs <= 100 else ["filename_hr", "filename_lr"]
            files = [str(row[n]) for n in names if isinstance(row[n], str) and row[n]]
            existing = [f for f in files if (self.root / f).with_suffix(".hea").is_file()] or files
            if not existing:
                out = (None, f"ecg_id {ecg_id} has no filename in {self.root / DATABASE}")
            else:
                res = self.prep.read(self.root / existing[0])
                out = (res.signal, "") if res.status == "ok" else (None, f"source ECG {ecg_id}: {res.status}: {res.message}")
        self._cache[ecg_id] = out
        return out
