"""Worker side of scoring: read, validate, high-pass and score one batch of records.

Each scoring process (a worker, or the main process with ``workers=0``) does the whole
per-batch job, so the cores are shared by symmetric processes instead of one model process
waiting on readers, and only the small result arrays cross the process boundary. The
preprocessing is exactly the checkpoint's: ``read_record`` (lead order by name, resampling to
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

from ecgproto.data.preprocess import highpass
from ecgproto.data.wfdb_io import read_record

READ_ERROR = "read_error"  # status of a record whose reader raised (a reader bug, not a bad file)


@dataclass(frozen=True)
class Preprocessing:
    """What turns a record file into model input (from checkpoint meta)."""

    fs: int  # Hz the model runs at
    n_samples: int  # samples per record at ``fs``
    highpass_hz: float
    highpass_order: int

    @classmethod
    def from_meta(cls, meta: dict) -> Preprocessing:
        hp = meta.get("highpass") or {}
        return cls(int(meta["sampling_rate"]), int(meta["n_samples"]),
                   float(hp.get("cutoff_hz", 0.5)), int(hp.get("order", 1)))


@dataclass
class ReadBatch:
    """One batch of records after reading.

    ``signals``: (n_ok, 12, n_samples) float32 mV, high-passed, for the records whose
    status is "ok", in input order; ``status``/``message``: one per input record.
    """

    signals: np.ndarray
    status: list[str]
    message: list[str]


def read_batch(paths: list[str], prep: Preprocessing) -> ReadBatch:
    """Read, validate and high-pass ``paths`` (WFDB records without extension); never raises per record."""
    status: list[str] = []
    message: list[str] = []
    good: list[np.ndarray] = []
    for path in paths:
        try:
            result = read_record(path, prep.fs, prep.n_samples)
            st, msg, sig = result.status, result.message, result.signal
        except Exception as exc:  # a reader bug must not stop an archive run
            st, msg, sig = READ_ERROR, f"record {path}: the reader failed ({type(exc).__name__}: {exc})", None
        if st == "ok" and sig is not None:
            good.append(sig)
        status.append(st)
        message.append("" if st == "ok" else msg)
    if good:
        stacked = np.stack(good).astype(np.float32, copy=False)
        signals = np.ascontiguousarray(highpass(stacked, prep.fs, prep.highpass_hz, prep.highpass_order),
                                       dtype=np.float32)
    else:
        signals = np.zeros((0, 12, prep.n_samples), dtype=np.float32)
    return ReadBatch(signals, status, message)


def forward_batch(model: torch.nn.Module, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fused probabilities (n, 71) and prototype similarities (n, P) for (n, 12, T) float32 mV input."""
    with torch.inference_mode():
        out = model(torch.from_numpy(signals))
        return torch.sigmoid(out.logits).float().numpy(), out.similarities.float().numpy()


@dataclass
class ScoredBatch:
    """One batch after reading and the forward pass.

    ``probs`` (n_ok, 71) and ``sims`` (n_ok, P) float32 for the records whose status is "ok",
    in input order; ``status``/``message``: one per input record.
    """

    status: list[str]
    message: list[str]
    probs: np.ndarray
    sims: np.ndarray


@dataclass(frozen=True)
class BatchScorer:
    """Reads, preprocesses and scores batches of record paths with one model (eval mode)."""

    model: torch.nn.Module
    prep: Preprocessing
    n_labels: int
    n_prototypes: int

    def __call__(self, paths: list[str]) -> ScoredBatch:
        batch = read_batch(paths, self.prep)
        if len(batch.signals):
            probs, sims = forward_batch(self.model, batch.signals)
        else:
            probs = np.zeros((0, self.n_labels), np.float32)
            sims = np.zeros((0, self.n_prototypes), np.float32)
        return ScoredBatch(batch.status, batch.message, probs, sims)


# The scorer of this worker process, set once by worker_init (each pool process has its own).
_process_scorer: BatchScorer | None = None


def score_in_worker(paths: list[str]) -> ScoredBatch:
    """Pool task: score ``paths`` with this worker's :class:`BatchScorer`."""
    if _process_scorer is None:
        raise RuntimeError("score_in_worker runs only in a process started with worker_init")
    return _process_scorer(paths)


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def worker_init(scorer: BatchScorer, threads: int, parent_pid: int, poll_s: float = 0.5) -> None:
    """Scoring-process initializer: keep the scorer, set the torch threads, and exit as soon as
    the scoring process is gone (e.g. SIGKILLed) instead of lingering as an orphan."""
    global _process_scorer
    torch.set_num_threads(threads)
    _process_scorer = scorer
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid, poll_s), daemon=True).start()
