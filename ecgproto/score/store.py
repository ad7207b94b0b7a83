"""Chunked, resumable output of a scoring run.

Layout of ``OUT/`` while a run is in progress::

    scoring_manifest.json   run fingerprint + the chunks of this shard + those committed
    parts/scores-<chunk>.parquet, parts/scores-<chunk>.csv   (and similarities-<chunk>.parquet)

A chunk is committed by writing its part files (each to a temp file, then
``os.replace``) and then rewriting the manifest the same way; a chunk counts as done
only once the manifest says so, so a kill at any moment loses at most the chunk in
progress and never leaves half a row. ``finalize`` concatenates the parts in chunk
order into ``scores.parquet`` (one row group per chunk), ``scores.csv`` and
``similarities.parquet``, then removes ``parts/``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ecgproto.atomic import write_json_atomic
from ecgproto.progress import progress

MANIFEST_NAME = "scoring_manifest.json"
SCORES_PARQUET = "scores.parquet"
SCORES_CSV = "scores.csv"
SIMILARITIES_PARQUET = "similarities.parquet"


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
        self.finished = False
        if self.manifest_path.exists():
            if not resume:
                raise ValueError(f"{self.out_dir} already holds a scoring run ({MANIFEST_NAME}); pass --resume to "
                                 "continue it, or choose another --out")
            self._load()
        elif resume and (self.out_dir / SCORES_PARQUET).exists():
            raise ValueError(f"{self.out_dir} has {SCORES_PARQUET} but no {MANIFEST_NAME}; cannot resume it, "
                             "choose another --out")
        self.parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def _load(self) -> None:
        saved = json.loads(self.manifest_path.read_text())
        old = saved.get("fingerprint", {})
        diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
        if diff:
            details = "; ".join(f"{k}: was {old.get(k)!r}, now {self.fingerprint.get(k)!r}" for k in diff)
            raise ValueError(f"cannot --resume the run in {self.out_dir}: it was started with different settings "
                             f"({details}); rerun with the same checkpoint, input and options, or another --out")
        self.finished = bool(saved.get("finished", False))
        self.done = {c for c in saved.get("done", []) if self._parts_exist(c)} if not self.finished else set(self.chunks)

    def _save(self) -> None:
        write_json_atomic(self.manifest_path, {"fingerprint": self.fingerprint, "chunks": self.chunks,
                                                "done": sorted(self.done), "finished": self.finished},
                          indent=1, sort_keys=True)

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

    def commit(self, chunk: int, scores: pa.Table, similarities: pa.Table | None) -> None:
        """Atomically store one finished chunk and record it in the manifest."""
        outputs: list[tuple[Path, object]] = [(self._part("scores", chunk, "parquet"), scores),
                                              (self._part("scores", chunk, "csv"), _csv_bytes(scores, header=False))]
        if self.with_similarities:
            if similarities is None:
                raise ValueError("similarities requested but not given")
            outputs.append((self._part("similarities", chunk, "parquet"), similarities))
        for path, payload in outputs:
            tmp = path.with_name(path.name + ".tmp")
            if isinstance(payload, bytes):
                tmp.write_bytes(payload)
            else:
                pq.write_table(payload, tmp)
            os.replace(tmp, path)
        self.done.add(chunk)
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
        target = self.out_dir / SCORES_CSV
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("wb") as out:
            out.write(_csv_bytes(schema.empty_table(), header=True))
            for chunk in self.chunks:
                with self._part("scores", chunk, "csv").open("rb") as part:
                    shutil.copyfileobj(part, out)
        os.replace(tmp, target)
        self.finished = True
        self._save()
        shutil.rmtree(self.parts, ignore_errors=True)
        return self._final_paths()

    def _concat_parquet(self, kind: str, schema: pa.Schema, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in progress(self.chunks, desc=f"writing {target.name}", unit="chunk"):
                writer.write_table(pq.read_table(self._part(kind, chunk, "parquet"), schema=schema))
        os.replace(tmp, target)

    def _final_paths(self) -> list[Path]:
        names = [SCORES_PARQUET, SCORES_CSV] + ([SIMILARITIES_PARQUET] if self.with_similarities else [])
        return [self.out_dir / n for n in names]
