"""Chunked, resumable output of a scoring run.

Layout of ``OUT/`` while a run is in progress::

    scoring_manifest.json   run fingerprint + the chunks of this shard + those committed
    parts/scores-<chunk>.parquet, parts/scores-<chunk>.csv   (and similarities-<chunk>.parquet)

A chunk is committed by writing its part files (each to a temp file, fsynced, then
``os.replace`` and an fsync of the folder) and then rewriting the manifest the same way; a
chunk counts as done only once the manifest says so, so a kill or a power loss at any moment
loses at most the chunk in progress and never leaves half a row. A write that fails (disk
full) removes its temp file. ``OUT/.scoring.lock`` holds a POSIX lock (``lockf``) while a
run is open, so a second run on the same folder is refused; the kernel drops the lock when
the process dies, so a killed run never leaves a stale lock. ``finalize`` concatenates the parts in chunk
order into ``scores.parquet`` (one row group per chunk), ``scores.csv`` and
``similarities.parquet``, then removes ``parts/``.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ecgproto.atomic import write_atomic
from ecgproto.progress import progress
from ecgproto.errors import UserError

MANIFEST_NAME = "scoring_manifest.json"
SCORES_PARQUET = "scores.parquet"
SCORES_CSV = "scores.csv"
SIMILARITIES_PARQUET = "similarities.parquet"
LOCK_NAME = ".scoring.lock"


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, write: Callable[[Path], Any]) -> Path:
    """:func:`ecgproto.atomic.write_atomic` plus fsync of the file before the rename and of its
    folder after, so a committed file survives a power loss; the temp file is removed on failure."""
    def synced(tmp: Path) -> None:
        write(tmp)
        _fsync_path(tmp)

    write_atomic(path, synced)
    _fsync_path(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return path


def lock_folder(out_dir: Path) -> int:
    """Take the exclusive lock of ``out_dir`` (``.scoring.lock``); returns the descriptor to close.

    Raises ValueError naming the holder's pid when another run holds it. The lock is a POSIX
    record lock: forked scoring workers do not inherit it, and it vanishes with its process."""
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise UserError(f"{out_dir} is in use by another scoring run (pid {holder}, lock {path}); wait for it to "
                         "finish, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _csv_bytes(table: pa.Table, header: bool) -> bytes:
    """RFC 4180 CSV of ``table`` (strings quoted); NaN and null are empty fields."""
    columns = []
    for column in table.columns:
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        columns.append(column)
    sink = io.BytesIO()
    pcsv.write_csv(pa.table(columns, names=table.column_names), sink,
                   pcsv.WriteOptions(include_header=header, quoting_style="needed"))
    return sink.getvalue()


class ChunkStore:
    """Committed chunks of one run in ``out_dir`` (see the module docstring).

    ``fingerprint`` (plain data) identifies the run: a resumed run must match it.
    ``chunks`` are the global chunk numbers of this shard, in output order.
    """

    def __init__(self, out_dir: str | Path, fingerprint: dict, chunks: list[int], resume: bool,
                 with_similarities: bool) -> None:
        self.out_dir = Path(out_dir)
        self.parts = self.out_dir / "parts"
        self.manifest_path = self.out_dir / MANIFEST_NAME
        self.fingerprint = fingerprint
        self.chunks = list(chunks)
        self.with_similarities = with_similarities
        self.done: set[int] = set()
        self.content: dict[int, str] = {}  # chunk -> digest of its record files when committed
        self.finished = False
        self._lock: int | None = lock_folder(self.out_dir)
        try:
            self._open(resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder lock (idempotent)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _open(self, resume: bool) -> None:
        if self.manifest_path.exists():
            if not resume:
                raise UserError(f"{self.out_dir} already holds a scoring run ({MANIFEST_NAME}); pass --resume to "
                                 "continue it, or choose another --out")
            self._load()
        elif resume and (self.out_dir / SCORES_PARQUET).exists():
            raise UserError(f"{self.out_dir} has {SCORES_PARQUET} but no {MANIFEST_NAME}; cannot resume it, "
                             "choose another --out")
        self.parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def _load(self) -> None:
        saved = json.loads(self.manifest_path.read_text())
        old = saved.get("fingerprint", {})
        diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
        if diff:
            details = "; ".join(f"{k}: was {old.get(k)!r}, now {self.fingerprint.get(k)!r}" for k in diff)
            raise UserError(f"cannot --resume the run in {self.out_dir}: it was started with different settings "
                             f"({details}); rerun with the same checkpoint, input and options, or another --out")
        self.finished = bool(saved.get("finished", False))
        self.done = {c for c in saved.get("done", []) if self._parts_exist(c)} if not self.finished else set(self.chunks)
        self.content = {int(c): d for c, d in saved.get("content", {}).items() if int(c) in self.done}

    def _save(self) -> None:
        text = json.dumps({"fingerprint": self.fingerprint, "chunks": self.chunks, "done": sorted(self.done),
                           "content": {str(c): d for c, d in sorted(self.content.items())},
                           "finished": self.finished}, indent=1, sort_keys=True)
        write_durable(self.manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _part(self, kind: str, chunk: int, ext: str) -> Path:
        return self.parts / f"{kind}-{chunk:07d}.{ext}"

    def _parts_exist(self, chunk: int) -> bool:
        names = [self._part("scores", chunk, "parquet"), self._part("scores", chunk, "csv")]
        if self.with_similarities:
            names.append(self._part("similarities", chunk, "parquet"))
        return all(p.exists() for p in names)

    @property
    def pending(self) -> list[int]:
        """Chunks of this shard not yet committed, in order."""
        return [c for c in self.chunks if c not in self.done]

    def forget(self, chunks: list[int]) -> None:
        """Mark committed chunks as pending again (their records changed since)."""
        for chunk in chunks:
            self.done.discard(chunk)
            self.content.pop(chunk, None)
        self._save()

    def commit(self, chunk: int, scores: pa.Table, similarities: pa.Table | None, content: str | None = None) -> None:
        """Atomically store one finished chunk and record it (and the digest ``content`` of its record
        files) in the manifest."""
        outputs: list[tuple[Path, object]] = [(self._part("scores", chunk, "parquet"), scores),
                                              (self._part("scores", chunk, "csv"), _csv_bytes(scores, header=False))]
        if self.with_similarities:
            if similarities is None:
                raise ValueError("similarities requested but not given")
            outputs.append((self._part("similarities", chunk, "parquet"), similarities))
        for path, payload in outputs:
            if isinstance(payload, bytes):
                write_durable(path, lambda tmp, data=payload: tmp.write_bytes(data))
            else:
                write_durable(path, lambda tmp, table=payload: pq.write_table(table, tmp))
        self.done.add(chunk)
        if content is not None:
            self.content[chunk] = content
        self._save()

    def finalize(self, schema: pa.Schema, similarity_schema: pa.Schema) -> list[Path]:
        """Concatenate the committed parts (all chunks must be done) into the final files."""
        if self.finished:
            return self._final_paths()
        missing = self.pending
        if missing:
            raise RuntimeError(f"cannot finalize {self.out_dir}: chunks {missing[:5]} not committed")
        self._concat_parquet("scores", schema, self.out_dir / SCORES_PARQUET)
        if self.with_similarities:
            self._concat_parquet("similarities", similarity_schema, self.out_dir / SIMILARITIES_PARQUET)
        def write_csv(tmp: Path) -> None:
            with tmp.open("wb") as out:
                out.write(_csv_bytes(schema.empty_table(), header=True))
                for chunk in self.chunks:
                    with self._part("scores", chunk, "csv").open("rb") as part:
                        shutil.copyfileobj(part, out)

        write_durable(self.out_dir / SCORES_CSV, write_csv)
        self.finished = True
        self._save()
        shutil.rmtree(self.parts, ignore_errors=True)
        return self._final_paths()

    def _concat_parquet(self, kind: str, schema: pa.Schema, target: Path) -> None:
        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, schema) as writer:
                for chunk in progress(self.chunks, desc=f"writing {target.name}", unit="chunk"):
                    writer.write_table(pq.read_table(self._part(kind, chunk, "parquet"), schema=schema))

        write_durable(target, write)

    def _final_paths(self) -> list[Path]:
        names = [SCORES_PARQUET, SCORES_CSV] + ([SIMILARITIES_PARQUET] if self.with_similarities else [])
        return [self.out_dir / n for n in names]
