"""Inference speed of a model with BatchNorm folded into its convolutions vs the model itself.

For each config (demo and default size, 10 s at 100 Hz): the model (BatchNorm running statistics
from a few train-mode forwards) and ``fold_batchnorm(model)`` run the same batch, in one process
on one thread, in alternating timed passes (so machine load affects both alike); median wall and
CPU seconds per pass, and the largest output differences.

    python benchmarks/bench_fold.py
Writes reports/benchmarks/fold_batchnorm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from ecgproto.config import load_config
from ecgproto.model import ProtoECGNet, fold_batchnorm

REPO = Path(__file__).resolve().parents[1]


def timed_passes(models: dict[str, torch.nn.Module], x: torch.Tensor, n_passes: int) -> dict[str, dict[str, float]]:
    """Median wall/CPU seconds per forward of each model, passes alternating between the models."""
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():  # warm-up
            m(x)
        for _ in range(n_passes):
            for name, m in models.items():
                t0, c0 = time.perf_counter(), time.process_time()
                m(x)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    return {k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k]),
                "wall_s_all": wall[k]} for k in models}


def bench_config(config: Path, n_samples: int, fs: int, batch: int, n_passes: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ProtoECGNet(load_config(str(config)).model, n_samples, fs)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(0.3 * torch.randn(8, 12, n_samples, generator=gen))
    model.eval()
    folded = fold_batchnorm(model)
    x = 0.3 * torch.randn(batch, 12, n_samples, generator=gen)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    diffs = {"logits": (ref.logits - got.logits).abs().max().item(),
             "similarities": (ref.similarities - got.similarities).abs().max().item()}
    for g in ref.branch:
        diffs[f"{g}_latent"] = (ref.branch[g].latent - got.branch[g].latent).abs().max().item()
    times = timed_passes({"unfolded": model, "folded": folded}, x, n_passes)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    return {
        "config": str(config.relative_to(REPO)), "n_samples": n_samples, "fs": fs, "batch": batch,
        "n_passes": n_passes, "n_batchnorm_folded": n_bn,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "unfolded": times["unfolded"], "folded": times["folded"],
        "speedup_wall": times["unfolded"]["wall_s"] / times["folded"]["wall_s"],
        "speedup_cpu": times["unfolded"]["cpu_s"] / times["folded"]["cpu_s"],
        "records_per_s_unfolded": batch / times["unfolded"]["wall_s"],
        "records_per_s_folded": batch / times["folded"]["wall_s"],
        "max_abs_diff": diffs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/demo.yaml", "configs/default.yaml"])
    parser.add_argument("--samples", type=int, default=1000, help="samples per record (default 1000)")
    parser.add_argument("--fs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--passes", type=int, default=7, help="timed passes per model (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "fold_batchnorm.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    results = []
    for c in args.configs:
        r = bench_config(REPO / c, args.samples, args.fs, args.batch, args.passes, args.seed)
        results.append(r)
        print(f"{r['config']}: unfolded {r['unfolded']['wall_s']:.3f} s, folded {r['folded']['wall_s']:.3f} s per "
              f"batch of {r['batch']} -> {r['speedup_wall']:.3f}x wall ({r['speedup_cpu']:.3f}x CPU); "
              f"max |d logits| {r['max_abs_diff']['logits']:.2e}")
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
