"""Streaming batch scoring of an ECG archive with a trained checkpoint.

Each batch of records is read, validated, high-passed and run through the model in one of
``workers`` scoring processes (or in the main process with ``workers=0``), a bounded number of
batches ahead of the writer, so the cores work in parallel and memory stays flat in the archive
size; only probabilities and similarities come back to the main process, which writes them.
The archive is cut into chunks of ``chunk_size`` consecutive records; batches never straddle a
chunk, so a chunk's outputs do not depend on the worker count, on ``--resume`` or on ``--shard``.
Each finished chunk is committed atomically (see :mod:`ecgproto.score.store`).

A scoring process that dies (killed by the out-of-memory killer, a crash in a native library)
costs only its record: each batch that was in flight is re-scored record by record in a fresh
single-worker process, a record whose process dies again gets the status ``worker_crashed``,
the batch's other records are scored together again (the same forward pass as without the
culprit) and the run goes on. With ``workers=0`` there is no process to lose but the main one.

With ``device`` a GPU (``--device cuda``, or ``auto`` on a machine with one), the worker
processes only read and preprocess (:class:`~ecgproto.score.worker.BatchReader`) and the main
process runs every batch through the model on the device; the crash isolation is the same.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ecgproto.data.preprocess import Preprocessing
from ecgproto.model.fold import fold_batchnorm
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.model.ood import is_current, legacy_note, ood_threshold
from ecgproto.progress import progress
from ecgproto.score.columns import OutputSpec, build_rows
from ecgproto.atomic import write_json_atomic
from ecgproto.device import resolve_device
from ecgproto.score.worker import (
    BatchReader,
    BatchScorer,
    ReadBatch,
    ScoredBatch,
    score_in_worker,
    worker_init,
)
from ecgproto.score.sources import RecordList, list_records, shard_chunks
from ecgproto.score.store import SCORES_PARQUET, ChunkStore
from ecgproto.errors import UserError

SUMMARY_NAME = "summary.json"
WORKER_CRASHED = "worker_crashed"  # status of a record whose scoring process died twice while on it


@dataclass(frozen=True)
class ScoreOptions:
    """How to run one scoring job (the CLI's options)."""

    batch_size: int = 64  # records per task (read + forward pass)
    workers: int = 2  # scoring processes (each reads and runs the model); 0 = all in the main process
    chunk_size: int = 1024  # records per committed output chunk
    top_k: int = 3
    threads: int = 0  # torch intra-op threads per scoring process; 0 = CPU cores / scoring processes (>= 1)
    shard: tuple[int, int] = (0, 1)
    save_similarities: bool = False
    resume: bool = False
    input_kind: str | None = None  # None = autodetect
    id_column: str | None = None  # manifest id column
    ood_flag_rate: float | None = None  # None = the checkpoint's calibrated rate
    folds: tuple[int, ...] | None = None  # PTB-XL input only: score just these strat_fold values
    device: str = "auto"  # auto|cpu|cuda|cuda:N|mps (ecgproto.device.resolve_device)


@dataclass
class ScoreSummary:
    """What a run did: counts by status over the whole output, throughput of this session."""

    input: str
    input_kind: str
    shard: list[int]
    n_records: int
    status_counts: dict[str, int]
    chunks_total: int
    chunks_resumed: int
    records_this_session: int
    elapsed_s: float
    records_per_s: float
    outputs: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def output_spec(model: torch.nn.Module, meta: dict, id_columns: tuple[str, ...], top_k: int,
                ood_flag_rate: float | None) -> tuple[OutputSpec, list[str]]:
    """The output columns' inputs from the checkpoint, plus notes on anything missing."""
    notes: list[str] = []
    labels = tuple(meta["labels"])
    if not 1 <= top_k <= len(labels):
        raise UserError(f"--top-k must be between 1 and {len(labels)}, got {top_k}")
    thresholds = meta.get("thresholds")
    if thresholds is None:
        thresholds = [0.5] * len(labels)
        notes.append("checkpoint has no validation-tuned thresholds; pred__ columns use 0.5")
    table = model.prototype_table().sort_values("index")
    if not np.array_equal(table["index"].to_numpy(), np.arange(len(table))):
        raise ValueError("model.prototype_table() indices are not 0..P-1; cannot map similarity columns")
    calib = meta.get("ood")
    threshold = None
    if model.kind == "blackbox":
        notes.append("black-box twin: no prototypes, so no <branch>_top_* columns; ood_score and ood_flag are empty")
    elif calib is None:
        notes.append("checkpoint has no OOD calibration (meta['ood']): ood_score is the uncalibrated "
                     "-mean branch max similarity and ood_flag is empty")
    elif not is_current(calib):
        notes.append(legacy_note(calib))
        calib = None
    else:
        rate = calib["flag_rate"] if ood_flag_rate is None else ood_flag_rate
        threshold = float(calib["threshold"]) if ood_flag_rate is None else ood_threshold(calib, rate)
        notes.append(f"ood_flag at validation flag rate {rate:g} (threshold {threshold:.4g})")
    spec = OutputSpec(labels=labels, thresholds=np.asarray(thresholds, dtype=np.float64),
                      proto_branch=tuple(table["branch"].astype(str)), proto_class=tuple(table["class_code"].astype(str)),
                      id_columns=id_columns, top_k=top_k, ood_calibration=calib, ood_threshold=threshold)
    return spec, notes


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_digest(paths) -> str:
    """sha256 of the size and modification time of each record's ``.hea``/``.dat``/``.mat`` file:
    tells ``--resume`` that a committed chunk's records were rewritten at the same paths."""
    digest = hashlib.sha256()
    for path in paths:
        for ext in (".hea", ".dat", ".mat"):
            try:
                st = os.stat(f"{path}{ext}")
                digest.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                digest.update(b"-;")
        digest.update(b"\n")
    return digest.hexdigest()


def _tasks(chunks: list[int], n_records: int, chunk_size: int, batch_size: int) -> Iterator[tuple[int, int, int, bool]]:
    """(chunk, start, stop, last task of its chunk) in output order."""
    for chunk in chunks:
        lo, hi = chunk * chunk_size, min((chunk + 1) * chunk_size, n_records)
        starts = list(range(lo, hi, batch_size))
        for k, start in enumerate(starts):
            yield chunk, start, min(start + batch_size, hi), k == len(starts) - 1


class _InlineExecutor(Executor):
    """Runs tasks in the calling process (``workers=0``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def model_in_main_process(model: torch.nn.Module) -> bool:
    """Whether the workers only read and this process runs the model: when the model is on a GPU."""
    return next(model.parameters()).device.type != "cpu"


def scoring_threads(options: ScoreOptions) -> int:
    """Torch threads of each scoring process: ``options.threads``, or the cores shared among them."""
    if options.threads > 0:
        return options.threads
    return max(1, (os.cpu_count() or 1) // max(options.workers, 1))


def _executor(workers: int, scorer: BatchScorer | BatchReader,
              threads: int) -> tuple[Executor, Callable[[list[str]], ScoredBatch | ReadBatch]]:
    """The executor and the task function it runs on a list of record paths (``scorer``: the whole
    job, or only the reading when the model runs on a GPU in the main process)."""
    if workers <= 0:
        return _InlineExecutor(), scorer
    # Single-threaded workers are forked (as torch's DataLoader does): they start at once, share the
    # loaded model copy-on-write and need no `if __name__ == "__main__"` guard in the caller's
    # script. Multi-threaded workers are spawned: OpenMP is not fork-safe, and a forked worker
    # whose parent had started an OpenMP thread pool hangs in its first parallel region.
    method = "fork" if sys.platform.startswith("linux") and threads == 1 else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=worker_init, initargs=(scorer, threads, os.getpid()))
    return pool, score_in_worker


class _Pool:
    """The scoring processes, restarted when one dies, and crash isolation of a batch.

    Each submission is tagged with the pool's generation, so a failure seen late (after the
    pool was already replaced) never restarts the healthy successor. ``on_device``: the
    processes only read (:class:`BatchReader`) and :meth:`finish` runs the model in this process.
    """

    def __init__(self, workers: int, scorer: BatchScorer, threads: int, on_device: bool = False) -> None:
        self.workers, self.scorer, self.threads = workers, scorer, threads
        self.task: BatchScorer | BatchReader = scorer.reader if on_device else scorer
        self.on_device = on_device
        self.executor, self.task_fn = _executor(workers, self.task, threads)
        self.generation = 0
        self.restarts = 0
        self.crashed: list[str] = []  # records that got WORKER_CRASHED, in order

    def finish(self, result: ScoredBatch | ReadBatch) -> ScoredBatch:
        """A task's result as a scored batch (the forward pass on the device when the task only read)."""
        return self.scorer.score_read(result) if self.on_device else result

    def submit(self, paths: list[str]) -> tuple[int, Future]:
        """(generation, future); a pool found broken gives a future holding BrokenProcessPool."""
        try:
            return self.generation, self.executor.submit(self.task_fn, paths)
        except BrokenProcessPool as exc:
            failed: Future = Future()
            failed.set_exception(exc)
            return self.generation, failed

    def restart(self, generation: int) -> None:
        """Replace the pool of ``generation`` with fresh processes (no-op if already replaced)."""
        if generation != self.generation:
            return
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor, self.task_fn = _executor(self.workers, self.task, self.threads)
        self.generation += 1
        self.restarts += 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def isolate(self, paths: list[str]) -> ScoredBatch:
        """Score a batch whose process died: each record alone in a fresh single-worker process
        (those whose process dies again get WORKER_CRASHED), then the survivors together."""
        alone: list[ScoredBatch | None] = []
        single: Executor | None = None
        try:
            for path in paths:
                single = single or _executor(1, self.task, self.threads)[0]
                try:
                    alone.append(self.finish(single.submit(self.task_fn, [path]).result()))
                except BrokenProcessPool:
                    alone.append(None)
                    self.crashed.append(path)
                    single.shutdown(wait=True)
                    single = None
        finally:
            if single is not None:
                single.shutdown(wait=True)
        survivors = [p for p, r in zip(paths, alone) if r is not None]
        together = None
        for _ in range(3 if survivors else 0):  # the same batch as without the culprit: the same forward pass
            generation, future = self.submit(survivors)
            try:
                together = self.finish(future.result())
                break
            except BrokenProcessPool:  # another lost batch broke the pool meanwhile
                self.restart(generation)
        if together is None:  # not reproducible alone (e.g. the memory of several records at once)
            together = _concat([r for r in alone if r is not None], self.scorer)
        status, message = iter(together.status), iter(together.message)
        out_status, out_message = [], []
        for path, r in zip(paths, alone):
            if r is None:
                out_status.append(WORKER_CRASHED)
                out_message.append(f"record {path}: the scoring process died while reading or scoring it, again when "
                                   "retried alone in a fresh process (killed, e.g. by the out-of-memory killer, or "
                                   "crashed); the other records were scored")
            else:
                out_status.append(next(status))
                out_message.append(next(message))
        return ScoredBatch(out_status, out_message, together.probs, together.sims, together.ood_features)


def _concat(batches: list[ScoredBatch], scorer: BatchScorer) -> ScoredBatch:
    """One ScoredBatch from several, in order."""
    batches = batches or [scorer.empty()]
    probs, sims, feats = [b.probs for b in batches], [b.sims for b in batches], [b.ood_features for b in batches]
    return ScoredBatch([s for b in batches for s in b.status], [m for b in batches for m in b.message],
                       np.concatenate(probs), np.concatenate(sims), np.concatenate(feats))


def _score_ahead(pool: _Pool, tasks: Iterator[tuple[int, int, int, bool]], paths: np.ndarray,
                 depth: int) -> Iterator[tuple[int, int, int, bool, ScoredBatch]]:
    """Scored batches in task order with at most ``depth`` batches submitted but not yet consumed.

    A batch whose process died is isolated (:meth:`_Pool.isolate`) after the pool is restarted
    and the other lost batches are resubmitted to the fresh processes."""
    queue: collections.deque = collections.deque()  # (task, pool generation, future)

    def batch_paths(task: tuple[int, int, int, bool]) -> list[str]:
        return list(paths[task[1]:task[2]])

    def failed(future: Future) -> bool:
        return future.done() and (future.cancelled() or future.exception() is not None)

    def take() -> tuple[int, int, int, bool, ScoredBatch]:
        task, generation, future = queue.popleft()
        try:
            result = future.result()
        except (BrokenProcessPool, CancelledError):
            pool.restart(generation)
            for i, (other, _, other_future) in enumerate(queue):
                if failed(other_future):  # lost with the broken pool: submit again to the fresh one
                    queue[i] = (other, *pool.submit(batch_paths(other)))
            return (*task, pool.isolate(batch_paths(task)))
        return (*task, pool.finish(result))

    for task in tasks:
        queue.append((task, *pool.submit(batch_paths(task))))
        if len(queue) >= depth:
            yield take()
    while queue:
        yield take()


def score_archive(checkpoint: str | Path, input_path: str | Path, out_dir: str | Path,
                  options: ScoreOptions = ScoreOptions()) -> ScoreSummary:
    """Score every record of ``input_path`` with the checkpoint file ``checkpoint`` into ``out_dir``.

    Writes ``scores.parquet``, ``scores.csv`` (and ``similarities.parquet``), ``summary.json``
    and ``scoring_manifest.json``; see :mod:`ecgproto.score.columns` for the columns.
    """
    checkpoint = Path(checkpoint)
    model, meta = load_checkpoint(checkpoint)
    return score_model(model, meta, input_path, out_dir, options, model_id=file_sha256(checkpoint))


def check_options(options: ScoreOptions) -> None:
    """Raise ValueError for option values that cannot work (negative, or absurdly many processes/threads)."""
    if options.batch_size < 1 or options.chunk_size < 1:
        raise UserError(f"batch size and chunk size must be >= 1 (got {options.batch_size}, {options.chunk_size})")
    cap = max(8, 4 * (os.cpu_count() or 1))
    if not 0 <= options.workers <= cap:
        raise UserError(f"--workers must be between 0 and {cap} (the larger of 8 and 4 x CPU cores), got "
                         f"{options.workers}")
    if not 0 <= options.threads <= cap:
        raise UserError(f"--threads must be between 0 (automatic) and {cap} (the larger of 8 and 4 x CPU cores), "
                         f"got {options.threads}")


def score_model(model: torch.nn.Module, meta: dict, input_path: str | Path, out_dir: str | Path,
                options: ScoreOptions = ScoreOptions(), model_id: str = "") -> ScoreSummary:
    """:func:`score_archive` for an already loaded model and its checkpoint ``meta``.

    ``model_id`` identifies the model for ``--resume`` (the checkpoint's sha256). The model runs
    on ``options.device`` and is moved back to its own device afterwards.
    """
    out_dir = Path(out_dir)
    check_options(options)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is an existing file, not a folder; give a folder path")
    device = resolve_device(options.device)
    home = next(model.parameters()).device
    threads_before = torch.get_num_threads()
    torch.set_num_threads(scoring_threads(options))  # the main process scores only with workers=0
    try:
        model.to(device)
        return _score(model, meta, input_path, out_dir, options, model_id)
    finally:
        model.to(home)
        torch.set_num_threads(threads_before)


def _score(model: torch.nn.Module, meta: dict, input_path: str | Path, out_dir: Path, options: ScoreOptions,
           model_id: str) -> ScoreSummary:
    model.eval()
    model = fold_batchnorm(model)  # an inference copy: BatchNorm folded into the convolutions (same outputs)
    if options.save_similarities and model.kind == "blackbox":
        raise UserError("--save-similarities: this checkpoint is a black-box twin (model.kind: blackbox) and has no "
                         "prototype similarities; drop the option")
    prep = Preprocessing.from_meta(meta)
    records: RecordList = list_records(input_path, prep.fs, options.input_kind, options.id_column, options.folds)
    spec, notes = output_spec(model, meta, records.id_columns, options.top_k, options.ood_flag_rate)
    chunks = list(shard_chunks(len(records), options.chunk_size, options.shard))
    fingerprint = {
        "model": model_id, "input_kind": records.kind, "input": str(records.root),
        "records_sha256": records.fingerprint(), "n_records": len(records), "chunk_size": options.chunk_size,
        "batch_size": options.batch_size, "top_k": options.top_k, "shard": list(options.shard),
        "save_similarities": options.save_similarities, "ood_threshold": spec.ood_threshold,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ChunkStore(out_dir, fingerprint, chunks, options.resume, options.save_similarities)
    try:
        return _run(store, model, prep, records, spec, notes, chunks, options, out_dir)
    finally:
        store.close()


def _run(store: ChunkStore, model: torch.nn.Module, prep: Preprocessing, records: RecordList, spec: OutputSpec,
         notes: list[str], chunks: list[int], options: ScoreOptions, out_dir: Path) -> ScoreSummary:
    paths = records.frame["path"].to_numpy(dtype=object)

    def chunk_paths(chunk: int) -> np.ndarray:
        return paths[chunk * options.chunk_size: (chunk + 1) * options.chunk_size]

    if not store.finished:
        changed = [c for c in sorted(store.done) if c in store.content and store.content[c] != files_digest(chunk_paths(c))]
        if changed:
            store.forget(changed)
            notes.append(f"--resume: the record files of {len(changed)} committed chunk(s) changed since they were "
                         f"scored (first: chunk {changed[0]}); they were scored again")
    resumed = len(store.done)
    pending = store.pending
    n_todo = sum(min((c + 1) * options.chunk_size, len(records)) - c * options.chunk_size for c in pending)

    start = time.perf_counter()
    edges = tuple(spec.ood_calibration["band_edges_hz"]) if spec.ood_calibration is not None else None
    scorer = BatchScorer(model, prep, len(spec.labels), len(spec.proto_branch), edges)
    pool = _Pool(options.workers, scorer, scoring_threads(options), model_in_main_process(model))
    try:
        parts: list[ScoredBatch] = []
        bar = progress(_score_ahead(pool, _tasks(pending, len(records), options.chunk_size, options.batch_size),
                                    paths, depth=max(2, 2 * options.workers + 2)),
                       desc="scoring", total=-(-n_todo // options.batch_size), unit="batch")
        for chunk, _, _, last, batch in bar:
            parts.append(batch)
            if not last:
                continue
            lo = chunk * options.chunk_size
            frame = records.frame.iloc[lo: min(lo + options.chunk_size, len(records))]
            whole = _concat(parts, scorer)
            scores, sim_table = build_rows(frame, whole.status, whole.message, whole.probs, whole.sims, spec,
                                           options.save_similarities, whole.ood_features)
            store.commit(chunk, scores, sim_table, files_digest(chunk_paths(chunk)))
            parts = []
    finally:
        pool.shutdown()
    if pool.crashed:
        notes.append(f"{pool.restarts} scoring process(es) died; {len(pool.crashed)} record(s) that killed their "
                     f"process again when retried alone got status {WORKER_CRASHED} (first: {pool.crashed[0]})")
    elif pool.restarts:
        notes.append(f"{pool.restarts} scoring process(es) died; every record of the lost batches was re-scored")
    outputs = store.finalize(spec.schema(), spec.similarity_schema())
    elapsed = time.perf_counter() - start

    counter: collections.Counter = collections.Counter()
    for part in pq.ParquetFile(out_dir / SCORES_PARQUET).iter_batches(columns=["status"]):
        counter.update(part.column(0).to_pylist())
    counts = dict(sorted(counter.items()))
    summary = ScoreSummary(input=str(records.root), input_kind=records.kind, shard=list(options.shard),
                           n_records=sum(counts.values()), status_counts=counts, chunks_total=len(chunks),
                           chunks_resumed=resumed, records_this_session=n_todo, elapsed_s=round(elapsed, 3),
                           records_per_s=round(n_todo / elapsed, 2) if elapsed > 0 else 0.0,
                           outputs=[str(p) for p in outputs], notes=notes)
    write_json_atomic(out_dir / SUMMARY_NAME, summary.to_dict(), indent=1)
    return summary
