"""Demo-scale training figure: time and macro AUROC (fused + per branch) on the synthetic archive.

    python benchmarks/demo_training.py --work runs/demo_bench          # synth + train + report
    python benchmarks/demo_training.py --from-run DIR --wall-seconds S  # report an existing run
    python benchmarks/demo_training.py --config configs/ptbxl_sample_smoke.yaml \
        --data ../shared/data/ptbxl-sample --out reports/ptbxl_sample_smoke.json \
        --note "500 real records: most labels have 0-5 test positives, noise-level figures"

Writes reports/demo_training.json: wall-clock seconds of `ecgproto train` with configs/demo.yaml,
test/validation macro AUROC of the fused model and of each branch, the machine's CPU count and
load average (the figure is only comparable on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def report(run_dir: Path, wall_seconds: float, out: Path, config: str, data: str | None = None,
           note: str | None = None) -> dict:
    """Write the training report from a finished run folder."""
    summary = json.loads((run_dir / "train_summary.json").read_text())
    result = {
        "config": config,
        "data": data or "synthetic archive from `ecgproto synth` with the same config",
        "note": note,
        "wall_seconds_train": round(wall_seconds, 1),
        "limit_seconds": 600,
        "macro_auroc_test": summary["macro_auroc"]["test"],
        "macro_auroc_val": summary["macro_auroc"]["val"],
        "target_fused_test": 0.90 if data is None else None,
        "n_records": summary["n_records"],
        "n_prototypes": summary["n_prototypes"],
        "n_parameters": summary["n_parameters"],
        "unique_source_ecgs": {g: p["unique_source_ecgs"] for g, p in summary["projection"].items()},
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": "train.threads from the config",
        "python": platform.python_version(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "demo_bench"), help="folder for synth data, cache, run")
    parser.add_argument("--config", default="configs/demo.yaml", help="config (default configs/demo.yaml)")
    parser.add_argument("--from-run", default=None, help="report an existing run folder instead of training")
    parser.add_argument("--wall-seconds", type=float, default=None, help="with --from-run: measured training time")
    parser.add_argument("--data", default=None, help="train on this PTB-XL folder instead of a synthetic archive")
    parser.add_argument("--note", default=None, help="caveat stored in the report")
    parser.add_argument("--out", default=str(REPO / "reports" / "demo_training.json"), help="report path")
    args = parser.parse_args()
    if args.from_run:
        if args.wall_seconds is None:
            parser.error("--from-run needs --wall-seconds")
        report(Path(args.from_run), args.wall_seconds, Path(args.out), args.config, args.data, args.note)
        return 0
    work = Path(args.work)
    cli = [sys.executable, "-m", "ecgproto.cli"]
    synth = Path(args.data) if args.data else work / "synth"
    if args.data is None and not (synth / "ptbxl" / "ptbxl_database.csv").is_file():
        subprocess.run([*cli, "synth", "--config", args.config, "--out", str(synth), "--n-mimic-subjects", "0",
                        "--force"], check=True, cwd=REPO)
    subprocess.run([*cli, "prepare", "--config", args.config, "--root", str(synth), "--out", str(work / "cache")],
                   check=True, cwd=REPO)
    t0 = time.perf_counter()
    subprocess.run([*cli, "train", "--config", args.config, "--data", str(synth), "--set",
                    f"data.cache_dir={work / 'cache'}", "--out", str(work / "run")], check=True, cwd=REPO)
    report(work / "run", time.perf_counter() - t0, Path(args.out), args.config, args.data, args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
