"""Compare the fusion heads on the same frozen branch similarities (small synthetic archive).

Simulates ``--records`` synthetic PTB-XL-like records in memory (ecgproto.synth, seed 0,
100 Hz, high-passed 0.5 Hz), trains the three branches of a tiny ProtoECGNet with the joint
loss for ``--epochs`` epochs on folds 1–8 (last layer trained too), caches the pooled
similarities once, then trains every fusion head/mask on those features (full batch, Adam,
BCE + L1) and reports the dataset-level macro AUROC on fold 10 (labels with a positive and a
negative there) and on the training folds.

    python benchmarks/fusion_heads.py --records 1200 --epochs 8
Writes reports/benchmarks/fusion_heads.{json,md}. Single thread; ~5 min on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, filtfilt

from ecgproto.config import load_config
from ecgproto.synth.config import SynthConfig
from ecgproto.data.labels import label_table
from ecgproto.synth.archive import build_ptbxl
from ecgproto.synth.simulator import simulate
from ecgproto.metrics import macro_auroc
from ecgproto.model.losses import BranchLoss, fusion_loss, jaccard_cooccurrence, pos_weight_from_labels
from ecgproto.model.network import ProtoECGNet

REPO = Path(__file__).resolve().parents[1]
HEADS = [
    ("sign_constrained", "own_branch"),
    ("sign_constrained", "all"),
    ("masked_nonneg", "own_class"),
    ("masked_nonneg", "own_class_and_other_branches"),
    ("masked_nonneg", "all"),
    ("linear", "all"),
]


def synthetic(n_records: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signals (N, 12, 1000) mV high-passed, labels (N, 71), strat_fold (N,))."""
    table, plan, _ = build_ptbxl(SynthConfig(n_records=n_records, n_mimic_subjects=0, seed=0))
    x = simulate(plan, np.arange(plan.n), 100)
    b, a = butter(1, 0.5 / 50.0, "high")
    x = filtfilt(b, a, x, axis=-1).astype(np.float32)
    return x, plan.labels.labels.astype(np.float32), table["strat_fold"].to_numpy()


def model_overrides(width: int) -> list[str]:
    out = [f"model.branches.{g}.base_width={width}" for g in ("rhythm", "morphology", "global")]
    return out + ["model.branches.rhythm.prototypes_per_class=3", "model.branches.morphology.prototypes_per_class=5",
                  "model.branches.global.prototypes_per_class=3"]


def train_branches(model: ProtoECGNet, cfg, x: torch.Tensor, y: np.ndarray, train: np.ndarray,
                   test: np.ndarray, epochs: int) -> dict[str, float]:
    """Joint-loss training of each branch (last layer included); returns each branch's test macro AUROC."""
    scores = {}
    for group, branch in model.branches.items():
        cols = label_table().indices(group)
        yg = torch.from_numpy(y[:, cols])
        crit = BranchLoss(cfg.loss, branch.prototype_class_identity, jaccard_cooccurrence(y[train][:, cols]),
                          pos_weight_from_labels(y[train][:, cols], cfg.loss.pos_weight_cap))
        opt = torch.optim.Adam(branch.parameters(), 1e-3)
        idx = np.nonzero(train)[0]
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            branch.train()
            rng.shuffle(idx)
            for s in range(0, len(idx), 32):
                b = idx[s:s + 32]
                terms = crit(model.forward_branch(group, x[b]), yg[b], branch)
                opt.zero_grad()
                terms["total"].backward()
                opt.step()
        branch.eval()
        with torch.no_grad():
            p = torch.sigmoid(model.forward_branch(group, x[test]).logits).numpy()
        scores[group] = float(macro_auroc(y[test][:, cols], p))
    return scores


def fit_head(model: ProtoECGNet, cfg, sims: torch.Tensor, y: np.ndarray, train: np.ndarray, steps: int) -> None:
    model.fusion.fit_normalization(sims[train])
    opt = torch.optim.Adam(model.fusion.parameters(), 1e-2)
    target = torch.from_numpy(y[train])
    pw = pos_weight_from_labels(y[train], cfg.loss.pos_weight_cap)
    for _ in range(steps):
        loss = fusion_loss(model.fusion(sims[train]), target, model.fusion.l1_penalty(), cfg.loss, pw)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1200, help="synthetic records to simulate")
    parser.add_argument("--epochs", type=int, default=8, help="joint-training epochs per branch")
    parser.add_argument("--width", type=int, default=8, help="base_width of every backbone")
    parser.add_argument("--fusion-steps", type=int, default=300, help="full-batch Adam steps per fusion head")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks"), help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x_np, y, fold = synthetic(args.records)
    train, test = fold <= 8, fold == 10
    cfg = load_config(None, model_overrides(args.width)).model
    torch.manual_seed(0)
    model = ProtoECGNet(cfg, 1000, 100)
    model.set_standardization(x_np[train].mean(axis=(0, 2)), x_np[train].std(axis=(0, 2)))
    x = torch.from_numpy(x_np)
    branch_auroc = train_branches(model, cfg, x, y, train, test, args.epochs)
    model.eval()
    with torch.no_grad():
        sims = torch.cat([model(x[i:i + 128]).similarities for i in range(0, len(x), 128)])
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fusion.")}
    rows = []
    for head, mask in HEADS:
        hcfg = load_config(None, model_overrides(args.width) + [f"model.fusion.head={head}",
                                                                f"model.fusion.mask={mask}"]).model
        torch.manual_seed(0)
        fused = ProtoECGNet(hcfg, 1000, 100)
        fused.load_state_dict(state, strict=False)
        fit_head(fused, hcfg, sims, y, train, args.fusion_steps)
        with torch.no_grad():
            p_test = torch.sigmoid(fused.fusion(sims[test])).numpy()
            p_train = torch.sigmoid(fused.fusion(sims[train])).numpy()
        rows.append({"head": head, "mask": mask, "test_macro_auroc": round(float(macro_auroc(y[test], p_test)), 4),
                     "train_macro_auroc": round(float(macro_auroc(y[train], p_train)), 4)})
        print(rows[-1], flush=True)
    result = {"records": args.records, "epochs": args.epochs, "width": args.width, "train": int(train.sum()),
              "test": int(test.sum()), "branch_test_macro_auroc": {k: round(v, 4) for k, v in branch_auroc.items()},
              "heads": rows, "seconds": round(time.perf_counter() - t0, 1)}
    lines = [f"# Fusion heads on frozen branch similarities ({args.records} synthetic records, width {args.width}, "
             f"{args.epochs} epochs per branch; train {result['train']}, test {result['test']})", "",
             "Branch test macro AUROC: " + ", ".join(f"{k} {v:.3f}" for k, v in branch_auroc.items()), "",
             "| head | mask | test macro AUROC | train macro AUROC |", "|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['mask']} | {r['test_macro_auroc']:.3f} | {r['train_macro_auroc']:.3f} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", "\n".join(lines) + "\n")):
        tmp = out / f"fusion_heads{suffix}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / f"fusion_heads{suffix}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
