"""End-to-end scoring throughput vs the bare forward pass, and peak memory vs archive size.

In one run, on the same (untrained, seeded) model built from ``configs/demo.yaml``, each
figure measured in a fresh process, as a user would run it (no thread pool or page cache of
one measurement spills into the next):

1. bare forward: the model on in-memory float32 tensors (N, 12, 1000), batches of
   ``--batch-size``, no reading, no writing, at 1 and at 2 torch threads, best of 3 timed passes;
   the faster is the reference;
2. end to end: ``ecgproto score`` on the synthetic archive's WFDB files (reading, validation,
   high-pass and forward pass in ``--workers`` scoring processes, chunked Parquet+CSV output,
   final concatenation); the rate is the run's own ``summary.json`` ``records_per_s`` (the
   scoring loop, without interpreter start-up and checkpoint loading), best of ``--repeats``
   runs (each in a fresh process), as the bare pass is a best of passes;
3. peak resident memory of the scoring process tree (scorer + workers, sampled from /proc
   every 20 ms) of the end-to-end runs at two archive sizes.

Writes ``reports/benchmarks/score_throughput.json`` and ``.md`` (``score_throughput_w<W>.*``
for another ``--width``).

    python benchmarks/bench_score_throughput.py --records 2000
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
from ecgproto.yaml_dataclass import to_dict  # noqa: E402
from ecgproto.synth.config import SynthConfig  # noqa: E402
from ecgproto.data.labels import all_labels  # noqa: E402
from ecgproto.synth import write_synthetic_archive  # noqa: E402
from ecgproto.model import ProtoECGNet  # noqa: E402
from ecgproto.score.worker import forward_batch  # noqa: E402
from ecgproto.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

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


def bare_forward(model: ProtoECGNet, n: int, batch_size: int, repeats: int = 3) -> float:
    """Best records/s of ``repeats`` timed passes of the forward pass alone on in-memory tensors
    (the scorer's own ``forward_batch``), after one warm-up pass."""
    x = np.random.default_rng(0).normal(0, 0.3, (n, 12, 1000)).astype(np.float32)
    rates = []
    for rep in range(repeats + 1):
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            forward_batch(model, x[i:i + batch_size])
        if rep:
            rates.append(n / (time.perf_counter() - start))
    return max(rates)


def _bare_in_fresh_process(ckpt: Path, threads: int, n: int, batch_size: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--bare-only", str(ckpt), "--threads", str(threads),
           "--records", str(n), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _end_to_end(ckpt: Path, root: Path, out: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One ``ecgproto score`` run in a fresh process: its summary, peak tree RSS, wall and CPU time."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "ecgproto.cli", "score", str(ckpt), str(root), "--out", str(out),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]
    cpu0 = _children_cpu()
    peak, wall = _peak_tree_rss(cmd, env)
    summary = json.loads((out / "summary.json").read_text())
    return {"records": summary["n_records"], "records_per_s": summary["records_per_s"],
            "status_counts": summary["status_counts"], "peak_rss_mib": round(peak / 2**20, 1),
            "wall_s_with_startup": round(wall, 1), "cpu_s": round(_children_cpu() - cpu0, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="synthetic 100 Hz records scored end to end")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[500, 2000],
                        help="two archive sizes for the peak-memory check (the larger is also the throughput run)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="config of the model")
    parser.add_argument("--width", type=int, default=0,
                        help="base_width of every branch backbone (0 = as in --config, i.e. the demo model; "
                             "64 = reference size)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="scoring processes of the end-to-end run")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per scoring process (0 = cores / workers, as `ecgproto score`)")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs of the largest size (best is used)")
    parser.add_argument("--work-dir", default=None, help="keep the archive here (default: a temp folder)")
    parser.add_argument("--bare-only", default=None, metavar="CHECKPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_only:  # child mode: time the bare forward pass of CHECKPOINT and print one JSON line
        torch.set_num_threads(args.threads)
        model, _ = load_checkpoint(args.bare_only)
        print(json.dumps({"threads": args.threads, "records_per_s": bare_forward(model.eval(), args.records,
                                                                                    args.batch_size)}))
        return 0
    os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_score_"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted({*args.memory_sizes, args.records})
    archive = work / f"synth{sizes[-1]}"
    if not (archive / "ptbxl" / "ptbxl_database.csv").is_file():
        write_synthetic_archive(archive, SynthConfig(n_records=sizes[-1], n_mimic_subjects=0, seed=0), overwrite=True)
    ptbxl = archive / "ptbxl"
    ckpt = work / "model.pt"
    if args.width > 0:
        args.overrides = [f"model.branches.{g}.base_width={args.width}" for g in ("rhythm", "morphology", "global")] \
            + args.overrides
    _, n_params = build_checkpoint(ckpt, args.config, args.overrides)

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

    n_bare = min(args.records, 1024)
    bare = {t: _bare_in_fresh_process(ckpt, t, n_bare, args.batch_size) for t in (1, 2)}
    best_threads = max(bare, key=lambda t: bare[t]["records_per_s"])
    bare_rate = bare[best_threads]["records_per_s"]

    env = {**os.environ, "PYTHONPATH": str(REPO), "ECGPROTO_NO_PROGRESS": "1"}
    runs = {n: _end_to_end(ckpt, subset(n), work / f"scores{n}", args, env) for n in sizes}
    repeats = [runs[args.records]] + [_end_to_end(ckpt, subset(args.records), work / f"scores{args.records}", args, env)
                                      for _ in range(max(args.repeats, 1) - 1)]
    e2e = max(repeats, key=lambda r: r["records_per_s"])
    ratio = e2e["records_per_s"] / bare_rate
    memory = [{"records": n, "peak_rss_mib": runs[n]["peak_rss_mib"]} for n in args.memory_sizes]

    result = {
        "model_config": Path(args.config).name, "width": args.width, "overrides": args.overrides,
        "n_parameters": int(n_params), "records": args.records, "batch_size": args.batch_size,
        "workers": args.workers, "threads_per_worker": args.threads or max(1, (os.cpu_count() or 1) // max(args.workers, 1)),
        "chunk_size": args.chunk_size, "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "bare_forward_records_per_s": {f"{t}_threads": round(b["records_per_s"], 1) for t, b in bare.items()},
        "bare_forward_best_threads": best_threads,
        "end_to_end_records_per_s": e2e["records_per_s"],
        "end_to_end_runs_records_per_s": [r["records_per_s"] for r in repeats],
        "ratio_end_to_end_over_bare": round(ratio, 3),
        "end_to_end_cpu_ms_per_record": round(e2e["cpu_s"] / args.records * 1e3, 3),
        "status_counts": e2e["status_counts"],
        "end_to_end_runs": {str(n): r for n, r in runs.items()},
        "peak_memory": memory,
        "peak_memory_growth_ratio": round(memory[1]["peak_rss_mib"] / memory[0]["peak_rss_mib"], 3),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "score_throughput" if args.width == 0 else f"score_throughput_w{args.width}"
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Scoring throughput (`benchmarks/bench_score_throughput.py`)", "",
        f"Model: `{Path(args.config).name}` {' '.join(args.overrides)} ({n_params:,} parameters, untrained), "
        f"{args.records} synthetic 100 Hz records, batch {args.batch_size}, {args.workers} scoring process(es) with "
        f"{result['threads_per_worker']} torch thread(s) each, {os.cpu_count()} CPU cores "
        f"(1-min load average at the end: {result['load_average_1min_at_end']}). Every figure from a fresh process.", "",
        "| measure | value |", "| --- | --- |",
        f"| bare forward, 1 torch thread (in-memory tensors) | {bare[1]['records_per_s']:.1f} records/s |",
        f"| bare forward, 2 torch threads | {bare[2]['records_per_s']:.1f} records/s |",
        f"| end to end (WFDB files → scores.parquet + scores.csv), best of {len(repeats)} | "
        f"{e2e['records_per_s']:.1f} records/s (runs: {', '.join(str(round(r['records_per_s'])) for r in repeats)}) |",
        f"| ratio end-to-end / faster bare | **{ratio:.2f}** (target ≥ 0.7) |",
        f"| CPU time per record, end to end (all processes, incl. start-up and checkpoint loading) | {result['end_to_end_cpu_ms_per_record']} ms |",
    ]
    md += [f"| peak RSS, scorer + workers, {m['records']} records | {m['peak_rss_mib']} MiB |" for m in memory]
    md += ["", "RSS is summed over the scorer and its forked workers, so pages they share (the model, "
               "libraries) are counted once per process."]
    (OUT / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=1))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
