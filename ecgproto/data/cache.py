"""Read a PTB-XL-shaped archive once and cache it as a memory-mapped float32 array.

Layout of ``<cache_dir>/<key[:16]>/``:

- ``signals.npy``  (N, 12, T) float32 mV, high-passed, NOT standardised; opened with ``mmap_mode="r"``
- ``labels.npy``   (N, 71) uint8 in ``all_labels()`` order
- ``records.parquet`` every record of the archive: ecg_id, patient_id, age, sex, strat_fold, split,
  path, source_fs, status, message, row (row in ``signals``; -1 for a record that failed validation)
- ``rejected.csv``  only the records that failed validation (status + message), for people
- ``meta.json``     key, the settings and input fingerprint it was computed from, counts by status,
  standardisation statistics fitted on the training rows

Each record is read from its file at :func:`source_rate` (``filename_lr`` for 100 Hz, else
``filename_hr``); when that file's header is missing but the other rate's exists, the other file is
read and resampled to ``data.sampling_rate`` by :func:`~ecgproto.data.wfdb_io.read_records` (exactly
:func:`~ecgproto.data.wfdb_io.read_record` of each record, a chunk at a time).
``source_fs`` records the rate of the file read (100 or 500 Hz; 0 when neither exists).

The key is the sha256 of the input file list (relative path, size, mtime of the two CSV files and
every record file read, so a file appearing at the preferred rate gives a new key) + the
preprocessing settings + the package and cache-format versions.
A cache is reused only when its stored key equals the recomputed one. It is written into a
temporary folder that is renamed into place, so a cache folder is either complete or absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto import __version__
from ecgproto.data.config import DataConfig
from ecgproto.data.labels import all_labels
from ecgproto.data.preprocess import fit_standardization, highpass
from ecgproto.data.ptbxl import (DATABASE, QUALITY_COLUMNS, RATES, SPLITS, STATEMENTS, PtbxlIndex, assign_split,
                                 load_ptbxl, other_rate_of)
from ecgproto.data.wfdb_io import LEADS, read_records
from ecgproto.progress import progress
from ecgproto.errors import InputNotFoundError, UserError

CACHE_FORMAT = 3  # 2: records.parquet gained source_fs, meta.json n_other_rate; 3: reader statuses bad_sampling_rate, implausible_scale
CHUNK = 32  # records per worker task


@dataclass(frozen=True)
class CachedArchive:
    """A prepared archive. ``signals``/``labels``/``index`` rows are aligned (validated records only)."""

    path: Path
    signals: np.ndarray  # (N, 12, T) float32 np.memmap, mV, high-passed
    labels: np.ndarray  # (N, 71) uint8
    index: pd.DataFrame  # N rows: ecg_id, patient_id, age, sex, strat_fold, split, path, ...
    records: pd.DataFrame  # every record of the archive with its status (row -1 when rejected)
    fs: int
    key: str
    standardization: dict[str, list[float]] | None  # fitted on the train split; None unless data.standardize
    meta: dict[str, Any]
    reused: bool = False  # True when prepare_cache found a cache with the same key

    def rows(self, split: str) -> np.ndarray:
        """Row indices (ascending int64) of ``split`` in {"train", "val", "test"}."""
        return np.flatnonzero(self.index["split"].to_numpy() == split).astype(np.int64)


def resolve_ptbxl_root(cfg: DataConfig, root: str | Path | None = None) -> Path:
    """The PTB-XL-shaped folder to read: ``root`` or ``cfg.root``; for ``source: synthetic`` its ``ptbxl/``."""
    given = root if root is not None else cfg.root
    if not given:
        raise UserError("no data folder given: set data.root in the config (or --set data.root=PATH) or pass --root")
    path = Path(given).expanduser()
    if cfg.source == "synthetic" and not (path / DATABASE).is_file() and (path / "ptbxl" / DATABASE).is_file():
        return path / "ptbxl"
    return path


def source_rate(sampling_rate: int) -> int:
    """Which PTB-XL files to read for a model rate: 100 Hz files up to 100 Hz, else the 500 Hz files."""
    if sampling_rate <= 0:
        raise UserError(f"data.sampling_rate must be positive, got {sampling_rate}")
    return 100 if sampling_rate <= 100 else 500


def _settings(cfg: DataConfig) -> dict[str, Any]:
    return {
        "sampling_rate": cfg.sampling_rate, "source_rate": source_rate(cfg.sampling_rate),
        "n_samples": n_samples_of(cfg), "min_likelihood": cfg.min_likelihood,
        "highpass_hz": cfg.highpass_hz, "highpass_order": cfg.highpass_order, "highpass_edge": cfg.highpass_edge,
        "standardize": cfg.standardize,
        "train_folds": list(cfg.train_folds), "val_folds": list(cfg.val_folds), "test_folds": list(cfg.test_folds),
        "leads": list(LEADS), "labels": list(all_labels()), "package_version": __version__, "cache_format": CACHE_FORMAT,
    }


def n_samples_of(cfg: DataConfig) -> int:
    """Samples per record at the model rate: round(duration_s × sampling_rate)."""
    n = int(round(cfg.duration_s * cfg.sampling_rate))
    if n <= 0:
        raise UserError(f"data.duration_s × data.sampling_rate must be positive, got {n}")
    return n


def _fingerprint(root: Path, record_paths: list[str]) -> str:
    """sha256 of (relative path, size, mtime_ns) of the CSVs and every file of every record."""
    digest = hashlib.sha256()
    files = [root / DATABASE, root / STATEMENTS]
    for stem in record_paths:
        folder, name = os.path.split(stem)
        files.extend(Path(folder) / (name + ext) for ext in (".hea", ".dat", ".mat"))
    for path in files:
        try:
            st = path.stat()
            entry = f"{os.path.relpath(path, root)}\t{st.st_size}\t{st.st_mtime_ns}\n"
        except FileNotFoundError:
            entry = f"{os.path.relpath(path, root)}\tabsent\n"
        digest.update(entry.encode())
    return digest.hexdigest()


def cache_key(cfg: DataConfig, root: Path, record_paths: list[str]) -> str:
    """sha256 of the settings (incl. package version) and the input fingerprint."""
    payload = json.dumps({"settings": _settings(cfg), "inputs": _fingerprint(root, record_paths)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_chunk(paths: list[str], fs: int, n_samples: int, cutoff_hz: float, order: int, edge: str
                ) -> tuple[np.ndarray, list[str], list[str]]:
    """Worker: read + validate + high-pass a list of records. Returns (signals (k,12,T) float32, statuses, messages)."""
    out = np.zeros((len(paths), len(LEADS), n_samples), dtype=np.float32)
    statuses, messages = [], []
    for i, result in enumerate(read_records(paths, fs, n_samples)):
        statuses.append(result.status)
        messages.append(result.message)
        if result.signal is not None:
            out[i] = highpass(result.signal, fs, cutoff_hz, order, edge)
    return out, statuses, messages


def _read_all(paths: list[str], cfg: DataConfig, n_samples: int, target: np.ndarray) -> tuple[list[str], list[str]]:
    """Fill ``target`` (N,12,T) in record order; worker processes when data.num_workers > 1."""
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    args = [[a] * len(chunks) for a in (cfg.sampling_rate, n_samples, cfg.highpass_hz, cfg.highpass_order, cfg.highpass_edge)]
    statuses: list[str] = []
    messages: list[str] = []
    pool = ProcessPoolExecutor(max_workers=cfg.num_workers) if cfg.num_workers > 1 and len(chunks) > 1 else None
    try:
        results = pool.map(_read_chunk, chunks, *args) if pool else map(_read_chunk, chunks, *args)
        desc = f"prepare: reading {len(paths)} records ({CHUNK}/chunk)"
        for signals, st, msg in progress(results, desc=desc, total=len(chunks), unit="chunk"):
            target[len(statuses):len(statuses) + len(st)] = signals
            statuses.extend(st)
            messages.extend(msg)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return statuses, messages


def _stored_key(folder: Path) -> str | None:
    """Key recorded in ``folder/meta.json``; None when absent or unreadable (the cache is rebuilt)."""
    try:
        return json.loads((folder / "meta.json").read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def prepare_cache(cfg: DataConfig, root: str | Path | None = None, *, force: bool = False) -> CachedArchive:
    """Read, validate, high-pass and cache the PTB-XL-shaped archive at ``root`` (default ``cfg.root``).

    Returns the existing cache when its key matches (unless ``force``). Records that fail
    validation are kept in ``records`` with their status and left out of ``signals``.
    """
    root = resolve_ptbxl_root(cfg, root)
    ptbxl = load_ptbxl(root, cfg.min_likelihood)
    root = ptbxl.root
    n_samples = n_samples_of(cfg)
    split = assign_split(ptbxl.meta["strat_fold"], cfg.train_folds, cfg.val_folds, cfg.test_folds)
    paths, file_rates = ptbxl.record_files(source_rate(cfg.sampling_rate))
    key = cache_key(cfg, root, paths)
    cache_root = Path(cfg.cache_dir).expanduser()
    final = cache_root / key[:16]
    if not force and _stored_key(final) == key:
        return dataclasses.replace(open_cache(final), reused=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=cache_root))
    try:
        _write_cache(tmp, cfg, ptbxl, split, paths, file_rates, n_samples, key)
        _move_into_place(tmp, final, key, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded
    return open_cache(final)


def _move_into_place(tmp: Path, final: Path, key: str, force: bool) -> None:
    """Rename ``tmp`` to ``final``. A complete cache with the same key written meanwhile by another
    process (e.g. a second training rank) is kept and ``tmp`` discarded; a stale one is replaced."""
    for _ in range(3):
        if final.exists():
            if _stored_key(final) == key and not force:
                return
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
            return
        except OSError:  # another process renamed its copy in between: look again
            continue
    raise OSError(f"could not move the new cache {tmp} to {final}; is another process writing it?")


def _no_file_message(ptbxl: PtbxlIndex, i: int) -> str:
    """Why record ``i`` (row of ``ptbxl.meta``) has no file to read at either rate."""
    row = ptbxl.meta.iloc[i]
    return (f"ecg_id {ptbxl.meta.index[i]}: neither {row['filename_lr']}.hea (100 Hz) nor {row['filename_hr']}.hea "
            f"(500 Hz) exists in {ptbxl.root}; download the record or remove it from {DATABASE}")


def _write_cache(tmp: Path, cfg: DataConfig, ptbxl: PtbxlIndex, split: np.ndarray, paths: list[str],
                 file_rates: np.ndarray, n_samples: int, key: str) -> dict[str, Any]:
    started = time.time()
    n = len(paths)
    full = np.lib.format.open_memmap(tmp / "all.npy", mode="w+", dtype=np.float32, shape=(n, len(LEADS), n_samples))
    statuses, messages = _read_all(paths, cfg, n_samples, full)
    for i in np.flatnonzero(file_rates == 0):
        messages[i] = _no_file_message(ptbxl, i)
    ok = np.array([s == "ok" for s in statuses], dtype=bool)
    ok_rows = np.flatnonzero(ok)
    if ok.all():
        full.flush()
        del full
        os.replace(tmp / "all.npy", tmp / "signals.npy")
    else:
        signals = np.lib.format.open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32,
                                            shape=(len(ok_rows), len(LEADS), n_samples))
        for start in range(0, len(ok_rows), 1024):
            signals[start:start + 1024] = full[ok_rows[start:start + 1024]]
        signals.flush()
        del signals, full
        (tmp / "all.npy").unlink()
    np.save(tmp / "labels.npy", ptbxl.labels[ok_rows])

    meta_df = ptbxl.meta
    records = pd.DataFrame({
        "ecg_id": meta_df.index.to_numpy(dtype=np.int64),
        "patient_id": meta_df["patient_id"].to_numpy(),
        "age": meta_df["age"].to_numpy(dtype=np.float64),
        "sex": meta_df["sex"].to_numpy(),
        "strat_fold": meta_df["strat_fold"].to_numpy(dtype=np.int64),
        "split": split.astype(str),
        "path": [os.path.relpath(p, ptbxl.root) for p in paths],
        "source_fs": file_rates,
        "status": statuses,
        "message": messages,
    })
    for col in QUALITY_COLUMNS:
        if col in meta_df.columns:
            records[col] = meta_df[col].to_numpy()
    row = np.full(n, -1, dtype=np.int64)
    row[ok_rows] = np.arange(len(ok_rows))
    records["row"] = row
    records.to_parquet(tmp / "records.parquet", index=False)
    rejected = records[~ok]
    if len(rejected):
        rejected[["ecg_id", "path", "status", "message"]].to_csv(tmp / "rejected.csv", index=False)
    if len(ptbxl.conflicts):  # kept, but named (load_ptbxl warned about them)
        ptbxl.conflicts.to_csv(tmp / "patient_conflicts.csv", index=False)

    signals = np.load(tmp / "signals.npy", mmap_mode="r")
    train_rows = np.flatnonzero(records.loc[ok, "split"].to_numpy() == "train")
    stats = fit_standardization(signals[train_rows]) if len(train_rows) else None
    del signals
    meta = {
        "key": key,
        "settings": _settings(cfg),
        "source_root": str(ptbxl.root),
        "package_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        "fs": cfg.sampling_rate,
        "n_samples": n_samples,
        "n_records": n,
        "n_ok": int(ok.sum()),
        "status_counts": dict(Counter(statuses)),
        "split_counts": dict(Counter(records.loc[ok, "split"])),
        "n_other_rate": int((ok & (file_rates == other_rate_of(source_rate(cfg.sampling_rate)))).sum()),
        "n_conflicting_records": ptbxl.n_conflicting_records,
        "standardize": cfg.standardize,
        "standardization_train": stats,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def open_cache(path: str | Path) -> CachedArchive:
    """Open a prepared cache folder (signals memory-mapped read-only)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise InputNotFoundError(f"{meta_path} not found: {path} is not an ecgproto cache; run `ecgproto prepare` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("settings", {}).get("cache_format") != CACHE_FORMAT:
        raise UserError(f"{meta_path}: cache format differs from this ecgproto version; run `ecgproto prepare` again")
    signals = np.load(path / "signals.npy", mmap_mode="r")
    labels = np.load(path / "labels.npy")
    records = pd.read_parquet(path / "records.parquet")
    index = records[records["row"] >= 0].sort_values("row").reset_index(drop=True)
    if len(index) != signals.shape[0] or len(labels) != signals.shape[0]:
        raise UserError(f"{path}: signals ({signals.shape[0]}), labels ({len(labels)}) and index ({len(index)}) "
                         "disagree; delete the folder and run `ecgproto prepare` again")
    standardization = meta["standardization_train"] if meta.get("standardize") else None
    return CachedArchive(path=path, signals=signals, labels=labels, index=index, records=records,
                         fs=int(meta["fs"]), key=meta["key"], standardization=standardization, meta=meta)


def summary_text(archive: CachedArchive) -> str:
    """What a prepared archive holds, for people: records used per split, excluded per status, other-rate reads."""
    meta = archive.meta
    verb = "reused" if archive.reused else f"written in {meta['seconds']:.1f} s"
    counts = meta["split_counts"]
    used = [f"{name} {counts.get(name, 0)}" for name in SPLITS]
    if counts.get(""):
        used.append(f"in no split {counts['']}")
    lines = [
        f"cache {archive.path} ({verb}); key {archive.key}",
        f"records: {meta['n_records']} read, {meta['n_ok']} cached as ({meta['n_ok']}, {len(LEADS)}, "
        f"{meta['n_samples']}) float32 at {archive.fs} Hz",
        "used per split: " + ", ".join(used),
    ]
    excluded = {k: v for k, v in meta["status_counts"].items() if k != "ok"}
    if excluded:
        lines.append(f"excluded (listed with reasons in {archive.path / 'rejected.csv'}): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(excluded.items())))
    if meta["n_other_rate"]:
        preferred = meta["settings"]["source_rate"]
        other = other_rate_of(preferred)
        lines.append(f"other rate: {meta['n_other_rate']} record(s) had no {preferred} Hz file ({RATES[preferred]}) "
                     f"and were read from the {other} Hz file ({RATES[other]}), resampled to {archive.fs} Hz "
                     "(column source_fs in records.parquet)")
    if meta.get("n_conflicting_records"):
        lines.append(f"patient metadata conflicts: {meta['n_conflicting_records']} record(s) kept with conflicting "
                     f"patient metadata (listed in {archive.path / 'patient_conflicts.csv'})")
    return "\n".join(lines)
