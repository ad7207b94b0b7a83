"""End-to-end scoring throughput vs the bare forward pass, and peak memory vs archive size.

In one run, on the same (untrained, seeded) model built from ``configs/demo.yaml``:

1. bare forward: the model on in-memory float32 tensors (N, 12, 1000), batches of
   ``--batch-size``, no reading, no writing;
2. end to end: ``score_archive`` on the synthetic archive's WFDB files (reading,
   validation and high-pass in ``--workers`` processes, forward, chunked Parquet+CSV
   output, final concatenation);
3. peak resident memory of the scoring process tree (scorer + reader processes, sampled
   from /proc every 20 ms) when scoring two archive sizes in fresh processes.

Writes ``reports/benchmarks/score_throughput.json`` and ``.md`` (``score_throughput_w<W>.*``
for another ``--width``).

    python benchmarks/bench_score_throughput.py --records 2000 --threads 2 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecgproto.config import load_config  # noqa: E402
from ecgproto.configuration import to_dict  # noqa: E402
from ecgproto.data.config import SynthConfig  # noqa: E402
from ecgproto.data.labels import all_labels  # noqa: E402
from ecgproto.data.synth import write_synthetic_archive  # noqa: E402
from ecgproto.model import ProtoECGNet  # noqa: E402
from ecgproto.score.scorer import ScoreOptions, forward_batch, score_archive  # noqa: E402
from ecgproto.train.checkpoint import save_checkpoint  # noqa: E402

OUT = REPO / "reports" / "benchmarks"


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _peak_tree_rss(cmd: list[str], env: dict[str, str]) -> tuple[int, float]:
    """Run ``cmd``; return (peak RSS of its process tree in bytes, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"scoring subprocess failed: {err[-2000:]}")
    return peak, time.perf_counter() - start


def build_checkpoint(path: Path, config: str, overrides: list[str]) -> tuple[ProtoECGNet, int]:
    cfg = load_config(config, overrides)
    torch.manual_seed(cfg.seed)
    model = ProtoECGNet(cfg.model, 1000, 100).eval()
    meta = {"config": to_dict(cfg), "labels": list(all_labels()), "sampling_rate": 100, "n_samples": 1000,
            "highpass": {"cutoff_hz": cfg.data.highpass_hz, "order": cfg.data.highpass_order},
            "thresholds": [0.5] * 71}
    save_checkpoint(path, model, meta)
    return model, sum(p.numel() for p in model.parameters())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_forward(model: ProtoECGNet, n: int, batch_size: int) -> float:
    """Records/s of the forward pass alone on in-memory tensors (same helper as the scorer)."""
    x = np.random.default_rng(0).normal(0, 0.3, (n, 12, 1000)).astype(np.float32)
    forward_batch(model, x[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        forward_batch(model, x[i:i + batch_size])
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="synthetic 100 Hz records scored end to end")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[500, 2000],
                        help="two archive sizes for the peak-memory check")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="config of the model")
    parser.add_argument("--width", type=int, default=8,
                        help="base_width of every branch backbone (8 = demo-sized, as in the model benchmark; "
                             "64 = reference size; 0 = as in --config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="reader processes for the end-to-end run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the end-to-end run (the bare pass is timed at 1 and 2 threads and "
                             "the faster is the reference)")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--work-dir", default=None, help="keep the archive here (default: a temp folder)")
    args = parser.parse_args()
    os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_score_"))
    work.mkdir(parents=True, exist_ok=True)
    n_max = max(args.records, *args.memory_sizes)
    archive = work / f"synth{n_max}"
    if not (archive / "ptbxl" / "ptbxl_database.csv").is_file():
        write_synthetic_archive(archive, SynthConfig(n_records=n_max, n_mimic_subjects=0, seed=0), overwrite=True)
    ptbxl = archive / "ptbxl"
    ckpt = work / "model.pt"
    if args.width > 0:
        args.overrides = [f"model.branches.{g}.base_width={args.width}" for g in ("rhythm", "morphology", "global")] \
            + args.overrides
    model, n_params = build_checkpoint(ckpt, args.config, args.overrides)

    # a PTB-XL folder of the first n records (same files) for each size
    import pandas as pd

    db = pd.read_csv(ptbxl / "ptbxl_database.csv").sort_values("ecg_id")

    def subset(n: int) -> Path:
        root = work / f"subset{n}"
        if not root.exists():
            root.mkdir()
            db.head(n).to_csv(root / "ptbxl_database.csv", index=False)
            (root / "records100").symlink_to(ptbxl / "records100")
        return root

    opts = ScoreOptions(batch_size=args.batch_size, workers=args.workers, chunk_size=args.chunk_size,
                        threads=args.threads)
    n_bare = min(args.records, 1024)
    bare_runs: dict[int, list[float]] = {1: [], 2: []}
    for t in (1, 2):
        torch.set_num_threads(t)
        bare_runs[t].append(bare_forward(model, n_bare, args.batch_size))
    torch.set_num_threads(args.threads)
    out = work / "scores"
    shutil.rmtree(out, ignore_errors=True)
    t0, cpu0, kids0 = time.perf_counter(), time.process_time(), _children_cpu()
    summary = score_archive(ckpt, subset(args.records), out, opts)
    e2e = args.records / (time.perf_counter() - t0)
    main_cpu = (time.process_time() - cpu0) / args.records * 1e3
    reader_cpu = (_children_cpu() - kids0) / args.records * 1e3
    torch.set_num_threads(1)
    c0 = time.process_time()
    bare_forward(model, n_bare, args.batch_size)
    fwd_cpu = (time.process_time() - c0) / n_bare * 1e3
    for t in (1, 2):
        torch.set_num_threads(t)
        bare_runs[t].append(bare_forward(model, n_bare, args.batch_size))
    bare_by_threads = {t: float(np.mean(v)) for t, v in bare_runs.items()}
    best_threads = max(bare_by_threads, key=bare_by_threads.get)
    bare = bare_by_threads[best_threads]
    ratio = e2e / bare

    memory = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "ECGPROTO_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(args.threads)}
    for n in args.memory_sizes:
        mem_out = work / f"mem{n}"
        shutil.rmtree(mem_out, ignore_errors=True)
        cmd = [sys.executable, "-m", "ecgproto.cli", "score", str(ckpt), str(subset(n)), "--out", str(mem_out),
               "--batch-size", str(args.batch_size), "--workers", str(args.workers),
               "--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]
        peak, wall = _peak_tree_rss(cmd, env)
        memory.append({"records": n, "peak_rss_mib": round(peak / 2**20, 1), "wall_s": round(wall, 1)})

    result = {
        "model_config": Path(args.config).name, "width": args.width, "overrides": args.overrides, "n_parameters": int(n_params),
        "records": args.records, "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads,
        "chunk_size": args.chunk_size, "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "bare_forward_records_per_s": round(bare, 1),
        "bare_forward_best_threads": best_threads,
        "bare_forward_runs_records_per_s": {f"{t}_threads": [round(x, 1) for x in v] for t, v in bare_runs.items()},
        "end_to_end_records_per_s": round(e2e, 1),
        "ratio_end_to_end_over_bare": round(ratio, 3),
        "cpu_ms_per_record": {"bare_forward_1_thread": round(fwd_cpu, 3), "end_to_end_main_process": round(main_cpu, 3),
                              "end_to_end_reader_processes": round(reader_cpu, 3)},
        # projection for dedicated cores (the main process and the readers each on their own core):
        # end-to-end rate = 1 / max(main, readers / workers), bare rate = 1 / forward (1 thread)
        "projected_ratio_dedicated_cores": round(fwd_cpu / max(main_cpu, reader_cpu / max(args.workers, 1)), 3),
        "status_counts": summary.status_counts,
        "peak_memory": memory,
        "peak_memory_growth_ratio": round(memory[1]["peak_rss_mib"] / memory[0]["peak_rss_mib"], 3),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "score_throughput" if args.width in (0, 8) else f"score_throughput_w{args.width}"
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Scoring throughput (`benchmarks/bench_score_throughput.py`)", "",
        f"Model: `{Path(args.config).name}` {' '.join(args.overrides)} ({n_params:,} parameters, untrained), "
        f"{args.records} synthetic 100 Hz records, batch {args.batch_size}, {args.threads} torch threads, "
        f"{args.workers} reader process(es), {os.cpu_count()} CPU cores "
        f"(1-min load average at the end: {result['load_average_1min_at_end']}).", "",
        "| measure | value |", "| --- | --- |",
        f"| bare forward, 1 torch thread (in-memory tensors) | {bare_by_threads[1]:.1f} records/s |",
        f"| bare forward, 2 torch threads | {bare_by_threads[2]:.1f} records/s |",
        f"| end to end (WFDB files → scores.parquet + scores.csv) | {e2e:.1f} records/s |",
        f"| ratio end-to-end / faster bare | **{ratio:.2f}** (target ≥ 0.7) |",
    ]
    md += [f"| peak RSS, scorer + readers, {m['records']} records | {m['peak_rss_mib']} MiB |" for m in memory]
    cpu = result["cpu_ms_per_record"]
    md += ["", f"CPU time per record: bare forward {cpu['bare_forward_1_thread']} ms (1 thread); end to end "
               f"{cpu['end_to_end_main_process']} ms in the main process (forward + output) and "
               f"{cpu['end_to_end_reader_processes']} ms in the reader process(es) (read, validate, high-pass). "
               f"With each on its own core the end-to-end / bare ratio would be "
               f"{result['projected_ratio_dedicated_cores']} (projection from these CPU times, not a measurement). "
               "RSS is summed over the scorer and its forked readers, so pages they share are counted twice."]
    (OUT / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=1))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
