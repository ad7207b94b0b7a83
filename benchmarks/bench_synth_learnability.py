"""Learnability of the synthetic labels and generation speed.

Writes ``reports/benchmarks/synth_learnability.json`` (logistic regression on per-lead
summary features, trained on folds 1-8, macro AUROC on fold 10) and
``reports/benchmarks/synth_speed.json`` (simulation vs file-writing time of
``write_synthetic_archive``).

    python benchmarks/bench_synth_learnability.py [--n-records 4000] [--speed-records 2000] [--speed-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")

from ecgproto.synth.config import SynthConfig  # noqa: E402
from ecgproto.synth import write_synthetic_archive  # noqa: E402
from ecgproto.synth.summary_features import learnability  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-records", type=int, default=4000, help="records for the learnability check")
    parser.add_argument("--speed-records", type=int, default=2000, help="PTB-XL-shaped records for the speed run")
    parser.add_argument("--speed-mimic", type=int, default=300, help="MIMIC-shaped subjects for the speed run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-only", action="store_true", help="skip the learnability check")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "omp_threads": 1}

    if not args.speed_only:
        run_learnability(args, machine)
    run_speed(args, machine)


def run_learnability(args: argparse.Namespace, machine: dict) -> None:
    t0 = time.perf_counter()
    result = learnability(args.n_records, args.seed, min_test_pos=5)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine
    (OUT / "synth_learnability.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"learnability: macro AUROC {result['macro_auroc']:.3f} over {len(result['per_label'])} labels "
          f"(n_test={result['n_test']})")
    for code, auc in sorted(result["per_label"].items(), key=lambda kv: kv[1]):
        print(f"  {code:8s} {auc:.3f}")


def run_speed(args: argparse.Namespace, machine: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:
        cfg = SynthConfig(n_records=args.speed_records, n_mimic_subjects=args.speed_mimic, seed=args.seed)
        t0 = time.perf_counter()
        summary = write_synthetic_archive(tmp / "archive", cfg)
        total = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (tmp / "archive").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tm = summary["timings"]
    n_ecg = summary["mimic"]["n_ecgs"]
    speed = {
        "ptbxl_records_100hz": args.speed_records,
        "mimic_subjects": args.speed_mimic,
        "mimic_ecgs_500hz": n_ecg,
        "total_seconds": round(total, 2),
        "archive_megabytes": round(size / 1e6, 1),
        "ptbxl_simulate_records_per_minute": round(60 * args.speed_records / tm["ptbxl_simulate_100hz_s"]),
        "ptbxl_write_records_per_minute": round(60 * args.speed_records / tm["ptbxl_write_100hz_s"]),
        "mimic_simulate_records_per_minute_500hz": round(60 * n_ecg / tm["mimic_simulate_s"]),
        "mimic_write_records_per_minute_500hz": round(60 * n_ecg / tm["mimic_write_s"]),
        "timings_seconds": {k: round(v, 2) for k, v in tm.items()},
        "machine": machine,
    }
    (OUT / "synth_speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    print(json.dumps(speed, indent=2))


if __name__ == "__main__":
    main()
