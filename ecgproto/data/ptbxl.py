"""PTB-XL v1.0.3 reader: metadata, multi-hot labels over the 71 SCP statements, folds, record paths.

Label rule (PTB-XL benchmark convention): a statement is positive when its code is a key of
``scp_codes``. With ``min_likelihood`` set, a *diagnostic* statement is positive only when its
likelihood is >= ``min_likelihood``; form- and rhythm-only statements carry no likelihood in
PTB-XL (stored as 0.0) and stay positive whenever present.

Conventions kept from PTB-XL: ``sex`` 0 = male, 1 = female; ``age`` 300 means "older than 89"
(HIPAA); quality-flag columns (``baseline_drift``, ``static_noise``, ``burst_noise``,
``electrodes_problems``, ``extra_beats``, ``pacemaker``) are strings naming the affected leads,
"" when no problem was noted.

Records whose patient's metadata disagree (:func:`patient_conflicts`: the same ``patient_id``
with different ``sex``, in more than one ``strat_fold`` (the patient would leak between
splits), or with ages that imply birth dates more than :data:`AGE_SLACK_YEARS` apart given the
``recording_date``s; or two ``ecg_id``s reading the same signal file) are kept, with a
warning naming them; :attr:`PtbxlIndex.conflicts` lists them (the cache's
``patient_conflicts.csv``). The same ``ecg_id`` twice is refused.
"""

from __future__ import annotations

import ast
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels, label_table
from ecgproto.errors import InputNotFoundError, UserError

DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"
REQUIRED_COLUMNS = ("ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
QUALITY_COLUMNS = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems", "extra_beats", "pacemaker")
SPLITS = ("train", "val", "test")
RATES = {100: "filename_lr", 500: "filename_hr"}  # Hz → database column of the record files
AGE_SLACK_YEARS = 2.0  # implied birth dates of one patient may differ by this much (ages are whole years)
HIPAA_AGE = 300  # PTB-XL's age for "older than 89"
CONFLICT_COLUMNS = ("patient_id", "ecg_ids", "reason")


@dataclass(frozen=True)
class PtbxlIndex:
    """A PTB-XL folder read into memory.

    ``meta``: DataFrame indexed by ``ecg_id`` (N rows, database order) with patient_id, age, sex,
    strat_fold, filename_lr, filename_hr, scp_codes (dict code → likelihood), the quality flags and
    the other database columns. ``labels``: (N, 71) uint8 in ``all_labels()`` order. ``root``: folder.
    ``conflicts``: :func:`patient_conflicts` of ``meta`` (no rows when the metadata agree).
    """

    root: Path
    meta: pd.DataFrame
    labels: np.ndarray
    conflicts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CONFLICT_COLUMNS)))

    @property
    def n_conflicting_records(self) -> int:
        """Records named by at least one conflict."""
        return len({e for ids in self.conflicts["ecg_ids"] for e in str(ids).split(";")})

    @property
    def codes(self) -> tuple[str, ...]:
        return all_labels()

    def record_paths(self, source_rate: int) -> list[str]:
        """Absolute record paths (no extension) of the 100 Hz (``filename_lr``) or 500 Hz (``filename_hr``) files."""
        column = RATES.get(source_rate)
        if column is None:
            raise UserError(f"PTB-XL ships records at 100 or 500 Hz, not {source_rate} Hz")
        return [str(self.root / rel) for rel in self.meta[column]]

    def record_files(self, preferred_rate: int) -> tuple[list[str], np.ndarray]:
        """Which file to read per record: paths (no extension) and their rates, (N,) int64 Hz.

        The ``preferred_rate`` file (100 or 500 Hz) where its ``.hea`` exists, else the other rate's
        where that exists; where neither exists the preferred path with rate 0.
        """
        other_rate = other_rate_of(preferred_rate)
        paths = self.record_paths(preferred_rate)
        rates = np.full(len(paths), preferred_rate, dtype=np.int64)
        for i, other in enumerate(self.record_paths(other_rate)):
            if not os.path.isfile(paths[i] + ".hea"):
                if os.path.isfile(other + ".hea"):
                    paths[i], rates[i] = other, other_rate
                else:
                    rates[i] = 0
        return paths, rates


def other_rate_of(rate: int) -> int:
    """The other PTB-XL file rate: 500 for 100 Hz, 100 for 500 Hz."""
    if rate not in RATES:
        raise UserError(f"PTB-XL ships records at 100 or 500 Hz, not {rate} Hz")
    return 500 if rate == 100 else 100


def assign_split(
    strat_fold: pd.Series | np.ndarray,
    train_folds: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8),
    val_folds: tuple[int, ...] = (9,),
    test_folds: tuple[int, ...] = (10,),
) -> np.ndarray:
    """Map each fold number to "train"/"val"/"test" ("" for a fold in none of them). Folds must not overlap."""
    sets = {"train": set(train_folds), "val": set(val_folds), "test": set(test_folds)}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if sets[a] & sets[b]:
            raise UserError(f"folds {sorted(sets[a] & sets[b])} are in both the {a} and {b} splits; check data.*_folds")
    folds = np.asarray(strat_fold)
    out = np.full(folds.shape, "", dtype=object)
    for name, members in sets.items():
        out[np.isin(folds, list(members))] = name
    return out


def parse_scp_codes(text: object, ecg_id: object, path: Path) -> dict[str, float]:
    """``scp_codes`` text of one database row → {code: likelihood}; ValueError naming the row otherwise."""
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise UserError(f"{path}: ecg_id {ecg_id}: scp_codes {text!r} is not a dict literal") from exc
    if not isinstance(value, dict):
        raise UserError(f"{path}: ecg_id {ecg_id}: scp_codes {text!r} is not a dict literal")
    return {str(k): float(v) for k, v in value.items()}


def _check_statements(path: Path) -> None:
    if not path.is_file():
        raise InputNotFoundError(f"{path} not found: a PTB-XL folder holds ptbxl_database.csv and scp_statements.csv")
    try:
        statements = pd.read_csv(path, index_col=0)
    except Exception as exc:
        raise UserError(f"{path}: cannot read as CSV ({exc})") from exc
    missing = sorted(set(all_labels()) - set(map(str, statements.index)))
    if missing:
        raise UserError(f"{path}: SCP statement(s) {', '.join(missing)} missing; expected the 71 PTB-XL v1.0.3 statements")


def labels_from_codes(scp_codes: list[dict[str, float]], min_likelihood: float | None = None,
                      where: str = "scp_codes") -> np.ndarray:
    """Multi-hot (N, 71) uint8 from parsed ``scp_codes`` dicts (rule in the module docstring)."""
    codes = all_labels()
    column = {c: i for i, c in enumerate(codes)}
    diagnostic = set(label_table().frame.loc[label_table().frame["diagnostic"] == 1, "code"])
    labels = np.zeros((len(scp_codes), len(codes)), dtype=np.uint8)
    unknown: set[str] = set()
    for row, item in enumerate(scp_codes):
        for code, likelihood in item.items():
            if code not in column:
                unknown.add(code)
                continue
            if min_likelihood is not None and code in diagnostic and likelihood < min_likelihood:
                continue
            labels[row, column[code]] = 1
    if unknown:
        raise UserError(f"{where}: unknown SCP code(s) {', '.join(sorted(unknown))}; expected PTB-XL v1.0.3 statements")
    return labels


def load_ptbxl(root: str | Path, min_likelihood: float | None = None) -> PtbxlIndex:
    """Read ``root/ptbxl_database.csv`` (+ check ``scp_statements.csv``) into a :class:`PtbxlIndex`.

    Raises FileNotFoundError for a missing folder/file and ValueError for a malformed one
    (the message names the file, the column or the ecg_id).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputNotFoundError(f"PTB-XL folder {root} does not exist; pass the folder holding ptbxl_database.csv")
    db_path = root / DATABASE
    if not db_path.is_file():
        raise InputNotFoundError(f"{db_path} not found: {root} is not a PTB-XL v1.0.3 folder")
    _check_statements(root / STATEMENTS)
    try:
        meta = pd.read_csv(db_path)
    except Exception as exc:
        raise UserError(f"{db_path}: cannot read as CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
    if missing:
        raise UserError(f"{db_path}: missing column(s) {', '.join(missing)}")
    if meta["ecg_id"].duplicated().any():
        dup = meta.loc[meta["ecg_id"].duplicated(), "ecg_id"].iloc[0]
        raise UserError(f"{db_path}: ecg_id {dup} appears more than once")
    for col in ("ecg_id", "strat_fold"):
        if meta[col].isna().any() or not pd.api.types.is_numeric_dtype(meta[col]):
            raise UserError(f"{db_path}: column {col} must hold integers for every row")
    if min_likelihood is not None and not 0 <= min_likelihood <= 100:
        raise UserError(f"min_likelihood must lie in [0, 100] (PTB-XL likelihoods are percentages), got {min_likelihood}")
    meta["ecg_id"] = meta["ecg_id"].astype(np.int64)
    meta["strat_fold"] = meta["strat_fold"].astype(np.int64)
    meta["patient_id"] = pd.to_numeric(meta["patient_id"], errors="coerce").astype("Int64")
    meta["age"] = pd.to_numeric(meta["age"], errors="coerce").astype(np.float64)
    meta["sex"] = pd.to_numeric(meta["sex"], errors="coerce").astype("Int64")
    meta["scp_codes"] = [parse_scp_codes(t, e, db_path) for t, e in zip(meta["scp_codes"], meta["ecg_id"])]
    for col in QUALITY_COLUMNS:
        if col in meta.columns:
            meta[col] = meta[col].astype("string").fillna("").astype(str).str.strip()
    labels = labels_from_codes(list(meta["scp_codes"]), min_likelihood, where=str(db_path))
    meta = meta.set_index("ecg_id", drop=True)
    conflicts = patient_conflicts(meta)
    if len(conflicts):
        index = PtbxlIndex(root=root, meta=meta, labels=labels, conflicts=conflicts)
        shown = "; ".join(f"patient {r.patient_id} (ecg_id {r.ecg_ids.replace(';', ', ')}): {r.reason}"
                          for r in conflicts.head(5).itertuples())
        more = f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        warnings.warn(f"{db_path}: {index.n_conflicting_records} record(s) have conflicting patient metadata, kept as "
                      f"they are: {shown}{more}", stacklevel=2)
        return index
    return PtbxlIndex(root=root, meta=meta, labels=labels, conflicts=conflicts)


def _ids(ecg_ids) -> str:
    return ";".join(str(int(e)) for e in sorted(ecg_ids))


def patient_conflicts(meta: pd.DataFrame) -> pd.DataFrame:
    """Records whose patient's metadata disagree (module docstring), from ``meta`` indexed by ecg_id.

    One row per conflict with columns ``patient_id``, ``ecg_ids`` (the records involved,
    ';'-joined) and ``reason``; ``patient_id`` is None for records sharing a signal file.
    """
    rows: list[tuple] = []
    frame = meta.reset_index()
    multi = frame[frame["patient_id"].notna() & frame["patient_id"].duplicated(keep=False)]  # patients with 2+ records
    if len(multi):
        by = multi.groupby("patient_id", sort=True)
        sexes = by["sex"].nunique(dropna=True)
        folds = by["strat_fold"].nunique(dropna=True)
        for pid in sexes.index[sexes > 1]:
            g = by.get_group(pid)
            rows.append((int(pid), _ids(g["ecg_id"]), f"sex differs ({', '.join(map(str, sorted(g['sex'].dropna().unique())))})"))
        for pid in folds.index[folds > 1]:
            g = by.get_group(pid)
            rows.append((int(pid), _ids(g["ecg_id"]), f"records in strat_folds {sorted(g['strat_fold'].unique().tolist())}: "
                                                        "the patient is in more than one fold"))
        if "recording_date" in multi.columns:
            date = pd.to_datetime(multi["recording_date"], errors="coerce")
            years = date.dt.year + (date.dt.day_of_year - 1) / 365.25
            birth = (years - multi["age"]).where((multi["age"] < HIPAA_AGE) & multi["age"].notna())
            per_patient = birth.groupby(multi["patient_id"])
            spread = (per_patient.max() - per_patient.min()).where(per_patient.count() > 1, 0.0)
            for pid in spread.index[spread > AGE_SLACK_YEARS]:
                g = by.get_group(pid)
                rows.append((int(pid), _ids(g["ecg_id"]), f"ages {sorted(g['age'].tolist())} do not fit the recording "
                                                            f"dates (implied birth dates {spread[pid]:.1f} years apart)"))
    for column in RATES.values():
        shared = frame[frame[column].duplicated(keep=False) & frame[column].notna()]
        for name, g in shared.groupby(column, sort=True):
            rows.append((None, _ids(g["ecg_id"]), f"different ecg_ids read the same signal file {name}"))
    out = pd.DataFrame(rows, columns=list(CONFLICT_COLUMNS))
    out["patient_id"] = out["patient_id"].astype("Int64")
    return out.sort_values(["patient_id", "ecg_ids"], kind="stable", na_position="last").reset_index(drop=True)
