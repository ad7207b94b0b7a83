"""Configuration of batch scoring (the CLI options override these)."""

from __future__ import annotations

from dataclasses import dataclass

INPUT_KINDS: tuple[str, ...] = ("wfdb", "manifest", "ptbxl", "mimic")  # see ecgproto/score/sources.py


@dataclass(frozen=True)
class ScoreConfig:
    batch_size: int = 64  # records per forward pass and per read task
    num_workers: int = 2  # scoring processes, each reads + runs the model (0 = all in the main process)
    chunk_size: int = 1024  # rows per committed output chunk (the unit of --resume and --shard)
    top_k: int = 3  # labels listed in top_labels
    threads: int = 0  # torch threads per scoring process (0 = CPU cores / scoring processes, at least 1)
    # fraction of validation records flagged as out-of-distribution; None = the rate the
    # checkpoint's OOD calibration (meta["ood"]) was made with
    ood_flag_fraction: float | None = None
