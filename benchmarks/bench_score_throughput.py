"""End-to-end scoring throughput against the bare forward pass, the cost of 500 → 100 Hz
resampling, and peak memory vs archive size.

For each model (default: ``configs/demo.yaml`` and ``configs/default.yaml``, untrained, seeded,
BatchNorm folded as the scorer runs them), ``--rounds`` rounds, each measuring side by side:

1. bare forward, one thread: the scorer's own ``forward_batch`` on in-memory float32 tensors
   (N, 12, 1000), batches of ``--batch-size``, best of 3 timed passes after a warm-up, in a fresh
   process;
2. bare forward, ``--workers`` processes at once, one thread each (what the cores give when they
   all run the model: the sum of their rates);
3. end to end at 100 Hz: ``ecgproto score`` on the synthetic archive's WFDB files (reading,
   validation, high-pass and forward pass in ``--workers`` scoring processes of one thread,
   chunked Parquet + CSV output), the run's own ``summary.json`` ``records_per_s`` (the scoring
   loop, without interpreter start-up and checkpoint loading), in a fresh process;
4. end to end at 500 Hz: the same records from their 500 Hz files (a manifest of
   ``records500/``), resampled to the model's 100 Hz as a MIMIC-IV-ECG archive is.

The headline ratio is end to end ÷ (workers × the one-thread bare pass): 1.0 would mean reading,
validating, filtering and writing cost nothing and the workers scale perfectly. The second ratio,
end to end ÷ the concurrent bare passes, separates what reading costs from what sharing the cores
costs. The ceilings say what the headline ratio could be at best: forward ÷ (forward + reading), with
the measured ``read_batch`` cost, and with only the raw file I/O (header bytes and samples, nothing
checked); a model whose forward pass costs no more than reading a record cannot reach 0.9 on any
arrangement of the cores. All are medians over the rounds (each round's figures come from the same minute). The
resampling cost is (1/rate₅₀₀ − 1/rate₁₀₀) × workers: CPU milliseconds per record. Peak resident
memory of the scorer + workers (sampled from /proc every 20 ms) at ``--small`` and ``--records``
records; the steady-state rate is the records between those two sizes over the time between the
two runs (start-up, the first batches and the final concatenation drop out).

Writes ``reports/benchmarks/score_throughput.json`` and ``.md``.

    python benchmarks/bench_score_throughput.py            # both models, ~10 min on 2 cores
    python benchmarks/bench_score_throughput.py --configs configs/demo.yaml --rounds 1
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
from ecgproto.model.fold import fold_batchnorm  # noqa: E402

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


def build_checkpoint(path: Path, config: str) -> dict:
    """An untrained, seeded checkpoint of ``config``'s model; its size."""
    cfg = load_config(config, [])
    torch.manual_seed(cfg.seed)
    model = ProtoECGNet(cfg.model, 1000, 100).eval()
    meta = {"config": to_dict(cfg), "labels": list(all_labels()), "sampling_rate": 100, "n_samples": 1000,
            "highpass": {"cutoff_hz": cfg.data.highpass_hz, "order": cfg.data.highpass_order},
            "thresholds": [0.5] * 71}
    save_checkpoint(path, model, meta)
    return {"config": Path(config).name, "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "n_prototypes": int(model.n_prototypes)}


def bare_forward(model: torch.nn.Module, n: int, batch_size: int, repeats: int = 3) -> float:
    """Best records/s of ``repeats`` timed passes of the scorer's ``forward_batch`` alone on
    in-memory tensors, after one warm-up pass."""
    x = np.random.default_rng(0).normal(0, 0.3, (n, 12, 1000)).astype(np.float32)
    rates = []
    for rep in range(repeats + 1):
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            forward_batch(model, x[i:i + batch_size])
        if rep:
            rates.append(n / (time.perf_counter() - start))
    return max(rates)


def _bare_cmd(ckpt: Path, n: int, batch_size: int) -> list[str]:
    return [sys.executable, __file__, "--bare-only", str(ckpt), "--records", str(n), "--batch-size", str(batch_size)]


def bare_processes(ckpt: Path, n: int, batch_size: int, processes: int) -> list[float]:
    """records/s of ``processes`` fresh one-thread bare-forward processes started together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(_bare_cmd(ckpt, n, batch_size), env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("bare-forward subprocess failed")
        rates.append(json.loads(out.strip().splitlines()[-1])["records_per_s"])
    return rates


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def end_to_end(ckpt: Path, source: Path, out: Path, args: argparse.Namespace) -> dict:
    """One ``ecgproto score`` run in a fresh process: its rate, peak tree RSS, CPU time."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "ECGPROTO_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "ecgproto.cli", "score", str(ckpt), str(source), "--out", str(out),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--chunk-size", str(args.chunk_size), "--threads", "1"]
    cpu0 = _children_cpu()
    peak, wall = _peak_tree_rss(cmd, env)
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"records": summary["n_records"], "records_per_s": summary["records_per_s"],
            "status_counts": summary["status_counts"], "peak_rss_mib": round(peak / 2**20, 1),
            "wall_s_with_startup": round(wall, 1), "cpu_s": round(_children_cpu() - cpu0, 2)}


def read_costs(paths100: list[str], paths500: list[str], repeats: int = 3) -> dict:
    """CPU ms per record of the scorer's reading + validation + high-pass (``read_batch``), one
    thread, 100 Hz files vs the same records' 500 Hz files; the reader without the high-pass,
    record by record (``read_record``) vs batched (``read_records``, what ``read_batch`` calls);
    and the raw file I/O alone (:func:`raw_io`); alternating, best of ``repeats``."""
    from ecgproto.data.preprocess import Preprocessing
    from ecgproto.data.wfdb_io import read_record, read_records
    from ecgproto.score.worker import read_batch

    prep = Preprocessing.from_meta({"sampling_rate": 100, "n_samples": 1000,
                                    "highpass": {"cutoff_hz": 0.5, "order": 1}})

    def batches(paths: list[str], read=lambda chunk: read_batch(chunk, prep)) -> None:
        for i in range(0, len(paths), 64):
            read(paths[i:i + 64])

    passes = {"100": (batches, paths100), "500": (batches, paths500),
              "alone": (lambda paths: [read_record(p, 100, 1000) for p in paths], paths100),
              "together": (lambda paths: batches(paths, lambda chunk: read_records(chunk, 100, 1000)), paths100),
              "raw": (lambda paths: [raw_io(p) for p in paths], paths100)}
    best = dict.fromkeys(passes, np.inf)
    for _ in range(repeats):
        for key, (run, paths) in passes.items():
            start = time.process_time()
            run(paths)
            best[key] = min(best[key], (time.process_time() - start) / len(paths) * 1e3)
    return {"read_ms_per_record_100hz": round(best["100"], 3), "read_ms_per_record_500hz": round(best["500"], 3),
            "resampling_ms_per_record": round(best["500"] - best["100"], 3),
            "reader_ms_per_record_one_by_one": round(best["alone"], 3),
            "reader_ms_per_record_batched": round(best["together"], 3),
            "raw_io_ms_per_record_100hz": round(best["raw"], 3)}


def raw_io(path: str) -> np.ndarray:
    """The least any reader does: the header's bytes and the int16 samples as float32, nothing checked."""
    with open(f"{path}.hea", "rb") as fh:
        fh.read().decode()
    return np.fromfile(f"{path}.dat", dtype="<i2").reshape(-1, 12).T.astype(np.float32)


def ceiling(bare_records_per_s: float, read_ms: float) -> float:
    """The ratio end to end ÷ (workers × bare) if reading ``read_ms`` per record were the only cost
    added to the forward pass and the workers scaled perfectly: forward ÷ (forward + read)."""
    forward_ms = 1e3 / bare_records_per_s
    return forward_ms / (forward_ms + read_ms)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def measure_model(config: str, work: Path, sources: dict[str, Path], args: argparse.Namespace,
                  reads: dict) -> dict:
    """Every round of one model; medians and the per-round figures."""
    ckpt = work / f"{Path(config).stem}.pt"
    info = build_checkpoint(ckpt, config)
    n_bare = min(args.records, args.bare_records)
    rounds = []
    for r in range(args.rounds):
        one = bare_processes(ckpt, n_bare, args.batch_size, 1)[0]
        together = bare_processes(ckpt, n_bare, args.batch_size, args.workers)
        e100 = end_to_end(ckpt, sources["100"], work / "scores", args)
        e500 = end_to_end(ckpt, sources["500"], work / "scores", args)
        small = end_to_end(ckpt, sources["small"], work / "scores", args)
        rate100, rate500 = e100["records_per_s"], e500["records_per_s"]
        # steady state: the records between the two archive sizes over the time between them
        # (what start-up, the pool's first batches and the final concatenation cost drops out)
        marginal = (args.records - args.small) / (args.records / rate100 - args.small / small["records_per_s"])
        rounds.append({
            "bare_1_thread_records_per_s": round(one, 1),
            "bare_concurrent_records_per_s": [round(x, 1) for x in together],
            "end_to_end_100hz_records_per_s": rate100, "end_to_end_500hz_records_per_s": rate500,
            "ratio_end_to_end_over_workers_x_bare": round(rate100 / (args.workers * one), 3),
            "end_to_end_small_records_per_s": small["records_per_s"],
            "steady_state_records_per_s": round(marginal, 1),
            "ratio_steady_state_over_workers_x_bare": round(marginal / (args.workers * one), 3),
            "ratio_end_to_end_over_concurrent_bare": round(rate100 / sum(together), 3),
            "ratio_concurrent_bare_over_workers_x_bare": round(sum(together) / (args.workers * one), 3),
            "ceiling_forward_over_forward_plus_read": round(ceiling(one, reads["read_ms_per_record_100hz"]), 3),
            "ceiling_forward_over_forward_plus_raw_io": round(ceiling(one, reads["raw_io_ms_per_record_100hz"]), 3),
            "ratio_500hz_over_100hz": round(rate500 / rate100, 3),
            "resampling_cpu_ms_per_record": round((1 / rate500 - 1 / rate100) * args.workers * 1e3, 3),
            "end_to_end_cpu_ms_per_record": round(e100["cpu_s"] / e100["records"] * 1e3, 3),
            "status_counts": e100["status_counts"], "peak_rss_mib": e100["peak_rss_mib"],
            "peak_rss_mib_small": small["peak_rss_mib"],
            "load_average_1min": round(os.getloadavg()[0], 2),
        })
        print(f"{info['config']} round {r + 1}: {json.dumps(rounds[-1])}", file=sys.stderr)
    keys = ("bare_1_thread_records_per_s", "end_to_end_100hz_records_per_s", "end_to_end_500hz_records_per_s",
            "ratio_end_to_end_over_workers_x_bare", "steady_state_records_per_s",
            "ratio_steady_state_over_workers_x_bare", "ratio_end_to_end_over_concurrent_bare",
            "ratio_concurrent_bare_over_workers_x_bare", "ceiling_forward_over_forward_plus_read",
            "ceiling_forward_over_forward_plus_raw_io", "ratio_500hz_over_100hz", "resampling_cpu_ms_per_record",
            "end_to_end_cpu_ms_per_record")
    medians = {k: round(_median([rd[k] for rd in rounds]), 3) for k in keys}
    medians["bare_concurrent_records_per_s"] = round(_median([sum(rd["bare_concurrent_records_per_s"])
                                                              for rd in rounds]), 1)
    memory = [{"records": args.small, "peak_rss_mib": max(rd["peak_rss_mib_small"] for rd in rounds)},
              {"records": args.records, "peak_rss_mib": max(rd["peak_rss_mib"] for rd in rounds)}]
    return {**info, "median": medians, "rounds": rounds, "peak_memory": memory,
            "peak_memory_growth_ratio": round(memory[1]["peak_rss_mib"] / memory[0]["peak_rss_mib"], 3)}


def prepare_sources(work: Path, n: int, n_small: int) -> dict[str, Path]:
    """The synthetic archive (100 and 500 Hz files of the same ``n`` records); a PTB-XL folder of its
    first ``n``, one of its first ``n_small`` records and a manifest of the ``n`` 500 Hz files."""
    import pandas as pd

    archive = work / f"synth{n}"
    if not (archive / "ptbxl" / "records500").is_dir():
        write_synthetic_archive(archive, SynthConfig(n_records=n, n_mimic_subjects=0, seed=0, write_500hz=True),
                                overwrite=True)
    ptbxl = archive / "ptbxl"
    db = pd.read_csv(ptbxl / "ptbxl_database.csv").sort_values("ecg_id")
    sources = {}
    for name, rows in (("100", n), ("small", n_small)):
        root = work / f"ptbxl{rows}"
        if not root.exists():
            root.mkdir()
            db.head(rows).to_csv(root / "ptbxl_database.csv", index=False)
            (root / "records100").symlink_to(ptbxl / "records100")
        sources[name] = root
    manifest = work / "records500.csv"
    pd.DataFrame({"record_id": db["ecg_id"].head(n), "record": [str(ptbxl / f) for f in db["filename_hr"].head(n)]}
                 ).to_csv(manifest, index=False)
    sources["500"] = manifest
    sources["paths100"] = [str(ptbxl / f) for f in db["filename_lr"].head(500)]
    sources["paths500"] = [str(ptbxl / f) for f in db["filename_hr"].head(500)]
    return sources


def write_markdown(result: dict, path: Path) -> None:
    md = [
        "# Scoring throughput (`benchmarks/bench_score_throughput.py`)", "",
        f"{result['records']} synthetic records, batch {result['batch_size']}, {result['workers']} scoring processes × "
        f"1 torch thread, {result['cpu_count']} CPU cores, {result['rounds']} rounds (medians; every figure from a "
        f"fresh process; 1-min load average at the end {result['load_average_1min_at_end']}). Untrained models with "
        "BatchNorm folded, as the scorer runs them.", "",
        "| model | bare forward, 1 thread | workers × that | bare, workers at once | end to end 100 Hz | "
        "**end to end ÷ (workers × 1-thread bare)** | steady state (records between the two sizes) | "
        "end to end ÷ concurrent bare | end to end 500 Hz → 100 Hz | resampling cost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in result["models"]:
        md_ = m["median"]
        md.append(
            f"| `{m['config']}` ({m['n_parameters']:,} parameters, {m['n_prototypes']:,} prototypes) | "
            f"{md_['bare_1_thread_records_per_s']:.0f} rec/s | {md_['bare_1_thread_records_per_s'] * result['workers']:.0f} | "
            f"{md_['bare_concurrent_records_per_s']:.0f} | {md_['end_to_end_100hz_records_per_s']:.0f} rec/s | "
            f"**{md_['ratio_end_to_end_over_workers_x_bare']:.2f}** (target ≥ 0.9) | "
            f"{md_['steady_state_records_per_s']:.0f} rec/s = {md_['ratio_steady_state_over_workers_x_bare']:.2f} | "
            f"{md_['ratio_end_to_end_over_concurrent_bare']:.2f} | {md_['end_to_end_500hz_records_per_s']:.0f} rec/s "
            f"({md_['ratio_500hz_over_100hz']:.2f}×) | {md_['resampling_cpu_ms_per_record']:.2f} ms/record |")
    rc = result["read_costs"]
    md += ["", f"Reading + validation + high-pass alone (`read_batch`, one thread, CPU time): "
               f"{rc['read_ms_per_record_100hz']} ms/record from 100 Hz files, {rc['read_ms_per_record_500hz']} ms/record "
               f"from 500 Hz files (resampling {rc['resampling_ms_per_record']} ms/record); the reader without the "
               f"high-pass {rc['reader_ms_per_record_batched']} ms/record batched (`read_records`, what `read_batch` "
               f"calls) vs {rc['reader_ms_per_record_one_by_one']} ms/record one record at a time (`read_record`, "
               f"the same results); the least any reader "
               f"does (header bytes + int16 samples as float32, nothing checked or filtered): "
               f"{rc['raw_io_ms_per_record_100hz']} ms/record.", "",
           "Ceiling of the headline ratio if that reading were the only cost added to the forward pass and the "
           "workers scaled perfectly, forward ÷ (forward + read): "
           + "; ".join(f"`{m['config']}` {m['median']['ceiling_forward_over_forward_plus_read']:.2f} "
                       f"({m['median']['ceiling_forward_over_forward_plus_raw_io']:.2f} with raw I/O only)"
                       for m in result["models"]) + ".", ""]
    for m in result["models"]:
        mem = m["peak_memory"]
        md.append(f"Peak RSS (scorer + workers, summed), `{m['config']}`: {mem[0]['peak_rss_mib']} MiB at "
                  f"{mem[0]['records']} records, {mem[1]['peak_rss_mib']} MiB at {mem[1]['records']} "
                  f"(ratio {m['peak_memory_growth_ratio']}).")
    md += ["", "RSS is summed over the scorer and its forked workers, so pages they share (the model, libraries) "
               "are counted once per process."]
    path.write_text("\n".join(md) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=[str(REPO / "configs" / "demo.yaml"),
                                                         str(REPO / "configs" / "default.yaml")],
                        help="model configs to measure (default: the demo and the default-size model)")
    parser.add_argument("--records", type=int, default=2000, help="synthetic records scored end to end")
    parser.add_argument("--small", type=int, default=500, help="smaller archive (peak-memory check and steady-state rate)")
    parser.add_argument("--bare-records", type=int, default=512, help="records of each bare-forward pass")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="scoring processes (one torch thread each)")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of side-by-side measurements (medians)")
    parser.add_argument("--work-dir", default=None, help="keep the archive here (default: a temp folder)")
    parser.add_argument("--out", default=str(OUT / "score_throughput.json"), help="JSON to write (.md beside it)")
    parser.add_argument("--bare-only", default=None, metavar="CHECKPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_only:  # child mode: one-thread bare forward pass of CHECKPOINT, one JSON line
        torch.set_num_threads(1)
        model, _ = load_checkpoint(args.bare_only)
        rate = bare_forward(fold_batchnorm(model.eval()), args.records, args.batch_size)
        print(json.dumps({"records_per_s": rate}))
        return 0
    os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_score_"))
    work.mkdir(parents=True, exist_ok=True)
    sources = prepare_sources(work, args.records, args.small)
    torch.set_num_threads(1)
    result = {
        "definition": "ratio = end-to-end records/s (ecgproto score, WFDB files -> Parquet + CSV, workers x 1 "
                      "thread) / (workers x the one-thread bare forward records/s), measured in the same round; "
                      "medians over rounds",
        "records": args.records, "batch_size": args.batch_size, "workers": args.workers, "rounds": args.rounds,
        "chunk_size": args.chunk_size, "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }
    result["read_costs"] = read_costs(sources["paths100"], sources["paths500"])
    result["models"] = [measure_model(c, work, sources, args, result["read_costs"]) for c in args.configs]
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    print(json.dumps({m["config"]: m["median"] for m in result["models"]}, indent=1))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
