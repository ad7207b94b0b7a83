"""Enumerate the records of a scoring input, deterministically.

An input is one of:

- ``wfdb``: any folder, searched recursively for ``*.hea`` headers; records are
  sorted by their path relative to the folder, and that path (without extension,
  ``/``-separated) is the ``record_id``. A single record (its ``.hea``, ``.dat`` or ``.mat``
  file, or its path without extension) is a ``wfdb`` input of one record, named by its file name.
- ``manifest``: a CSV file with a ``record`` column (WFDB record path with or without
  extension, absolute or relative to the CSV's folder) and an optional id column
  (``record_id`` or ``id``, or any column named with ``id_column``); rows keep file order.
- ``ptbxl``: a PTB-XL folder (``ptbxl_database.csv``); rows sorted by ``ecg_id``, which
  is both the ``record_id`` and a source id column. The file is ``filename_lr`` for a
  100 Hz model and ``filename_hr`` (500 Hz, resampled when needed) otherwise.
- ``mimic``: a MIMIC-IV-ECG folder (``record_list.csv``); rows keep file order,
  ``record_id`` is the ``study_id``; ``subject_id`` and ``study_id`` are source id columns.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ecgproto.score.config import INPUT_KINDS
from ecgproto.errors import InputNotFoundError, UserError

_SIGNAL_EXTENSIONS = (".hea", ".dat", ".mat")


@dataclass(frozen=True)
class RecordList:
    """The records of one input, in scoring order.

    ``frame`` has columns ``record_id`` (str), the source id columns (``id_columns``,
    int64) and ``path`` (absolute WFDB record path without extension, str).
    """

    kind: str
    root: Path
    id_columns: tuple[str, ...]
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)

    def fingerprint(self) -> str:
        """sha256 of the ordered (record_id, path) pairs: identifies the input for ``--resume``."""
        digest = hashlib.sha256()
        for rid, path in zip(self.frame["record_id"], self.frame["path"]):
            digest.update(f"{rid}\t{path}\n".encode())
        return digest.hexdigest()


def detect_kind(input_path: str | Path) -> str:
    """Which kind of input ``input_path`` is (see the module docstring); raises if none fits."""
    path = Path(input_path)
    if _single_record(path) is not None:
        return "wfdb"
    if not path.exists():
        raise InputNotFoundError(f"scoring input {path} does not exist; give a WFDB folder, a manifest CSV, "
                                "a PTB-XL folder or a MIMIC-IV-ECG folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "manifest"
        raise UserError(f"scoring input {path} is a file but not a .csv manifest; give a manifest CSV with a "
                         "'record' column, or a folder of WFDB records")
    if (path / "ptbxl_database.csv").is_file():
        return "ptbxl"
    if (path / "record_list.csv").is_file():
        return "mimic"
    if next(path.rglob("*.hea"), None) is not None:
        return "wfdb"
    raise UserError(f"scoring input {path}: no ptbxl_database.csv, no record_list.csv and no .hea header "
                     "anywhere below it; give a WFDB folder, a manifest CSV, a PTB-XL or a MIMIC-IV-ECG folder")


def list_records(input_path: str | Path, sampling_rate: int, kind: str | None = None,
                 id_column: str | None = None, folds: tuple[int, ...] | None = None) -> RecordList:
    """Enumerate the records of ``input_path`` in a deterministic order.

    ``sampling_rate`` (Hz) is the model's rate: it picks PTB-XL's 100 Hz or 500 Hz files.
    ``kind`` forces one of :data:`INPUT_KINDS` (None = autodetect); ``id_column`` names
    the id column of a manifest; ``folds`` keeps only those PTB-XL ``strat_fold`` values.
    """
    path = Path(input_path)
    kind = kind or detect_kind(path)
    if kind not in INPUT_KINDS:
        raise UserError(f"unknown input kind {kind!r}; expected one of {list(INPUT_KINDS)}")
    required = {"ptbxl": path / "ptbxl_database.csv", "mimic": path / "record_list.csv"}.get(kind)
    if required is not None and not required.is_file():
        raise UserError(f"{path} is not a {kind} folder: {required.name} not found")
    if (kind == "manifest") != path.is_file() and not (kind == "wfdb" and _single_record(path) is not None):
        raise UserError(f"{path}: a {kind} input must be {'a CSV file' if kind == 'manifest' else 'a folder'}")
    if id_column is not None and kind != "manifest":
        raise UserError(f"--id-column only applies to a manifest CSV, but {path} is a {kind} input")
    if folds is not None and kind != "ptbxl":
        raise UserError(f"folds only apply to a PTB-XL folder, but {path} is a {kind} input")
    if kind == "wfdb":
        records = _wfdb_folder(path)
    elif kind == "manifest":
        records = _manifest(path, id_column)
    elif kind == "ptbxl":
        records = _ptbxl(path, sampling_rate, folds)
    else:
        records = _mimic(path)
    if len(records) == 0:
        raise UserError(f"scoring input {path} ({kind}) lists no records")
    duplicated = records.frame["record_id"].duplicated()
    if duplicated.any():
        first = records.frame.loc[duplicated, "record_id"].iloc[0]
        warnings.warn(f"{path}: {int(duplicated.sum())} duplicated record_id(s) (first: {first!r}); "
                      "each input row is still scored once", stacklevel=2)
    if "subject_id" in records.id_columns:
        subjects = records.frame.groupby("study_id")["subject_id"].nunique()
        conflicting = subjects[subjects > 1]
        if len(conflicting):
            study = int(conflicting.index[0])
            who = sorted(records.frame.loc[records.frame["study_id"] == study, "subject_id"].unique().tolist())
            warnings.warn(f"{path}: {len(conflicting)} study_id(s) listed under more than one subject_id (first: "
                          f"study {study} under subjects {who}); rows are scored as listed, but per-patient "
                          "analyses of them are wrong: fix record_list.csv", stacklevel=2)
    return records


def _strip_extension(record: str) -> str:
    for ext in _SIGNAL_EXTENSIONS:
        if record.lower().endswith(ext):
            return record[: -len(ext)]
    return record


def _single_record(path: Path) -> Path | None:
    """The record (path without extension) when ``path`` names one WFDB record: its ``.hea``/``.dat``/``.mat``
    file or the record path itself, with a header beside it; else None."""
    stem = Path(_strip_extension(str(path)))
    if path.is_dir() or not stem.with_name(stem.name + ".hea").is_file():
        return None
    return stem if (path.is_file() or path == stem) else None


def _wfdb_folder(root: Path) -> RecordList:
    record = _single_record(root)
    if record is not None:  # one record: its id is its name
        record = record.resolve()
        return RecordList("wfdb", record.parent, (), pd.DataFrame({"record_id": [record.name], "path": [str(record)]}))
    root = root.resolve()
    rel = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.hea"))
    frame = pd.DataFrame({"record_id": rel, "path": [str(root / r) for r in rel]})
    return RecordList("wfdb", root, (), frame)


def _manifest(csv_path: Path, id_column: str | None) -> RecordList:
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "record" not in table.columns:
        raise UserError(f"manifest {csv_path} has no 'record' column (columns: {list(table.columns)}); "
                         "add a 'record' column with the WFDB record path of each row")
    if id_column is None:
        id_column = next((c for c in ("record_id", "id") if c in table.columns), None)
    elif id_column not in table.columns:
        raise UserError(f"manifest {csv_path} has no id column {id_column!r} (columns: {list(table.columns)})")
    base = csv_path.resolve().parent
    records = [_strip_extension(r.strip()) for r in table["record"]]
    empty = [i for i, r in enumerate(records) if not r]
    if empty:
        raise UserError(f"manifest {csv_path}: empty 'record' value on data row(s) {[i + 1 for i in empty[:5]]}")
    paths = [str(p if (p := Path(r)).is_absolute() else (base / p)) for r in records]
    ids = list(table[id_column]) if id_column else records
    frame = pd.DataFrame({"record_id": ids, "path": paths})
    return RecordList("manifest", csv_path.resolve(), (), frame)


def _ptbxl(root: Path, sampling_rate: int, folds: tuple[int, ...] | None) -> RecordList:
    root = root.resolve()
    db = pd.read_csv(root / "ptbxl_database.csv", usecols=["ecg_id", "strat_fold", "filename_lr", "filename_hr"])
    if folds is not None:
        db = db[db["strat_fold"].isin(folds)]
    db = db.sort_values("ecg_id", kind="stable").reset_index(drop=True)
    column = "filename_lr" if sampling_rate == 100 else "filename_hr"
    frame = pd.DataFrame({
        "record_id": db["ecg_id"].astype(str),
        "ecg_id": db["ecg_id"].astype("int64"),
        "path": [str(root / f) for f in db[column]],
    })
    return RecordList("ptbxl", root, ("ecg_id",), frame)


def _mimic(root: Path) -> RecordList:
    from ecgproto.data.mimic import load_record_list

    root = root.resolve()
    table = load_record_list(root)
    frame = pd.DataFrame({
        "record_id": table["study_id"].astype(str),
        "subject_id": table["subject_id"].astype("int64"),
        "study_id": table["study_id"].astype("int64"),
        "path": table["path"].astype(str),
    })
    return RecordList("mimic", root, ("subject_id", "study_id"), frame)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n`` (shards are numbered from 0)."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise UserError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shards are numbered 0..n-1)") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (shards are numbered 0..n-1)")
    return index, count


def shard_chunks(n_records: int, chunk_size: int, shard: tuple[int, int]) -> range:
    """Global chunk numbers handled by ``shard`` = (i, n).

    The archive is cut into chunks of ``chunk_size`` consecutive records; shard i gets
    the contiguous chunk range ``[i*K//n, (i+1)*K//n)`` of the K chunks, so shard
    outputs concatenated in shard order are the full output, row for row and bit for bit
    (batches never straddle a chunk). With more shards than chunks some shards are empty.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    n_chunks = -(-n_records // chunk_size)
    index, count = shard
    return range(index * n_chunks // count, (index + 1) * n_chunks // count)
