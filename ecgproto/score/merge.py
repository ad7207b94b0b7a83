"""Merge the ``--shard i/n`` outputs of one scoring job into the unsharded output.

``ecgproto merge SHARD_DIR... --out OUT`` checks, before writing anything, that the folders
are the finished shards of one job — the same checkpoint, input, records and options (the
run fingerprint of ``scoring_manifest.json`` apart from ``shard``), every shard 0..n-1 exactly
once, their chunks disjoint and together every chunk of the archive, each ``scores.parquet``
holding the rows of its chunks — and then concatenates them in shard order into
``scores.parquet`` (one row group per chunk, as an unsharded run writes it), ``scores.csv``
and ``similarities.parquet`` (when the shards saved similarities), so the merged folder equals
an unsharded run's output row for row. ``summary.json`` gives the counts by status and the
shards merged; ``scoring_manifest.json`` records the job as one finished, unsharded run.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ecgproto.atomic import write_json_atomic
from ecgproto.errors import InputNotFoundError, UserError
from ecgproto.score.sources import shard_chunks
from ecgproto.score.store import (
    MANIFEST_NAME,
    SCORES_CSV,
    SCORES_PARQUET,
    SIMILARITIES_PARQUET,
    lock_folder,
    write_durable,
)

SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class Shard:
    """One shard folder and what its manifest says."""

    folder: Path
    index: int
    count: int
    chunks: tuple[int, ...]
    fingerprint: dict


@dataclass
class MergeSummary:
    """What the merge wrote (also ``OUT/summary.json``)."""

    n_records: int
    status_counts: dict[str, int]
    n_shards: int
    chunks_total: int
    merged_from: list[str]
    outputs: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_shard(folder: str | Path) -> Shard:
    """The manifest of a finished shard folder; UserError when it is missing or unfinished."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise InputNotFoundError(f"{folder}: no {MANIFEST_NAME}; not the output folder of `ecgproto score`")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        fingerprint = dict(saved["fingerprint"])
        index, count = (int(v) for v in fingerprint["shard"])
        chunks = tuple(int(c) for c in saved["chunks"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: unreadable scoring manifest ({type(exc).__name__}: {exc}); rerun that shard") from exc
    if not saved.get("finished"):
        done = len(saved.get("done", []))
        raise UserError(f"{folder}: shard {index}/{count} is not finished ({done} of {len(chunks)} chunks committed); "
                        "complete it with the same `ecgproto score ... --shard` command plus --resume")
    needed = [SCORES_PARQUET, SCORES_CSV] + ([SIMILARITIES_PARQUET] if fingerprint.get("save_similarities") else [])
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder}: shard {index}/{count} is marked finished but {', '.join(missing)} is missing; "
                        "score that shard again into an empty --out")
    return Shard(folder, index, count, chunks, fingerprint)


def check_shards(shards: Sequence[Shard]) -> None:
    """UserError unless ``shards`` are every shard of one job exactly once, disjoint and complete."""
    if not shards:
        raise UserError("no shard folders given; pass the --out folders of every `ecgproto score --shard i/n` run")
    first = shards[0]
    job = {k: v for k, v in first.fingerprint.items() if k != "shard"}
    for s in shards[1:]:
        other = {k: v for k, v in s.fingerprint.items() if k != "shard"}
        diff = sorted(k for k in set(job) | set(other) if job.get(k) != other.get(k))
        if diff:
            details = "; ".join(f"{k}: {job.get(k)!r} vs {other.get(k)!r}" for k in diff)
            raise UserError(f"{s.folder} is not a shard of the same job as {first.folder} ({details}); merge only the "
                            "shards of one checkpoint, input and option set")
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise UserError(f"the folders were scored with different shard counts ({', '.join(f'n={c}' for c in counts)}); "
                        "merge the shards of one --shard i/n split")
    n = counts[0]
    seen: dict[int, Path] = {}
    for s in shards:
        if s.index in seen:
            raise UserError(f"shards overlap: shard {s.index}/{n} is given twice ({seen[s.index]} and {s.folder})")
        seen[s.index] = s.folder
    absent = [i for i in range(n) if i not in seen]
    if absent:
        raise UserError(f"incomplete: shard(s) {', '.join(f'{i}/{n}' for i in absent)} missing (got "
                        f"{len(seen)} of {n}); score them with --shard and merge all {n}")
    n_records, chunk_size = int(job["n_records"]), int(job["chunk_size"])
    owner: dict[int, Path] = {}
    for s in shards:
        expected = tuple(shard_chunks(n_records, chunk_size, (s.index, n)))
        if s.chunks != expected:
            raise UserError(f"{s.folder}: its manifest lists chunks {list(s.chunks)[:5]}... but shard {s.index}/{n} of "
                            f"{n_records} records in chunks of {chunk_size} is chunks {list(expected)[:5]}...; the "
                            "folder was altered, score that shard again")
        for c in s.chunks:
            if c in owner:
                raise UserError(f"shards overlap: chunk {c} is in {owner[c]} and {s.folder}")
            owner[c] = s.folder
    n_chunks = -(-n_records // chunk_size)
    if len(owner) != n_chunks:
        raise UserError(f"incomplete: the shards hold {len(owner)} of the {n_chunks} chunks")
    for s in shards:
        rows = sum(min((c + 1) * chunk_size, n_records) - c * chunk_size for c in s.chunks)
        found = pq.ParquetFile(s.folder / SCORES_PARQUET).metadata.num_rows
        if found != rows:
            raise UserError(f"{s.folder / SCORES_PARQUET}: {found} rows, but shard {s.index}/{n} covers {rows} records; "
                            "the file was altered or truncated, score that shard again")


def _concat_parquet(sources: list[Path], target: Path) -> None:
    schema = pq.read_schema(sources[0])
    for src in sources[1:]:
        if not pq.read_schema(src).equals(schema):
            raise UserError(f"{src}: its columns differ from {sources[0]}; the shards were not written by one job")

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for src in sources:
                part = pq.ParquetFile(src)
                for g in range(part.num_row_groups):  # one row group per chunk, as in an unsharded run
                    writer.write_table(part.read_row_group(g))

    write_durable(target, write)


def _concat_csv(sources: list[Path], target: Path) -> None:
    header = None
    for src in sources:
        with src.open("rb") as fh:
            line = fh.readline()
        if header is None:
            header = line
        elif line != header:
            raise UserError(f"{src}: its header differs from {sources[0]}; the shards were not written by one job")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as out:
            out.write(header or b"")
            for src in sources:
                with src.open("rb") as fh:
                    fh.readline()
                    shutil.copyfileobj(fh, out)

    write_durable(target, write)


def merge_shards(folders: Sequence[str | Path], out_dir: str | Path) -> MergeSummary:
    """Check the shard ``folders`` (any order) and write their merged output into ``out_dir``."""
    out_dir = Path(out_dir)
    shards = sorted((read_shard(f) for f in folders), key=lambda s: s.index)
    check_shards(shards)
    if any(out_dir.resolve() == s.folder.resolve() for s in shards):
        raise UserError(f"--out {out_dir} is one of the shard folders; choose a new folder for the merged output")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is an existing file, not a folder; give a folder path")
    existing = [n for n in (SCORES_PARQUET, MANIFEST_NAME) if (out_dir / n).exists()]
    if existing:
        raise UserError(f"--out {out_dir} already holds scores ({', '.join(existing)}); choose an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(out_dir)
    try:
        fingerprint = {**shards[0].fingerprint, "shard": [0, 1]}
        outputs = [out_dir / SCORES_PARQUET, out_dir / SCORES_CSV]
        _concat_parquet([s.folder / SCORES_PARQUET for s in shards], outputs[0])
        _concat_csv([s.folder / SCORES_CSV for s in shards], outputs[1])
        if fingerprint.get("save_similarities"):
            outputs.append(out_dir / SIMILARITIES_PARQUET)
            _concat_parquet([s.folder / SIMILARITIES_PARQUET for s in shards], outputs[-1])
        counter: collections.Counter = collections.Counter()
        for part in pq.ParquetFile(outputs[0]).iter_batches(columns=["status"]):
            counter.update(part.column(0).to_pylist())
        chunks = [c for s in shards for c in s.chunks]
        sources = [str(s.folder) for s in shards]
        manifest = json.dumps({"fingerprint": fingerprint, "chunks": chunks, "done": chunks, "content": {},
                               "finished": True, "merged_from": sources}, indent=1, sort_keys=True)
        write_durable(out_dir / MANIFEST_NAME, lambda tmp: tmp.write_text(manifest, encoding="utf-8"))
        summary = MergeSummary(n_records=sum(counter.values()), status_counts=dict(sorted(counter.items())),
                               n_shards=len(shards), chunks_total=len(chunks), merged_from=sources,
                               outputs=[str(p) for p in outputs])
        write_json_atomic(out_dir / SUMMARY_NAME, summary.to_dict(), indent=1)
    finally:
        os.close(lock)
    return summary


__all__ = ["MergeSummary", "Shard", "check_shards", "merge_shards", "read_shard"]
