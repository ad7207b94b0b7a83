"""Worker side of scoring: read, validate, high-pass and score one batch of records.

On the CPU each scoring process (a worker, or the main process with ``workers=0``) does the
whole per-batch job (:class:`BatchScorer`), so the cores are shared by symmetric processes
instead of one model process waiting on readers, and only the small result arrays cross the
process boundary. With the model on a GPU the workers only read and preprocess
(:class:`BatchReader`: reading, high-pass and the OOD band powers, all CPU work) and the main
process runs each batch on the device (:meth:`BatchScorer.score_read`). The
preprocessing is exactly the checkpoint's: ``read_records`` (``read_record`` of each record, with
the common layout's checks batched; lead order by name, resampling to
the model rate, validation) then the zero-phase high-pass with the checkpoint's cutoff and
order. Standardisation lives inside the model.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ecgproto.data.preprocess import Preprocessing
from ecgproto.data.wfdb_io import RecordResult, read_record, read_records
from ecgproto.model.ood import band_powers, feature_width, ood_features, pooled_latents

READ_ERROR = "read_error"  # status of a record whose reader raised (a reader bug, not a bad file)


@dataclass
class ReadBatch:
    """One batch of records after reading.

    ``signals``: (n_ok, 12, n_samples) float32 mV, high-passed, for the records whose
    status is "ok", in input order; ``status``/``message``: one per input record;
    ``band_powers``: the OOD band powers (n_ok, 12 · bands) of ``signals`` when the reader
    computed them (:class:`BatchReader`), else None.
    """

    signals: np.ndarray
    status: list[str]
    message: list[str]
    band_powers: np.ndarray | None = None


def _read_alone(path: str, prep: Preprocessing) -> RecordResult:
    try:
        return read_record(path, prep.fs, prep.n_samples)
    except Exception as exc:  # a reader bug must not stop an archive run
        return RecordResult(path, None, READ_ERROR, f"record {path}: the reader failed ({type(exc).__name__}: {exc})",
                            None)


def read_batch(paths: list[str], prep: Preprocessing) -> ReadBatch:
    """Read, validate and high-pass ``paths`` (WFDB records without extension); never raises per record.

    The records are read together (:func:`~ecgproto.data.wfdb_io.read_records`); should that raise
    (a reader bug), each record is read alone, so only the records the bug concerns get ``read_error``."""
    try:
        results = read_records(paths, prep.fs, prep.n_samples)
    except Exception:
        results = [_read_alone(path, prep) for path in paths]
    status = [r.status for r in results]
    message = ["" if r.status == "ok" else r.message for r in results]
    good = [r.signal for r in results if r.status == "ok" and r.signal is not None]
    if good:
        stacked = np.stack(good).astype(np.float32, copy=False)
        signals = np.ascontiguousarray(prep.filter(stacked), dtype=np.float32)
    else:
        signals = np.zeros((0, 12, prep.n_samples), dtype=np.float32)
    return ReadBatch(signals, status, message)


def forward_batch(model: torch.nn.Module, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fused probabilities (n, 71) and prototype similarities (n, P) for (n, 12, T) float32 mV input."""
    probs, sims, _ = forward_with_ood(model, signals, None)
    return probs, sims


def forward_with_ood(model: torch.nn.Module, signals: np.ndarray, ood_edges: tuple[float, ...] | None,
                     bands: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`forward_batch` plus the OOD features (n, F) float64 of :func:`ecgproto.model.ood.ood_features`
    in the bands ``ood_edges`` (None = no features: an (n, 0) array).

    The batch runs on the model's device; ``bands``: the band powers of ``signals`` when already
    computed (by a CPU reader), else they are computed here."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(torch.from_numpy(signals).to(device, non_blocking=True))
        probs, sims = torch.sigmoid(out.logits).float().cpu().numpy(), out.similarities.float().cpu().numpy()
        if ood_edges is None:
            feats = np.zeros((len(signals), 0))
        elif bands is None:
            feats = ood_features(out.branch, signals, model.fs, ood_edges)
        else:
            feats = np.concatenate([pooled_latents(out.branch), bands], axis=1)
    return probs, sims, feats


@dataclass
class ScoredBatch:
    """One batch after reading and the forward pass.

    ``probs`` (n_ok, 71) and ``sims`` (n_ok, P) float32 and ``ood_features`` (n_ok, F) float64
    (F = 0 without an OOD calibration) for the records whose status is "ok", in input order;
    ``status``/``message``: one per input record.
    """

    status: list[str]
    message: list[str]
    probs: np.ndarray
    sims: np.ndarray
    ood_features: np.ndarray


@dataclass(frozen=True)
class BatchReader:
    """The CPU half of a batch, run in the worker processes when the model is on a GPU: read,
    validate, high-pass and (``ood_edges`` set) the OOD band powers; no model."""

    prep: Preprocessing
    ood_edges: tuple[float, ...] | None = None

    def __call__(self, paths: list[str]) -> ReadBatch:
        batch = read_batch(paths, self.prep)
        if self.ood_edges is not None:
            batch.band_powers = band_powers(batch.signals, self.prep.fs, self.ood_edges)
        return batch


@dataclass(frozen=True)
class BatchScorer:
    """Reads, preprocesses and scores batches of record paths with one model (eval mode);
    ``ood_edges``: the OOD calibration's band edges (None = no OOD features)."""

    model: torch.nn.Module
    prep: Preprocessing
    n_labels: int
    n_prototypes: int
    ood_edges: tuple[float, ...] | None = None

    def empty(self) -> ScoredBatch:
        """A batch without records (the right widths)."""
        width = feature_width(self.model, self.ood_edges) if self.ood_edges is not None else 0
        return ScoredBatch([], [], np.zeros((0, self.n_labels), np.float32),
                           np.zeros((0, self.n_prototypes), np.float32), np.zeros((0, width)))

    @property
    def reader(self) -> BatchReader:
        """The CPU half of :meth:`__call__` (for worker processes feeding a model on a GPU)."""
        return BatchReader(self.prep, self.ood_edges)

    def __call__(self, paths: list[str]) -> ScoredBatch:
        return self.score_read(read_batch(paths, self.prep))

    def score_read(self, batch: ReadBatch) -> ScoredBatch:
        """The forward pass (on the model's device) of a batch already read."""
        if not len(batch.signals):
            empty = self.empty()
            return ScoredBatch(batch.status, batch.message, empty.probs, empty.sims, empty.ood_features)
        probs, sims, feats = forward_with_ood(self.model, batch.signals, self.ood_edges, batch.band_powers)
        return ScoredBatch(batch.status, batch.message, probs, sims, feats)


# The task of this worker process (a BatchScorer, or a BatchReader when the model runs on a GPU in
# the main process), set once by worker_init (each pool process has its own).
_process_scorer: BatchScorer | BatchReader | None = None


def score_in_worker(paths: list[str]) -> ScoredBatch | ReadBatch:
    """Pool task: run this worker's :class:`BatchScorer` (or :class:`BatchReader`) on ``paths``."""
    if _process_scorer is None:
        raise RuntimeError("score_in_worker runs only in a process started with worker_init")
    return _process_scorer(paths)


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def worker_init(scorer: BatchScorer | BatchReader, threads: int, parent_pid: int, poll_s: float = 0.5) -> None:
    """Scoring-process initializer: keep the scorer, set the torch threads, and exit as soon as
    the scoring process is gone (e.g. SIGKILLed) instead of lingering as an orphan."""
    global _process_scorer
    torch.set_num_threads(threads)
    _process_scorer = scorer
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid, poll_s), daemon=True).start()
