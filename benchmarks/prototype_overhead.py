"""Training-step cost of each prototype branch vs the same backbone without prototypes.

For every branch (rhythm, morphology, global) one step = forward + loss + backward + Adam
step on a random batch (B, 12, T). The prototype branch uses the full joint objective
(BCE + clustering + separation + diversity + contrastive); the baseline is the same
backbone with a plain head (global average pool + Linear(D → C), BCE only). Median CPU
(process) time of ``--steps`` steps each, alternating the two models after 2 warm-up
steps, single thread.

    python benchmarks/prototype_overhead.py --width 8 --batch 32
Writes reports/benchmarks/prototype_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecgproto.config import load_config
from ecgproto.data.labels import GROUPS, group_labels
from ecgproto.model.branch import PrototypeBranch
from ecgproto.model.losses import BranchLoss, bce_loss, jaccard_cooccurrence

REPO = Path(__file__).resolve().parents[1]


class PlainHead(nn.Module):
    """The branch's backbone + global average pool + Linear (no add-on, no prototypes)."""

    def __init__(self, branch: PrototypeBranch) -> None:
        super().__init__()
        self.backbone = branch.backbone
        self.head = nn.Linear(branch.backbone.out_channels, branch.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def _time_interleaved(step_a, step_b, n_steps: int) -> tuple[float, float]:
    """Median CPU seconds (process time, robust to other processes on a shared machine) per step
    of ``step_a`` and ``step_b``, alternating them so drift affects both alike."""
    for _ in range(2):
        step_a()
        step_b()
    times_a, times_b = [], []
    for _ in range(n_steps):
        for step, times in ((step_a, times_a), (step_b, times_b)):
            t0 = time.process_time()
            step()
            times.append(time.process_time() - t0)
    return statistics.median(times_a), statistics.median(times_b)


def measure(group: str, overrides: list[str], batch: int, n_samples: int, n_steps: int) -> dict:
    cfg = load_config(None, overrides).model
    torch.manual_seed(0)
    codes = group_labels(group)
    branch = PrototypeBranch(group, cfg.branches[group], codes, n_samples, 100)
    rng = np.random.default_rng(0)
    x = torch.randn(batch, 12, n_samples)
    y = torch.as_tensor(rng.random((batch, len(codes))) < 0.2, dtype=torch.float32)
    criterion = BranchLoss(cfg.loss, branch.prototype_class_identity, jaccard_cooccurrence(y.numpy()))
    opt = torch.optim.Adam([p for n, p in branch.named_parameters() if not n.startswith("last_layer")], 1e-4)

    def proto_step() -> None:
        opt.zero_grad()
        criterion(branch(x), y, branch)["total"].backward()
        opt.step()

    plain = PlainHead(branch)
    plain_opt = torch.optim.Adam(plain.parameters(), 1e-4)

    def plain_step() -> None:
        plain_opt.zero_grad()
        bce_loss(plain(x), y).backward()
        plain_opt.step()

    branch.train()
    plain.train()
    t_plain, t_proto = _time_interleaved(plain_step, proto_step, n_steps)
    return {
        "branch": group,
        "prototypes": branch.n_prototypes,
        "window_dim": branch.window_dim,
        "windows": branch.n_windows,
        "plain_step_s": round(t_plain, 4),
        "prototype_step_s": round(t_proto, 4),
        "ratio": round(t_proto / t_plain, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8, help="base_width of every backbone (reference: 64)")
    parser.add_argument("--proto-dim", type=int, default=0, help="add-on output channels (0 = backbone channels)")
    parser.add_argument("--batch", type=int, default=32, help="records per step")
    parser.add_argument("--samples", type=int, default=1000, help="samples per record (100 Hz × 10 s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override key.path=value (repeatable)")
    parser.add_argument("--branches", nargs="+", default=list(GROUPS), choices=list(GROUPS),
                        help="branches to measure")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks"), help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [f"model.branches.{g}.base_width={args.width}" for g in GROUPS]
    overrides += [f"model.branches.{g}.proto_dim={args.proto_dim}" for g in GROUPS] + args.overrides
    rows = [measure(g, overrides, args.batch, args.samples, args.steps) for g in args.branches]
    result = {"width": args.width, "proto_dim": args.proto_dim, "batch": args.batch, "samples": args.samples,
              "threads": 1, "overrides": args.overrides, "torch": torch.__version__, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"prototype_overhead_w{args.width}_d{args.proto_dim}"
    lines = [f"# Prototype-branch step cost vs plain backbone (width {args.width}, proto_dim {args.proto_dim}, "
             f"batch {args.batch}, T {args.samples}, 1 thread)", "",
             "| branch | P | D_window | W | plain step (CPU s) | prototype step (CPU s) | ratio |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['branch']} | {r['prototypes']} | {r['window_dim']} | {r['windows']} | "
                     f"{r['plain_step_s']} | {r['prototype_step_s']} | {r['ratio']} |")
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", "\n".join(lines) + "\n")):
        tmp = out / (stem + suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / (stem + suffix))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
