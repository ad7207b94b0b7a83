"""Cost of a prototype-branch training step vs the same backbone + linear head without prototypes.

Both steps are the trainer's own code paths (``ecgproto.train.stages``), on the same batch,
measured in one run, interleaved so machine load affects both alike:

- prototype step = the ``joint`` stage: backbone + add-on + prototype layer + last layer,
  full joint loss (BCE + clustering + separation + diversity + contrastive), backward, Adam;
- baseline step = the ``warmup`` stage: the same backbone + add-on + a linear head on the
  pooled latent, BCE only, backward, Adam (no prototype layer at all).

Median CPU (process) time per step over ``--steps`` steps after 2 warm-up steps each.

    python benchmarks/bench_prototype_overhead.py --config configs/demo.yaml
Writes reports/benchmarks/prototype_overhead.json (and .md). Fails (exit 1) if a ratio > --max-ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ecgproto.config import load_config
from ecgproto.data.labels import label_table
from ecgproto.model import ProtoECGNet
from ecgproto.train.branch_forward import BranchRunner
from ecgproto.train.criterion import build_branch_criterion
from ecgproto.train.stages import make_warmup_head, setup_stage, stage_loss

REPO = Path(__file__).resolve().parents[1]


def make_step(model, group: str, stage: str, x, y71, criterion, seed: int):
    """A closure running one optimisation step of ``stage`` for branch ``group`` on (x, y)."""
    head = make_warmup_head(model, group, x.shape[-1], seed) if stage == "warmup" else None
    setup = setup_stage(model, group, stage, head)
    optimizer = torch.optim.Adam(setup.params, lr=1e-4)
    runner = BranchRunner(model, group, latent_only=stage == "warmup")
    y = y71[:, label_table().indices(group)]

    def step() -> None:
        setup_stage(model, group, stage, head)  # re-freeze: the two stages alternate on one model
        setup.train()
        loss, _ = stage_loss(setup, model, runner(x), y, criterion)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def median_times(step_a, step_b, n_steps: int) -> tuple[float, float]:
    """Median CPU seconds per step of two interleaved step functions."""
    for _ in range(2):
        step_a()
        step_b()
    ta, tb = [], []
    for _ in range(n_steps):
        for step, times in ((step_a, ta), (step_b, tb)):
            t0 = time.process_time()
            step()
            times.append(time.process_time() - t0)
    return statistics.median(ta), statistics.median(tb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="config with the model section")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--samples", type=int, default=1000, help="samples per record (default 1000 = 10 s at 100 Hz)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--max-ratio", type=float, default=1.3, help="fail when a ratio exceeds this (default 1.3)")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "prototype_overhead"),
                        help="output path without extension")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model = ProtoECGNet(cfg.model, args.samples, cfg.data.sampling_rate)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(args.batch, 12, args.samples)).astype(np.float32))
    y71 = torch.from_numpy((rng.random((args.batch, 71)) < 0.1).astype(np.float32))
    train_labels = (rng.random((500, 71)) < 0.1).astype(np.uint8)
    rows = []
    for group, branch in model.branches.items():
        criterion = build_branch_criterion(model, group, train_labels, cfg.model.loss)
        proto = make_step(model, group, "joint", x, y71, criterion, 0)
        plain = make_step(model, group, "warmup", x, y71, criterion, 0)
        t_proto, t_plain = median_times(proto, plain, args.steps)
        rows.append({
            "branch": group, "prototypes": branch.n_prototypes, "window_dim": branch.window_dim,
            "windows": branch.n_windows, "plain_step_s": round(t_plain, 5), "prototype_step_s": round(t_proto, 5),
            "ratio": round(t_proto / t_plain, 3),
        })
        print(f"{group:10s} P={branch.n_prototypes:4d} plain {t_plain:.4f} s  prototype {t_proto:.4f} s  "
              f"ratio {t_proto / t_plain:.3f}")
    result = {
        "config": os.path.relpath(args.config, REPO) if Path(args.config).is_absolute() else args.config,
        "overrides": args.overrides, "batch": args.batch, "samples": args.samples, "steps": args.steps,
        "threads": 1, "timer": "median process CPU time per step, interleaved", "max_ratio": args.max_ratio,
        "branches": rows, "worst_ratio": max(r["ratio"] for r in rows),
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Prototype-branch training step vs backbone + linear head ({result['config']}, batch {args.batch}, "
        f"T {args.samples}, 1 thread)", "",
        "| branch | P | D_window | W | plain step (CPU s) | prototype step (CPU s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['branch']} | {r['prototypes']} | {r['window_dim']} | {r['windows']} | {r['plain_step_s']} | "
              f"{r['prototype_step_s']} | {r['ratio']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if result["worst_ratio"] > args.max_ratio:
        print(f"worst ratio {result['worst_ratio']} exceeds {args.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
