"""Benchmark: training-style random batches from WFDB files versus from the prepare cache.

Both sides deliver the same thing — a (B, 12, T) float32 torch tensor of high-passed mV
signals for a random batch of records — as a training loop would consume it:

- ``wfdb``: for each record of the batch, ``read_record`` (ecgproto's WFDB reader with
  validation) + ``highpass``, stacked into a tensor;
- ``wfdb_python``: the same with ``wfdb.rdsamp`` (what most code does), on a subset, for context;
- ``cache``: fancy-indexed rows of the memory-mapped ``signals.npy`` → ``torch.from_numpy``.

Files are warm in the OS page cache for both sides (one untimed pass first); best of
``--repeats`` epochs. Also times building the cache itself. Writes
``reports/benchmarks/cache_speed.json`` and ``.md``.

Usage: ``python benchmarks/bench_cache.py [--root ../shared/data/ptbxl-sample] [--batch-size 64]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecgproto.data.cache import prepare_cache, source_rate  # noqa: E402
from ecgproto.data.config import DataConfig  # noqa: E402
from ecgproto.data.preprocess import highpass  # noqa: E402
from ecgproto.data.ptbxl import load_ptbxl  # noqa: E402
from ecgproto.data.wfdb_io import LEADS, canonical_lead, read_record  # noqa: E402


def _batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def epoch_from_wfdb(paths: list[str], batches: list[np.ndarray], cfg: DataConfig, n_samples: int) -> float:
    started = time.perf_counter()
    for batch in batches:
        x = np.stack([highpass(read_record(paths[i], cfg.sampling_rate, n_samples).signal, cfg.sampling_rate,
                               cfg.highpass_hz, cfg.highpass_order) for i in batch])
        torch.from_numpy(x)
    return time.perf_counter() - started


def epoch_from_wfdb_python(paths: list[str], batches: list[np.ndarray], cfg: DataConfig, n_samples: int) -> float:
    import wfdb

    started = time.perf_counter()
    for batch in batches:
        rows = []
        for i in batch:
            signal, fields = wfdb.rdsamp(paths[i])
            order = [[canonical_lead(n) for n in fields["sig_name"]].index(lead) for lead in LEADS]
            rows.append(highpass(signal.T[order, :n_samples], cfg.sampling_rate, cfg.highpass_hz, cfg.highpass_order))
        torch.from_numpy(np.stack(rows))
    return time.perf_counter() - started


def epoch_from_cache(signals: np.ndarray, batches: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for batch in batches:
        rows = np.sort(batch)  # memmap fancy indexing reads in file order
        torch.from_numpy(np.asarray(signals[rows], dtype=np.float32))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "ptbxl-sample"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wfdb-python-records", type=int, default=100)
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataConfig(root=args.root, cache_dir=tmp, num_workers=1)
        n_samples = int(round(cfg.duration_s * cfg.sampling_rate))
        started = time.perf_counter()
        archive = prepare_cache(cfg)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        prepare_cache(cfg)
        reuse_s = time.perf_counter() - started

        ptbxl = load_ptbxl(args.root)
        all_paths = ptbxl.record_paths(source_rate(cfg.sampling_rate))
        by_id = dict(zip(ptbxl.meta.index, all_paths))
        paths = [by_id[e] for e in archive.index["ecg_id"]]  # row-aligned with the cache
        n = len(paths)
        batches = _batches(n, args.batch_size, seed=0)
        # same content on both sides
        check = batches[0][:4]
        direct = np.stack([highpass(read_record(paths[i], cfg.sampling_rate, n_samples).signal, cfg.sampling_rate)
                           for i in check])
        assert np.array_equal(direct, np.asarray(archive.signals[check])), "cache differs from direct reading"

        epoch_from_wfdb(paths, batches, cfg, n_samples)  # warm the page cache
        epoch_from_cache(archive.signals, batches)
        wfdb_s = min(epoch_from_wfdb(paths, batches, cfg, n_samples) for _ in range(args.repeats))
        cache_s = min(epoch_from_cache(archive.signals, batches) for _ in range(args.repeats))
        k = min(args.wfdb_python_records, n)
        sub = [b[b < k] for b in _batches(k, args.batch_size, seed=0)]
        epoch_from_wfdb_python(paths, sub, cfg, n_samples)
        wfdb_python_s = min(epoch_from_wfdb_python(paths, sub, cfg, n_samples) for _ in range(args.repeats))

    result = {
        "records": n,
        "batch_size": args.batch_size,
        "sampling_rate_hz": cfg.sampling_rate,
        "n_samples": n_samples,
        "wfdb_ecgproto_reader_ms_per_record": 1000 * wfdb_s / n,
        "wfdb_python_rdsamp_ms_per_record": 1000 * wfdb_python_s / k,
        "cache_ms_per_record": 1000 * cache_s / n,
        "speedup_cache_vs_ecgproto_reader": wfdb_s / cache_s,
        "speedup_cache_vs_wfdb_python": (wfdb_python_s / k) / (cache_s / n),
        "cache_build_s_1_worker": build_s,
        "cache_reuse_s": reuse_s,
        "required_speedup": 50.0,
        "passes": wfdb_s / cache_s >= 50.0,
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}, torch threads 1",
        "data": Path(args.root).name,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        "# Cache benchmark (`benchmarks/bench_cache.py`)\n\n"
        f"{n} real PTB-XL records ({cfg.sampling_rate} Hz, {n_samples} samples, 12 leads), random batches of "
        f"{args.batch_size} delivered as torch tensors, high-pass included, warm page cache, one thread, best of "
        f"{args.repeats}.\n\n"
        "| source | ms / record | records / s |\n| --- | ---: | ---: |\n"
        f"| WFDB files, `wfdb.rdsamp` ({k} records) | {result['wfdb_python_rdsamp_ms_per_record']:.2f} | "
        f"{1000 / result['wfdb_python_rdsamp_ms_per_record']:.0f} |\n"
        f"| WFDB files, ecgproto `read_record` | {result['wfdb_ecgproto_reader_ms_per_record']:.2f} | "
        f"{1000 / result['wfdb_ecgproto_reader_ms_per_record']:.0f} |\n"
        f"| prepare cache (memory map) | {result['cache_ms_per_record']:.4f} | "
        f"{1000 / result['cache_ms_per_record']:.0f} |\n\n"
        f"Speed-up of the cache: **{result['speedup_cache_vs_ecgproto_reader']:.0f}×** over ecgproto's WFDB reader "
        f"(required ≥ 50×), {result['speedup_cache_vs_wfdb_python']:.0f}× over `wfdb.rdsamp`. "
        f"Building the cache took {build_s:.1f} s (1 worker); reusing it {reuse_s:.2f} s.\n"
    )
    (out / "cache_speed.md").write_text(md)
    print(md)
    return 0 if result["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
